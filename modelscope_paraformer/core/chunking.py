"""The one chunk configuration of streaming: used by the streaming session, every engine and training.

``chunk_size = [left, stride, look_ahead]`` counts 60 ms LFR frames. Each step encodes a window of
``left + stride + look_ahead`` frames: the previous step's last ``left + look_ahead`` frames (the overlap) and
``stride`` new ones. The CIF predictor fires over frames ``left : left + stride`` of the window (the rest is
context), and encoder self-attention and decoder cross-attention also see the last look-back chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Sequence

from .errors import ParaformerError

DEFAULT_CHUNK_SIZE = (0, 10, 5)
DEFAULT_ENCODER_LOOK_BACK = 4
DEFAULT_DECODER_LOOK_BACK = 1


class ChunkSizeError(ParaformerError, ValueError):
    """chunk_size / look-back settings that cannot work."""


def check_chunk_size(chunk_size: Sequence[int], encoder_look_back: int = DEFAULT_ENCODER_LOOK_BACK,
                     decoder_look_back: int = DEFAULT_DECODER_LOOK_BACK) -> tuple[int, int, int]:
    """Validate ``[left, stride, look_ahead]`` (in 60 ms LFR frames) and the look-back counts."""
    try:
        values = tuple(int(v) for v in chunk_size)
    except (TypeError, ValueError):
        raise ChunkSizeError(f"chunk_size must be 3 integers [left, stride, look_ahead], got {chunk_size!r}") from None
    if len(values) != 3 or any(float(v) != float(orig) for v, orig in zip(values, chunk_size)):
        raise ChunkSizeError(f"chunk_size must be 3 integers [left, stride, look_ahead], got {chunk_size!r}")
    left, stride, look_ahead = values
    if stride <= 0 or left < 0 or look_ahead < 0:
        raise ChunkSizeError(f"chunk_size {list(values)}: stride must be > 0 and the others >= 0")
    for name, value in (("encoder_chunk_look_back", encoder_look_back), ("decoder_chunk_look_back", decoder_look_back)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < -1:
            raise ChunkSizeError(f"{name} must be an integer >= -1 (-1: unbounded), got {value!r}")
    return values


@dataclass(frozen=True)
class ChunkConfig:
    """A validated streaming configuration; build it with :meth:`create`."""

    left: int
    stride: int
    look_ahead: int
    encoder_look_back: int = DEFAULT_ENCODER_LOOK_BACK
    decoder_look_back: int = DEFAULT_DECODER_LOOK_BACK

    @classmethod
    def create(cls, chunk_size: Sequence[int] = DEFAULT_CHUNK_SIZE,
               encoder_look_back: int = DEFAULT_ENCODER_LOOK_BACK,
               decoder_look_back: int = DEFAULT_DECODER_LOOK_BACK) -> "ChunkConfig":
        """Check the settings (:class:`ChunkSizeError` names what is wrong) and build the configuration."""
        left, stride, look_ahead = check_chunk_size(chunk_size, encoder_look_back, decoder_look_back)
        return cls(left, stride, look_ahead, int(encoder_look_back), int(decoder_look_back))

    @property
    def chunk_size(self) -> tuple[int, int, int]:
        return self.left, self.stride, self.look_ahead

    @property
    def overlap(self) -> int:
        """Frames of one window that the next window encodes again."""
        return self.left + self.look_ahead

    @property
    def window(self) -> int:
        """Frames of a full window."""
        return self.left + self.stride + self.look_ahead

    @property
    def encoder_keep_frames(self) -> int:
        """Frames of earlier windows that encoder self-attention keeps: ``look_back`` strides; 0 none; -1 all."""
        return self.encoder_look_back * self.stride if self.encoder_look_back > 0 else self.encoder_look_back

    @property
    def decoder_keep_frames(self) -> int:
        """Encoder frames of earlier windows that decoder cross-attention keeps. As in FunASR, only a positive
        look-back keeps any: -1 means none here, unlike the encoder's -1 (unbounded)."""
        return self.decoder_look_back * self.stride if self.decoder_look_back > 0 else 0
