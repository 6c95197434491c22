"""Streaming over an engine: many streams stepped together, and a single stream as the one-stream case.

:class:`BatchedStreamer` keeps one :class:`~.session.StreamSession` per stream plus that stream's engine caches.
A step takes one window from every stream with work (a full stride, or the final flush), encodes them in one
engine call, fires CIF per stream, decodes the fired tokens in one engine call and records them.
:class:`StreamingDecoder` is a streamer with one stream, so single and batched streaming agree by construction.
Not thread-safe: one thread calls :meth:`BatchedStreamer.feed` and :meth:`BatchedStreamer.step`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Optional, Sequence

import numpy as np

from .audio import SAMPLE_RATE
from .chunking import (DEFAULT_CHUNK_SIZE, DEFAULT_DECODER_LOOK_BACK, DEFAULT_ENCODER_LOOK_BACK, ChunkConfig,
                       ChunkSizeError)
from .session import StreamSession
from .transcript import Transcript

if TYPE_CHECKING:
    from .recognizer import Recognizer

logger = logging.getLogger(__name__)


@dataclass
class _Stream:
    """One stream: its state machine and the engine's opaque caches for it."""

    session: StreamSession
    encoder_cache: Any = None
    decoder_cache: Any = None
    served: int = 0  # steps served, for fairness when a step is capped


def _recognizer(model: Any) -> "Recognizer":
    """A loaded model (``Paraformer``, ``Recognizer``) as the recognizer the streamer runs on."""
    recognizer = getattr(model, "recognizer", None)
    if recognizer is None:
        raise TypeError(f"expected a model from load_model(), got {type(model).__name__}")
    if not recognizer.streaming:
        raise ChunkSizeError("this model has no chunked encoder (it is an offline Paraformer); "
                             "streaming needs an online model such as ...-online")
    return recognizer


class BatchedStreamer:
    """Schedules many streams on one model: :meth:`feed` audio per stream, call :meth:`step` repeatedly.

    ``max_batch`` caps the streams per step (the least recently served go first).
    """

    def __init__(self, model: Any, chunk_size: Sequence[int] = DEFAULT_CHUNK_SIZE,
                 encoder_chunk_look_back: int = DEFAULT_ENCODER_LOOK_BACK,
                 decoder_chunk_look_back: int = DEFAULT_DECODER_LOOK_BACK, max_batch: Optional[int] = None):
        self.model = model
        self.recognizer = _recognizer(model)
        self.engine = self.recognizer.engine
        self.chunk = ChunkConfig.create(chunk_size, encoder_chunk_look_back, decoder_chunk_look_back)
        self.max_batch = max_batch
        self.streams: dict[Hashable, _Stream] = {}

    @property
    def chunk_size(self) -> tuple[int, int, int]:
        return self.chunk.chunk_size

    # ----------------------------------------------------------------------------------------- streams
    def open(self, stream_id: Hashable, key: Optional[str] = None) -> None:
        """Start a stream; ``key`` names its transcripts (default: the id)."""
        if stream_id in self.streams:
            raise KeyError(f"stream {stream_id!r} is already open")
        predictor = self.recognizer.config.predictor
        session = StreamSession(self.recognizer.frontend, self.recognizer.tokenizer, self.chunk,
                                predictor.threshold, predictor.tail_threshold,
                                key=str(stream_id) if key is None else key)
        self.streams[stream_id] = _Stream(session)

    def feed(self, stream_id: Hashable, samples: np.ndarray, is_final: bool = False,
             sample_rate: int = SAMPLE_RATE) -> None:
        """Queue samples (any rate: resampled per stream); ``is_final`` ends the utterance (flushed by the next
        steps)."""
        self._get(stream_id).session.accept(samples, is_final, sample_rate)

    def close(self, stream_id: Hashable) -> Optional[Transcript]:
        """Forget a stream; returns its last finished Transcript (None if none finished)."""
        self._get(stream_id)
        return self.streams.pop(stream_id).session.result

    def session(self, stream_id: Hashable) -> StreamSession:
        """The state machine of a stream (its text, key, settings)."""
        return self._get(stream_id).session

    def result(self, stream_id: Hashable) -> Optional[Transcript]:
        """The Transcript of the stream's last finished utterance, or None."""
        return self._get(stream_id).session.result

    def text(self, stream_id: Hashable) -> str:
        """Text of the utterance in progress."""
        return self._get(stream_id).session.text

    def pending(self) -> list[Hashable]:
        """Streams that have a full stride or a final flush waiting."""
        return [sid for sid, stream in self.streams.items() if stream.session.has_work]

    def _get(self, stream_id: Hashable) -> _Stream:
        try:
            return self.streams[stream_id]
        except KeyError:
            raise KeyError(f"stream {stream_id!r} is not open") from None

    # -------------------------------------------------------------------------------------------- step
    def step(self) -> dict[Hashable, list[int]]:
        """Advance every stream with work by one window; return the new token ids of each stream served."""
        ready = sorted(((sid, stream) for sid, stream in self.streams.items() if stream.session.has_work),
                       key=lambda item: item[1].served)
        if self.max_batch:
            ready = ready[: self.max_batch]
        results: dict[Hashable, list[int]] = {}
        works, finishing = [], []
        for sid, stream in ready:
            stream.served += 1
            results[sid] = []
            window, last = stream.session.next_window()
            if window is not None:
                works.append((sid, stream, window, last))
            if last:
                finishing.append(stream)
        if works:
            self._run(works, results)
        for stream in finishing:
            stream.session.finish_utterance()
            stream.encoder_cache = stream.decoder_cache = None
        served = {sid for sid, _ in ready}
        idle = [cache for sid, stream in self.streams.items() if sid not in served
                for cache in (stream.encoder_cache, stream.decoder_cache) if cache is not None]
        if idle:
            self.engine.release(idle)
        return results

    def _run(self, works: list, results: dict[Hashable, list[int]]) -> None:
        """Encode the windows, fire CIF per stream, decode what fired, record tokens."""
        encoded, caches = self.engine.encode_chunks([window for _, _, window, _ in works],
                                                    [stream.encoder_cache for _, stream, _, _ in works], self.chunk)
        fired = []
        for (sid, stream, window, last), output, cache in zip(works, encoded, caches):
            stream.encoder_cache = cache
            embeddings, fires = stream.session.fire(output, last)
            if len(embeddings):
                fired.append((sid, stream, window, output, embeddings, fires))
        if not fired:
            return
        token_ids, caches = self.engine.decode_chunks([item[3] for item in fired], [item[4] for item in fired],
                                                      [item[1].decoder_cache for item in fired], self.chunk)
        for (sid, stream, window, _, _, fires), ids, cache in zip(fired, token_ids, caches):
            stream.decoder_cache = cache
            results[sid] = stream.session.record(ids, fires, window)

    def run_until_idle(self) -> dict[Hashable, list[int]]:
        """Step until no stream has work; return all new token ids per stream."""
        collected: dict[Hashable, list[int]] = {}
        while any(stream.session.has_work for stream in self.streams.values()):
            for sid, ids in self.step().items():
                collected.setdefault(sid, []).extend(ids)
        return collected


