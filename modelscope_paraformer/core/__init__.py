"""The recogniser without ModelScope: model dirs, engines (torch, onnxruntime), offline and streaming algorithms.

Names are imported on first use (PEP 562), so that an exported ONNX dir loads and decodes without torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audio import AudioError, load_audio
    from .checkpoint import CheckpointError
    from .chunking import ChunkConfig, ChunkSizeError
    from .config import ConfigError
    from .errors import ParaformerError
    from .loading import load_model
    from .model import Paraformer
    from .model_dir import ModelDirError
    from .recognizer import Recognizer
    from .scheduler import BatchedStreamer, StreamingDecoder
    from .transcript import Transcript

_EXPORTS = {
    "AudioError": ".audio", "load_audio": ".audio", "CheckpointError": ".checkpoint", "ChunkConfig": ".chunking",
    "ChunkSizeError": ".chunking", "ConfigError": ".config", "ParaformerError": ".errors", "load_model": ".loading",
    "Paraformer": ".model", "ModelDirError": ".model_dir", "Recognizer": ".recognizer",
    "BatchedStreamer": ".scheduler", "StreamingDecoder": ".scheduler", "Transcript": ".transcript",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
