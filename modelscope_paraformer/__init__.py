"""Alibaba's Paraformer ASR as a native ModelScope plugin (no funasr at runtime).

Plain PyTorch use::

    from modelscope_paraformer import load_model, transcribe, StreamingDecoder
    model = load_model("path/to/model_dir")
    print(transcribe(model, "a.wav")[0].text)

ModelScope use: ``import modelscope_paraformer`` and then ``pipeline(Tasks.auto_speech_recognition, model=...)``.
Importing is cheap: the core (torch) loads on first attribute access, and the ModelScope classes register
themselves when modelscope loads its registries (see :mod:`.registration`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import registration
from .core.lazy import lazy_exports

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"  # the shipped demo model (see tools/train_demo.py)

if TYPE_CHECKING:
    from .api import transcribe
    from .core import (AudioError, BatchedStreamer, CheckpointError, ChunkSizeError, ConfigError, ModelDirError,
                       Paraformer, ParaformerError, Recognizer, StreamingDecoder, Transcript, load_audio,
                       load_model)
    from .hub import resolve_model_dir

_EXPORTS = {
    "transcribe": ".api", "resolve_model_dir": ".hub",
    **{name: ".core" for name in ("AudioError", "BatchedStreamer", "CheckpointError", "ChunkSizeError", "ConfigError",
                                  "ModelDirError", "Paraformer", "ParaformerError", "Recognizer", "StreamingDecoder",
                                  "Transcript", "load_audio", "load_model")},
}
__all__ = sorted([*_EXPORTS, "DEMO_MODEL_DIR"])


__getattr__ = lazy_exports(__name__, _EXPORTS)  # the core (torch) loads on first use

registration.install()