class StreamingDecoder:
    """One stream: feed it audio with :meth:`feed`, finish with ``is_final=True`` or :meth:`finish`.

    A :class:`BatchedStreamer` with one stream. Also a context manager: ``with StreamingDecoder(model) as s:
    s.feed(chunk) ...`` flushes on exit.
    """

    _ID = "stream"

    def __init__(self, model: Any, chunk_size: Sequence[int] = DEFAULT_CHUNK_SIZE,
                 encoder_chunk_look_back: int = DEFAULT_ENCODER_LOOK_BACK,
                 decoder_chunk_look_back: int = DEFAULT_DECODER_LOOK_BACK, key: str = "stream"):
        self.model = model
        self.streamer = BatchedStreamer(model, chunk_size, encoder_chunk_look_back, decoder_chunk_look_back)
        self.streamer.open(self._ID, key)
        self.state = self.streamer.session(self._ID)

    chunk_size = property(lambda self: self.streamer.chunk.chunk_size)
    stride_samples = property(lambda self: self.state.stride_samples)
    encoder_look_back = property(lambda self: self.streamer.chunk.encoder_look_back)
    decoder_look_back = property(lambda self: self.streamer.chunk.decoder_look_back)

    @property
    def key(self) -> str:
        return self.state.key

    @key.setter
    def key(self, value: str) -> None:
        self.state.key = value

    @property
    def text(self) -> str:
        """Text recognised so far in this utterance."""
        return self.state.text

    @property
    def result(self) -> Optional[Transcript]:
        """The Transcript of the last finished utterance."""
        return self.state.result

    def __enter__(self) -> "StreamingDecoder":
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None and self.state.active:
            self.finish()

    def feed(self, samples: np.ndarray, is_final: bool = False, sample_rate: int = SAMPLE_RATE) -> list[int]:
        """Add mono samples; return the token ids recognised by this call (the rest of them when final)."""
        self.streamer.feed(self._ID, samples, is_final, sample_rate)
        return self.streamer.run_until_idle().get(self._ID, [])

    def finish(self) -> list[int]:
        """Flush the stream (same as ``feed(empty, is_final=True)``); returns the last token ids."""
        return self.feed(np.zeros(0, np.float32), is_final=True)

    def reset(self) -> None:
        """Drop the utterance in progress."""
        stream = self.streamer.streams[self._ID]
        stream.session.reset()
        stream.encoder_cache = stream.decoder_cache = None

    def decode_all(self, samples: np.ndarray, key: Optional[str] = None, sample_rate: int = SAMPLE_RATE
                   ) -> Transcript:
        """Stream a whole waveform and return its :class:`Transcript` (the state is reset afterwards)."""
        self.key = key or self.key
        self.feed(samples, is_final=True, sample_rate=sample_rate)
        return self.result
