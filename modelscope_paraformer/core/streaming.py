"""Streaming recognition: one :class:`StreamingDecoder` per audio stream, holding all of its state.

Audio of any length is buffered into strides of ``chunk_size[1]`` LFR frames (600 ms for 10). Each stride
becomes ``chunk_size[1]`` feature frames; the encoder sees them after the previous stride's
``chunk_size[0] + chunk_size[2]`` overlap frames, the CIF predictor fires over the frames
``chunk_size[0] : chunk_size[0] + chunk_size[1]`` of that window (the rest is look-ahead), and the decoder
turns the fired embeddings into characters. ``is_final`` flushes everything: the last partial stride,
the look-ahead frames and the CIF remainder (with ``tail_threshold``), then resets the state.

Semantics follow FunASR's ``ParaformerStreaming`` step for step, so token ids match it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from .audio import SAMPLE_RATE, StreamResampler
from .frontend import StreamingFrontend
from .predictor import CifState
from .decoder import DecoderState

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = (0, 10, 5)


class ChunkSizeError(ValueError):
    """chunk_size / look-back settings that cannot work."""


def check_chunk_size(chunk_size: Sequence[int], encoder_look_back: int, decoder_look_back: int) -> tuple[int, int, int]:
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
        if not isinstance(value, (int, np.integer)) or value < -1:
            raise ChunkSizeError(f"{name} must be an integer >= -1 (-1: unbounded), got {value!r}")
    return values


def encoder_keep_frames(encoder_look_back: int, stride: int) -> int:
    """Frames of earlier chunks that encoder self-attention keeps: ``look_back`` strides; 0 none; -1 all."""
    return encoder_look_back * stride if encoder_look_back > 0 else encoder_look_back


def decoder_keep_frames(decoder_look_back: int, stride: int) -> int:
    """Encoder frames that the decoder's cross-attention keeps for the next chunks. As in FunASR, only a positive
    look-back keeps any: -1 means none there, unlike the encoder's -1 (unbounded)."""
    return decoder_look_back * stride if decoder_look_back > 0 else 0


