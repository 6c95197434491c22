"""One stream's streaming state machine, engine-free: input, resampling, strides, frontend, windows, CIF, tokens.

Audio of any length (any rate: resampled by one stateful filter) is buffered into strides of
``chunk.stride`` LFR frames (600 ms for 10). Each stride becomes ``stride`` feature frames; the window to
encode is the previous window's last ``chunk.overlap`` frames plus the new ones, with absolute positions (a
stream starts from a zero overlap, as FunASR does). The CIF fires over the window's frames ``left : left +
stride`` (the rest is look-ahead); fired tokens are recorded with their timestamps. ``is_final`` flushes the
rest: the last partial stride, the look-ahead frames and the CIF remainder, then the utterance ends and the
session is ready for the next one. The scheduler (:mod:`.scheduler`) runs the engine for many sessions at once.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from .audio import SAMPLE_RATE, StreamResampler
from .chunking import ChunkConfig
from .cif import FIRE_SHIFT, MAX_TOKEN_FRAMES, CifCarry, fire_window
from .engine import ChunkInput, Encoded
from .frontend import Frontend, StreamingFrontend
from .tokenizer import CharTokenizer
from .transcript import FRAME_MS, SPECIAL_IDS, Transcript

logger = logging.getLogger(__name__)

TIMESTAMP_MAX_FRAMES = MAX_TOKEN_FRAMES  # a token's span starts at most this many frames before its fire


def _frame_ms(frame: float) -> int:
    """A CIF fire frame as a boundary time in ms, with the offline shift (never negative)."""
    return max(0, int((frame + FIRE_SHIFT) * FRAME_MS))


class StreamSession:
    """The state of one stream between engine steps; holds no engine tensors (its caches live in the scheduler)."""

    def __init__(self, frontend: Frontend, tokenizer: Optional[CharTokenizer], chunk: ChunkConfig,
                 cif_threshold: float, cif_tail_threshold: float, key: str = "stream"):
        self.frontend = frontend
        self.tokenizer = tokenizer
        self.chunk = chunk
        self.cif_threshold = cif_threshold
        self.cif_tail_threshold = cif_tail_threshold
        self.key = key
        self.stride_samples = chunk.stride * frontend.samples_per_lfr_frame
        self.result: Optional[Transcript] = None  # the last finished utterance
        self.reset()

    def reset(self) -> None:
        """Forget the utterance in progress: the next sample starts a new one."""
        self.buffer = np.zeros(0, np.float32)
        self.final_pending = False
        self.samples_fed = 0  # in this utterance: none means that a final flush has nothing to finish
        self.resampler: Optional[StreamResampler] = None  # for input that is not at 16 kHz
        self.features = StreamingFrontend(self.frontend)
        self.frames_seen = 0  # LFR frames made so far (the absolute position of the next one)
        self.overlap = np.zeros((self.chunk.overlap, self.frontend.output_size), np.float32)
        self.cif = CifCarry()
        self.token_ids: list[int] = []
        self.timestamps: list[list[int]] = []
        self.last_fire_frame = 0

    @property
    def text(self) -> str:
        """Text recognised so far in this utterance."""
        return self.tokenizer.decode(self.token_ids) if self.tokenizer else ""

    @property
    def active(self) -> bool:
        """True while an utterance has audio or frames that a final flush would still decode."""
        return bool(self.buffer.size or self.frames_seen)

    @property
    def has_work(self) -> bool:
        """A full stride or a final flush is waiting."""
        return self.final_pending or len(self.buffer) >= self.stride_samples

    def accept(self, samples: np.ndarray, is_final: bool = False, sample_rate: int = SAMPLE_RATE) -> None:
        """Queue mono samples (copied: the caller may reuse its array); ``is_final`` ends the utterance.

        Audio at another ``sample_rate`` goes through one stateful resampler per utterance, so that chunk edges
        leave no trace (resampling each chunk on its own would).
        """
        if self.final_pending:
            raise ValueError(f"stream {self.key!r}: its final audio is not decoded yet; step the scheduler first")
        samples = np.array(samples, dtype=np.float32).reshape(-1)
        if sample_rate != SAMPLE_RATE or self.resampler is not None:
            if self.resampler is None:
                self.resampler = StreamResampler(sample_rate)
            samples = self.resampler(samples, sample_rate, last=is_final)
        if is_final and self.samples_fed == 0 and samples.size == 0 and self.result is not None:
            self.reset()  # finishing an idle stream again keeps the finished utterance's result
            return
        self.samples_fed += samples.size
        self.buffer = np.concatenate([self.buffer, samples]) if self.buffer.size else samples
        self.final_pending = bool(is_final)

    def next_window(self) -> tuple[Optional[ChunkInput], bool]:
        """Pop the next stride (or, when final, the rest) and build its window.

        Returns the window (None: nothing to encode) and whether it is the utterance's last step.
        """
        last = self.final_pending and len(self.buffer) < self.stride_samples
        # views, not copies: feeding a long recording at once stays linear in its length
        piece, self.buffer = self.buffer[:self.stride_samples], self.buffer[self.stride_samples:]
        if last and len(piece) < self.frontend.samples_per_lfr_frame:
            # under one frame left: flush the look-ahead only (nothing at all if no audio came in; FunASR
            # would decode its all-zero initial buffer here)
            new = self.overlap[:0]
            if not self.frames_seen:
                return None, last
        else:
            new = self.features.accept(piece, is_final=last)
            if len(new) == 0 and not last:
                return None, False
        window = np.concatenate([self.overlap, new]) if len(new) else self.overlap
        start = self.frames_seen - len(self.overlap)
        self.frames_seen += len(new)
        keep = self.chunk.overlap
        self.overlap = window[len(window) - keep:] if keep else window[:0]
        if len(window) == 0:
            return None, last
        return ChunkInput(window, start), last

    def fire(self, encoded: Encoded, is_final: bool) -> tuple[np.ndarray, list[int]]:
        """CIF over the window's own frames; returns the fired token embeddings and their fire frames."""
        left, stride = self.chunk.left, self.chunk.stride
        end = len(encoded.alphas) if is_final else left + stride
        embeddings, fires, self.cif = fire_window(encoded.hidden, encoded.alphas, self.cif, is_final, left, end,
                                                  self.cif_threshold, self.cif_tail_threshold)
        return embeddings, fires

    def record(self, token_ids: Sequence[int], fire_frames: Sequence[int], window: ChunkInput) -> list[int]:
        """Append decoded tokens (specials dropped, with their timestamps) and their timestamps; returns the kept
        ids.

        The timestamp convention is the offline one (:func:`~.cif.token_timestamps`): CIF fires are token
        boundaries, shifted 1.5 frames (90 ms) earlier, and a token spans at most 12 frames (720 ms). Streaming
        fires once per token, as the token ends, so a token spans from the previous token's fire (or 12 frames
        before its own, if that is later) to its own fire; times are whole ms, never negative. Offline models
        place their boundaries with all fires known (FunASR's rescaled peaks), so the two differ by a few
        frames, not in kind.
        """
        ids = []
        for token_id, fire in zip(token_ids, fire_frames):
            frame = max(0, window.start + self.chunk.left + fire)
            if token_id not in SPECIAL_IDS:
                ids.append(token_id)
                start = max(self.last_fire_frame, frame - TIMESTAMP_MAX_FRAMES)
                self.timestamps.append([_frame_ms(start), _frame_ms(frame)])
            self.last_fire_frame = frame
        self.token_ids += ids
        return ids

    def finish_utterance(self) -> Transcript:
        """Keep the finished utterance in ``result`` and reset for the next one."""
        self.result = Transcript(self.key, self.text, list(self.token_ids), [list(t) for t in self.timestamps])
        self.reset()
        return self.result
