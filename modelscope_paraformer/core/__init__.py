"""The recogniser without ModelScope: model dirs, engines (torch, onnxruntime), offline and streaming algorithms.

Names are imported on first use (PEP 562), so that an exported ONNX dir loads and decodes without torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

if TYPE_CHECKING:
    from .audio import AudioError, load_audio
    from .checkpoint import CheckpointError
    from .chunking import ChunkConfig, ChunkSizeError
    from .config import ConfigError
    from .errors import ParaformerError
    from .fsmn_vad import FsmnVad, VadStream, load_vad
    from .loading import load_model
    from .model import Paraformer
    from .model_dir import ModelDirError
    from .punctuation import Punctuator, load_punctuator
    from .punctuation_text import PunctuatedText
    from .recognizer import Recognizer
    from .scheduler import BatchedStreamer, StreamingDecoder
    from .transcript import Transcript

_EXPORTS = {
    "AudioError": ".audio", "load_audio": ".audio", "CheckpointError": ".checkpoint", "ChunkConfig": ".chunking",
    "ChunkSizeError": ".chunking", "ConfigError": ".config", "ParaformerError": ".errors", "FsmnVad": ".fsmn_vad",
    "VadStream": ".fsmn_vad", "load_vad": ".fsmn_vad", "load_model": ".loading",
    "Paraformer": ".model", "ModelDirError": ".model_dir", "Recognizer": ".recognizer",
    "Punctuator": ".punctuation", "load_punctuator": ".punctuation", "PunctuatedText": ".punctuation_text",
    "BatchedStreamer": ".scheduler", "StreamingDecoder": ".scheduler", "Transcript": ".transcript",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
