"""The ModelScope preprocessor: any supported audio input -> list of core :class:`Utterance`."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from modelscope.preprocessors.base import Preprocessor
from modelscope.preprocessors.builder import PREPROCESSORS
from modelscope.utils.constant import Fields, ModeKeys

from ..core.audio import Utterance, iter_inputs

PREPROCESSOR_NAME = "paraformer-audio"


@PREPROCESSORS.register_module(Fields.audio, module_name=PREPROCESSOR_NAME)
class ParaformerAudioPreprocessor(Preprocessor):
    """Decode paths, URLs, bytes, arrays, tensors, lists, ``wav.scp`` and ``ark:`` to 16 kHz float32.

    ``fs`` is the sample rate of raw arrays and tensors (default 16000); files carry their own.
    """

    def __init__(self, model_dir: Optional[str] = None, fs: Optional[int] = None, mode: str = ModeKeys.INFERENCE,
                 **kwargs: Any):
        super().__init__(mode)
        self.fs = fs

    def __call__(self, data: Any, fs: Optional[int] = None, keys: Optional[Sequence[str]] = None,
                 resample_to_16k: bool = True) -> list[Utterance]:
        return list(iter_inputs(data, fs=self.fs if fs is None else fs, keys=keys, resample_to_16k=resample_to_16k))