class StreamingDecoder:
    """State of one stream; feed it audio with :meth:`feed`, finish with ``is_final=True`` or :meth:`finish`.

    Also a context manager: ``with model_stream as s: s.feed(chunk) ...`` flushes on exit.
    """

    def __init__(self, model, chunk_size: Sequence[int] = DEFAULT_CHUNK_SIZE, encoder_chunk_look_back: int = 4,
                 decoder_chunk_look_back: int = 1, key: str = "stream"):
        if not model.streaming:
            raise ChunkSizeError("this model has no chunked encoder (it is an offline Paraformer); "
                                 "use an online model such as ...-online for streaming")
        self.model = model
        self.key = key
        self.chunk_size = check_chunk_size(chunk_size, encoder_chunk_look_back, decoder_chunk_look_back)
        self.encoder_look_back = int(encoder_chunk_look_back)
        self.decoder_look_back = int(decoder_chunk_look_back)
        self.stride_samples = self.chunk_size[1] * model.frontend.samples_per_lfr_frame
        self.result = None  # the Transcript of the last finished utterance
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next sample starts a new utterance."""
        model = self.model
        left, _, look_ahead = self.chunk_size
        dim = model.encoder.output_size
        self.buffer = np.zeros(0, np.float32)
        self.samples_fed = 0  # in this utterance: none means that a final flush has nothing to finish
        self.resampler: Optional[StreamResampler] = None  # for input that is not at 16 kHz
        self.frontend = StreamingFrontend(model.frontend)
        self.frames_seen = 0  # LFR frames embedded so far (position of the next frame)
        self.overlap = torch.zeros(1, left + look_ahead, model.config.input_size, dtype=model.dtype, device=model.device)
        self.encoder_caches: list = [None] * len(model.encoder.layers)
        cif_dtype = model.predictor.dtype
        self.cif_state = CifState(torch.zeros(1, dtype=cif_dtype, device=model.device),
                                  torch.zeros(1, dim, dtype=cif_dtype, device=model.device))
        self.decoder_state = DecoderState()
        self.token_ids: list[int] = []
        self.timestamps: list[list[int]] = []
        self.last_fire_frame = 0

    def __enter__(self) -> "StreamingDecoder":
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None and (self.buffer.size or self.frames_seen):
            self.finish()

    @property
    def text(self) -> str:
        """Text recognised so far in this utterance."""
        return self.model.tokenizer.decode(self.token_ids) if self.model.tokenizer else ""

    @torch.inference_mode()
    def feed(self, samples: np.ndarray, is_final: bool = False, sample_rate: int = SAMPLE_RATE) -> list[int]:
        """Add mono float32 samples; return the token ids recognised by this call (all of them when final).

        Audio at another ``sample_rate`` is resampled to 16 kHz by one stateful resampler per utterance, so
        that chunk edges leave no trace (resampling each chunk on its own would).
        """
        # a copy: the caller may reuse its array (an audio callback's buffer) once this returns
        samples = np.array(samples, dtype=np.float32).reshape(-1)
        if sample_rate != SAMPLE_RATE or self.resampler is not None:
            if self.resampler is None:
                self.resampler = StreamResampler(sample_rate)
            samples = self.resampler(samples, sample_rate, last=is_final)
        if is_final and self.samples_fed == 0 and samples.size == 0 and self.result is not None:
            self.reset()  # finishing an idle stream again keeps the finished utterance's result
            return []
        self.samples_fed += samples.size
        self.buffer = np.concatenate([self.buffer, samples]) if self.buffer.size else samples
        new_ids: list[int] = []
        while len(self.buffer) >= self.stride_samples or is_final:
            window, last = self.take_window(is_final)
            if window is not None:
                new_ids += self._decode_window(window, last)
            if last:
                self.finish_utterance()
                break
        return new_ids

    def take_window(self, is_final: bool) -> tuple[Optional["Window"], bool]:
        """Pop the next stride (or, when final, the rest) and build its encoder window.

        Returns the window (None: nothing to encode) and whether this is the utterance's last step. Shared
        with the batched streamer, which encodes many streams' windows at once.
        """
        left, _, look_ahead = self.chunk_size
        last = is_final and len(self.buffer) < self.stride_samples
        # views, not copies: feeding a long recording at once stays linear in its length
        piece, self.buffer = self.buffer[:self.stride_samples], self.buffer[self.stride_samples:]
        if last and len(piece) < self.model.frontend.samples_per_lfr_frame:
            # under one frame left: flush the look-ahead only (nothing at all if no audio came in; FunASR
            # would decode its all-zero initial buffer here)
            window = self.overlap if self.frames_seen and self.overlap.size(1) else None
        else:
            features = self.frontend.accept(piece, is_final=last)
            if len(features) == 0 and not last:
                return None, False
            window = torch.cat([self.overlap, self._embed(features)], dim=1)
            keep = left + look_ahead
            self.overlap = window[:, window.size(1) - keep:] if keep else window[:, :0]
        if window is None:
            return None, last
        return Window(window, self.frames_seen - window.size(1), last), last

    def record(self, token_ids: Sequence[int], fire_frames: Sequence[int], window: "Window") -> list[int]:
        """Append decoded tokens (specials dropped) and their timestamps; returns the kept ids."""
        ids = []
        for token_id, fire in zip(token_ids, fire_frames):
            frame = max(0, window.start + self.chunk_size[0] + fire)
            if token_id > 2:  # <blank>, <s>, </s> are dropped with their timestamps
                ids.append(token_id)
                self.timestamps.append([int(max(self.last_fire_frame, frame - 12) * 60), int(frame * 60)])
            self.last_fire_frame = frame
        self.token_ids += ids
        return ids

    def finish_utterance(self) -> None:
        """Keep the finished :class:`~.model.Transcript` in ``result`` and reset for the next utterance."""
        from .model import Transcript

        self.result = Transcript(self.key, self.text, list(self.token_ids), [list(t) for t in self.timestamps])
        self.reset()

    def finish(self) -> list[int]:
        """Flush the stream (same as ``feed(empty, is_final=True)``); returns the last token ids."""
        return self.feed(np.zeros(0, np.float32), is_final=True)

    def decode_all(self, samples: np.ndarray, key: Optional[str] = None):
        """Stream a whole waveform and return its :class:`~.model.Transcript` (state is reset afterwards)."""
        self.key = key or self.key
        self.feed(samples, is_final=True)
        return self.result

    def _embed(self, features: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(features).to(self.model.device, self.model.dtype)[None]
        x = self.model.encoder.embed(x, self.frames_seen)
        self.frames_seen += x.size(1)
        return x

    def _decode_window(self, window: "Window", is_final: bool) -> list[int]:
        """Encode one window, fire CIF over its current frames, decode what fired."""
        model = self.model
        left, stride, look_ahead = self.chunk_size
        look_back = encoder_keep_frames(self.encoder_look_back, stride)
        encoded = model.encoder.forward_chunk(window.frames, None, self.encoder_caches, look_ahead, look_back)
        end = encoded.size(1) if is_final else left + stride
        cif, self.cif_state = model.predictor.forward_chunk(encoded, self.cif_state, is_final, left, end)
        count = int(cif.token_counts[0])
        if count < 1:
            return []
        keep = decoder_keep_frames(self.decoder_look_back, stride)
        logits = model.decoder.forward_chunk(encoded, cif.embeddings[:, :count], self.decoder_state, keep)
        return self.record(logits[0].argmax(-1).tolist(), cif.fire_frames[0][:count], window)


@dataclass
class Window:
    """One step's encoder input: embedded frames (1, frames, dim), the absolute frame of its first row
    (negative for the initial zero overlap) and whether it ends the utterance."""

    frames: torch.Tensor
    start: int
    is_final: bool
