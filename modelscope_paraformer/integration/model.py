"""The ModelScope ``Model`` wrapper: a ``TorchModel`` holding the core :class:`~..core.Paraformer`."""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from modelscope.models.base import TorchModel
from modelscope.models.builder import MODELS
from modelscope.utils.constant import Tasks

from ..core.audio import Utterance
from ..core.checkpoint import torch_device
from ..core.loading import load_for_inference
from ..core.scheduler import StreamingDecoder
from ..core.transcript import Transcript

logger = logging.getLogger(__name__)

MODEL_NAME = "paraformer"
LEGACY_MODEL_NAME = "generic-asr"  # what pre-FunASR-1.x hub repos name; modelscope no longer registers it


def _dtype_name(dtype: Union[str, torch.dtype]) -> str:
    """Accept "fp32"/"bf16" and the torch spellings ("float32", torch.bfloat16, ...)."""
    name = str(dtype).removeprefix("torch.")
    return {"float32": "fp32", "float": "fp32", "bfloat16": "bf16"}.get(name, name)


@MODELS.register_module(Tasks.auto_speech_recognition, module_name=MODEL_NAME)
@MODELS.register_module(Tasks.auto_speech_recognition, module_name=LEGACY_MODEL_NAME)
class ParaformerForASR(TorchModel):
    """Paraformer (offline or online) loaded natively from a local model dir; no funasr involved.

    Extra keyword arguments from ``configuration.json`` or ``pipeline()`` (``mode``, ``model_config``,
    ``model_revision``, legacy file names ...) are accepted and ignored: the core finds its own files.
    """

    def __init__(self, model_dir: str, *args: Any, device: Union[str, torch.device, None] = "cpu",
                 dtype: str = "fp32", quantize: Optional[str] = None, num_threads: Optional[int] = None,
                 **kwargs: Any):
        """``dtype`` ("fp32" | "bf16"), ``quantize`` (None | "int8") and ``num_threads`` select the fast paths
        of :func:`~..core.optimize.optimize_for_inference`, e.g. ``pipeline(..., quantize="int8")``."""
        target = torch_device(device)
        super().__init__(model_dir, *args, device=str(target))
        # a Paraformer (torch engine) or, for an exported dir, a Recognizer on onnxruntime: both recognise alike
        self.paraformer = load_for_inference(model_dir, target, _dtype_name(dtype), quantize, num_threads)
        logger.debug("ignored model options: %s", sorted(kwargs))

    @property
    def streaming(self) -> bool:
        """True for online (chunked-encoder) models."""
        return self.paraformer.streaming

    def transcribe(self, waveforms: Sequence[np.ndarray], keys: Sequence[str] | None = None,
                   batch_size: int = 8, hotwords: Any = None) -> list[Transcript]:
        """Recognise 16 kHz float32 waveforms (see :meth:`Paraformer.transcribe`); ``hotwords`` for SeACo."""
        return self.paraformer.transcribe(waveforms, keys, batch_size, hotwords=hotwords)

    def stream(self, **options: Any) -> StreamingDecoder:
        """A new streaming session; ``options`` are those of :class:`StreamingDecoder` (chunk_size, look-backs, key)."""
        return StreamingDecoder(self.paraformer, **options)

    def forward(self, utterances: Sequence[Utterance], batch_size: int = 8) -> list[Transcript]:
        """``model(utterances)``: the preprocessor's output in, one :class:`Transcript` per utterance out."""
        return self.transcribe([u.samples for u in utterances], [u.key for u in utterances], batch_size)
