"""Pure-PyTorch Paraformer: no modelscope import anywhere below this package."""
from .audio import AudioError, load_audio
from .checkpoint import CheckpointError, ModelDirError, load_model
from .config import ConfigError
from .model import Paraformer, Transcript
from .streaming import ChunkSizeError, StreamingDecoder

__all__ = ["AudioError", "CheckpointError", "ChunkSizeError", "ConfigError", "ModelDirError", "Paraformer",
           "StreamingDecoder", "Transcript", "load_audio", "load_model"]
