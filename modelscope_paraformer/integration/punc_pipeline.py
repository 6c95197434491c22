"""The ModelScope ``punctuation`` pipeline over the native CT-Transformer (:mod:`..core.punctuation`).

Call styles (the results are FunASR's: ``[{"key", "text", "punc_array"}]``, one per input text)::

    p("那今天的会就到这里吧 happy new year 明年见")        # ct-punc / ct-punc-c
    p(["text one", "text two"], key=["a", "b"])
    p(input=piece, cache=cache)                            # the vad_realtime model, FunASR 1.x: cache = {}
    p(text_in=piece, param_dict={"cache": words})          # its pre-1.x model card: words = [], kept in place

``punc_array`` is a list of ints (FunASR: a tensor; ``None`` for empty text, as FunASR).
"""
from __future__ import annotations

import logging
import random
import string
from pathlib import Path
from typing import Any, Optional, Union

from modelscope.models.base import TorchModel
from modelscope.pipelines.base import Pipeline
from modelscope.pipelines.builder import PIPELINES
from modelscope.utils.constant import Frameworks, Tasks

from ..core.checkpoint import torch_device
from ..core.errors import ParaformerError
from ..core.punctuation import Punctuator, load_punctuator
from ..core.punctuation_text import CACHE_KEY, PunctuatedText
from ..hub import resolve_model_dir
from .pipeline import ResultList

logger = logging.getLogger(__name__)

PUNC_PIPELINE_NAME = "ct-punctuation"
LEGACY_PUNC_PIPELINE_NAME = "punc-inference"  # what pre-FunASR-1.x hub repos name; modelscope no longer has it
KNOWN_OPTIONS = {"cache", "key", "split_size"}


class PunctuationInputError(ParaformerError, TypeError):
    """The pipeline was called with something that is not text (or not one text per cache)."""


class PunctuationModel(TorchModel):
    """A ModelScope ``Model`` holding a :class:`Punctuator` (what modelscope's ``Pipeline`` expects to hold)."""

    def __init__(self, model_dir: str, device: Union[str, None] = "cpu", **kwargs: Any):
        target = torch_device(device)
        super().__init__(model_dir, device=str(target))
        self.punctuator = load_punctuator(model_dir, target)
        self.network = self.punctuator.model  # a submodule, so that .to() / .eval() reach the weights
        logger.debug("ignored model options: %s", sorted(kwargs))

    def forward(self, text: str, cache: Optional[dict] = None) -> PunctuatedText:
        return self.punctuator.punctuate(text, cache)


def _text_as_is(text: Any) -> Any:
    """The preprocessor: text needs none (giving one keeps modelscope from searching configuration.json)."""
    return text


def _random_key() -> str:
    """FunASR's key for inputs that have none: ``rand_key_`` and 13 letters or digits."""
    return "rand_key_" + "".join(random.choice(string.ascii_letters + string.digits) for _ in range(13))


@PIPELINES.register_module(Tasks.punctuation, module_name=PUNC_PIPELINE_NAME)
@PIPELINES.register_module(Tasks.punctuation, module_name=LEGACY_PUNC_PIPELINE_NAME)
class PunctuationPipeline(Pipeline):
    """Punctuation with a native CT-Transformer: ``ct-punc``, ``ct-punc-c`` and the vad_realtime model.

    For the realtime model a stream's state lives in the caller's ``cache``: a dict (FunASR 1.x, which keeps
    its carried words under ``"pre_text"``) or, as in the pre-1.x model card, a list of those words.
    """

    def __init__(self, model: Union[PunctuationModel, str], device: str = "gpu", **kwargs: Any):
        if not isinstance(model, PunctuationModel):
            model = PunctuationModel(str(resolve_model_dir(model, kwargs.get("model_revision"))), device=device)
        if not (Path(model.model_dir) / "configuration.json").is_file() and "config_file" not in kwargs:
            raise ParaformerError(f"{model.model_dir} has no configuration.json; use "
                                  "modelscope_paraformer.core.load_punctuator for a bare FunASR dir")
        super().__init__(model=model, preprocessor=_text_as_is, device=device, **kwargs)

    def _get_framework(self) -> str:
        return Frameworks.torch  # always; modelscope's version reads configuration.json again

    @property
    def punctuator(self) -> Punctuator:
        """The core punctuator (for use without the pipeline's call conventions)."""
        return self.model.punctuator

    def __call__(self, input: Any = None, *, text_in: Any = None, param_dict: Optional[dict] = None,
                 **options: Any) -> ResultList:
        """Punctuate ``input`` (or the legacy ``text_in``): a str or a list of them.

        Modelscope's own ``Pipeline.__call__`` is bypassed, as in the ASR pipeline: a streaming session needs
        the very ``cache`` object of each call.
        """
        if input is not None and text_in is not None:
            raise PunctuationInputError("pass the text once: as input= (or positionally) or as text_in=, not both")
        text = input if input is not None else text_in
        options = {**(param_dict or {}), **options}
        if unknown := sorted(set(options) - KNOWN_OPTIONS):
            logger.warning("ignoring options this pipeline does not use: %s", ", ".join(unknown))
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise PunctuationInputError(f"punctuation takes a str or a list of str, got {type(text).__name__}")
        keys = options.get("key")
        keys = [keys] if isinstance(keys, str) else list(keys or [])
        if keys and len(keys) != len(texts):
            raise PunctuationInputError(f"{len(keys)} keys for {len(texts)} texts")
        keys = keys or [_random_key() for _ in texts]
        cache = options.get("cache")
        if cache is not None:
            if len(texts) != 1:
                raise PunctuationInputError(f"a streaming call takes one text of one stream, got {len(texts)}")
            return ResultList([self._stream(texts[0], keys[0], cache, options.get("split_size"))])
        return ResultList(self._result(key, self.punctuator.punctuate(t, split_size=options.get("split_size")))
                          for key, t in zip(keys, texts))

    def _stream(self, text: str, key: str, cache: Union[dict, list], split_size: Optional[int]) -> dict:
        """One call of a stream whose state is ``cache`` (dict: FunASR's own layout; list: the carried words)."""
        if isinstance(cache, list):
            state = {CACHE_KEY: list(cache)} if cache else {}
            result = self.punctuator.punctuate(text, state, split_size)
            cache[:] = state.get(CACHE_KEY, [])
        elif isinstance(cache, dict):
            result = self.punctuator.punctuate(text, cache, split_size)
        else:
            raise PunctuationInputError(f"cache must be a dict (or the legacy list of words), got "
                                        f"{type(cache).__name__}")
        return self._result(key, result)

    @staticmethod
    def _result(key: str, result: PunctuatedText) -> dict:
        return {"key": key, "text": result.text, "punc_array": result.punc_array if result.text else None}
