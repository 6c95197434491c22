"""The engine thread of the server: every stream of the process, stepped together, off the event loop.

The engine calls are not thread-safe and a forward pass would block the event loop, so one thread owns the
models: it takes commands (open, audio, close) from a queue, feeds each stream's audio into a
:class:`~..core.scheduler.BatchedStreamer` (one per chunk configuration, so that every ready stream of that
configuration is encoded and decoded by one engine call per step), sends the new text back, and between steps
runs the offline passes (``offline`` mode's sentences, ``2pass``'s ``2pass-offline`` re-decoding) in FIFO order.
Results go back to the event loop with ``loop.call_soon_threadsafe(sink.deliver, event)``; events are tuples:

* ``("partial", text, audio_ms)``: an increment of the utterance in progress (online, 2pass) and the session
  time up to which audio was decoded for it (a latency probe for clients);
* ``("sentence", text, timestamps, is_last)``: a whole sentence (offline, 2pass-offline);
* ``("done",)``: everything of the session was sent;
* ``("error", message)``: the stream failed and is dropped (the others go on).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Hashable, Optional, Protocol

import numpy as np

from ..core.audio import SAMPLE_RATE, decode_audio, resample
from ..core.batching import length_batches
from ..core.scheduler import BatchedStreamer
from ..core.transcript import Transcript
from .protocol import TextDelta

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """The connection side of a stream: called on the event loop's thread."""

    def deliver(self, event: tuple) -> None: ...


@dataclass
class StreamSettings:
    """What the engine needs to know about a session."""

    mode: str  # online | offline | 2pass
    chunk_size: tuple[int, int, int] = (5, 10, 5)
    encoder_chunk_look_back: int = 4
    decoder_chunk_look_back: int = 0
    key: str = "stream"
    hotwords: Optional[list[str]] = None  # for the offline passes of a SeACo model


@dataclass
class Progress:
    """Seconds of audio a connection submitted (written by the loop) and the engine has done (written by the
    engine thread): their difference is the backlog that backpressure bounds."""

    submitted_s: float = 0.0
    done_s: float = 0.0

    @property
    def backlog_s(self) -> float:
        return self.submitted_s - self.done_s


@dataclass
class _Stream:
    settings: StreamSettings
    sink: Sink
    progress: Progress
    config_key: Optional[tuple] = None  # the streamer it runs on (streaming modes)
    pending: deque = field(default_factory=deque)  # ("audio", samples, rate, cut, final) | ("file", bytes, last)
    flushing: bool = False  # the utterance's end was fed; the streamer is flushing it
    flush_last: bool = False  # ... and it is the session's last
    segment: list = field(default_factory=list)  # the utterance's audio, for the offline pass
    segment_rate: int = SAMPLE_RATE
    utterance_start_s: float = 0.0
    utterance_open: bool = False  # a piece of the utterance in progress was fed
    fed_s: float = 0.0  # audio fed (utterances only)
    end_s: float = 0.0  # session time of the end of the last audio fed (silence between utterances included)
    delta: Optional[TextDelta] = None


@dataclass
class _Job:
    sid: Hashable
    samples: Optional[np.ndarray]  # 16 kHz
    data: Optional[bytes]  # an audio file's bytes (offline mode, wav_format other than pcm)
    offset_ms: float
    last: bool
    full_context: bool  # re-decode with full context (2pass) rather than as the pipeline does (offline)


class EngineWorker:
    """One thread that runs all engine work; the methods other than :meth:`run` are thread-safe."""

    def __init__(self, model: Any, offline_model: Any = None, max_batch: Optional[int] = None,
                 loop: Any = None, idle_wait_s: float = 0.5, punctuator: Any = None):
        self.model = model
        self.offline_model = offline_model
        self.punctuator = punctuator  # punctuates the sentences of the offline passes (CT-Transformer)
        self.max_batch = max_batch
        self.loop = loop
        self.idle_wait_s = idle_wait_s
        self.tokenizer = getattr(model, "tokenizer", None)
        self.streaming = bool(getattr(model, "streaming", False))
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[Hashable, _Stream] = {}
        self._streamers: dict[tuple, BatchedStreamer] = {}
        self._jobs: deque[_Job] = deque()
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self.steps = 0
        self.last_step_ms = 0.0

    # ------------------------------------------------------------------------------------- commands
    def start(self) -> None:
        """Start the engine thread."""
        self._thread = threading.Thread(target=self.run, name="paraformer-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (streams still open are dropped)."""
        self._stopping = True
        self._commands.put(("wake",))
        if self._thread is not None:
            self._thread.join(timeout)

    def open(self, sid: Hashable, settings: StreamSettings, sink: Sink, progress: Progress) -> None:
        self._commands.put(("open", sid, settings, sink, progress))

    def audio(self, sid: Hashable, samples: np.ndarray, rate: int, cut: bool = False, final: bool = False,
              start_s: Optional[float] = None) -> None:
        """Queue float32 samples at ``rate``; ``cut`` ends the utterance there, ``final`` the session;
        ``start_s``: where the samples start in the session (timestamps are absolute in it)."""
        self._commands.put(("audio", sid, samples, rate, cut, final, start_s))

    def file(self, sid: Hashable, data: bytes) -> None:
        """The whole input as an audio file's bytes (offline mode): decoded and recognised, then the session ends."""
        self._commands.put(("file", sid, data))

    def close(self, sid: Hashable) -> None:
        """Forget a stream (a connection ended, finished or not): its engine state is freed."""
        self._commands.put(("close", sid))

    def stats(self) -> dict:
        """Figures for the health endpoint (racy reads of counters: fine for monitoring)."""
        return {"streams": len(self._streams), "streamers": len(self._streamers), "jobs": len(self._jobs),
                "steps": self.steps, "last_step_ms": round(self.last_step_ms, 1),
                "alive": bool(self._thread and self._thread.is_alive())}

    # ---------------------------------------------------------------------------------------- thread
    def run(self) -> None:
        """The engine loop: commands, feeding, one step per streamer, one offline job; repeat."""
        logger.info("engine thread started")
        while not self._stopping:
            try:
                self._drain(block=not self._has_work())
                if self._stopping:
                    break
                for sid in list(self._streams):
                    self._feed(sid)
                self._step_all()
                if self._jobs:
                    self._run_jobs()
                self._update_progress()
            except Exception:  # never let one bad stream kill the thread that serves everyone
                logger.exception("engine loop error")
        logger.info("engine thread stopped")

    def _has_work(self) -> bool:
        if self._jobs or any(streamer.pending() for streamer in self._streamers.values()):
            return True
        return any(stream.pending and not stream.flushing for stream in self._streams.values())

    def _drain(self, block: bool) -> None:
        try:
            command = self._commands.get(timeout=self.idle_wait_s) if block else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            self._apply(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return

    def _apply(self, command: tuple) -> None:
        kind, sid = command[0], command[1] if len(command) > 1 else None
        if kind == "open":
            _, sid, settings, sink, progress = command
            self._open(sid, settings, sink, progress)
        elif kind == "close":
            self._close(sid)
        elif kind in ("audio", "file"):
            stream = self._streams.get(sid)
            if stream is not None:  # audio of a stream closed meanwhile is dropped
                stream.pending.append(command)

    def _open(self, sid: Hashable, settings: StreamSettings, sink: Sink, progress: Progress) -> None:
        if sid in self._streams:
            self._close(sid)
        stream = _Stream(settings, sink, progress, delta=TextDelta(self.tokenizer))
        if settings.mode in ("online", "2pass"):
            key = (tuple(settings.chunk_size), settings.encoder_chunk_look_back, settings.decoder_chunk_look_back)
            streamer = self._streamers.get(key)
            if streamer is None:
                streamer = self._streamers[key] = BatchedStreamer(self.model, key[0], key[1], key[2],
                                                                  self.max_batch)
            streamer.open(sid, settings.key)
            stream.config_key = key
        self._streams[sid] = stream

    def _close(self, sid: Hashable) -> None:
        stream = self._streams.pop(sid, None)
        if stream is None:
            return
        if stream.config_key is not None:
            streamer = self._streamers[stream.config_key]
            streamer.close(sid)
            if not streamer.streams:  # a configuration nobody uses any more holds nothing
                del self._streamers[stream.config_key]
        if self._jobs:
            self._jobs = deque(job for job in self._jobs if job.sid != sid)

    def _emit(self, stream: _Stream, event: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(stream.sink.deliver, event)
        except RuntimeError:  # the loop is closed: shutting down
            pass

    def _fail(self, sid: Hashable, error: BaseException) -> None:
        stream = self._streams.get(sid)
        logger.warning("stream %s failed: %s: %s", sid, type(error).__name__, error)
        if stream is not None:
            self._emit(stream, ("error", f"{type(error).__name__}: {error}"))
            self._close(sid)

    # --------------------------------------------------------------------------------------- feeding
    def _feed(self, sid: Hashable) -> None:
        stream = self._streams[sid]
        try:
            while stream.pending and not stream.flushing:
                item = stream.pending.popleft()
                if item[0] == "file":
                    self._jobs.append(_Job(sid, None, item[2], 0.0, True, False))
                    continue
                _, _, samples, rate, cut, final, start_s = item
                if not stream.utterance_open and len(samples):
                    stream.utterance_open = True
                    stream.utterance_start_s = stream.fed_s if start_s is None else start_s
                stream.end_s = (stream.end_s if start_s is None else start_s) + len(samples) / rate
                self._feed_audio(sid, stream, samples, rate, cut or final, final)
        except Exception as error:  # e.g. a rate change inside an utterance
            self._fail(sid, error)

    def _feed_audio(self, sid: Hashable, stream: _Stream, samples: np.ndarray, rate: int, end: bool,
                    final: bool) -> None:
        mode = stream.settings.mode
        if mode in ("2pass", "offline") and len(samples):
            stream.segment.append(samples)
            stream.segment_rate = rate
        stream.fed_s += len(samples) / rate
        if mode == "offline":
            if end:
                self._queue_segment(sid, stream, final, full_context=False)
            return
        streamer = self._streamers[stream.config_key]
        streamer.feed(sid, samples, is_final=end, sample_rate=rate)
        if end:
            stream.flushing, stream.flush_last = True, final
            if not streamer.session(sid).final_pending:  # nothing to flush: the utterance had no audio
                self._utterance_done(sid, stream)

    def _queue_segment(self, sid: Hashable, stream: _Stream, last: bool, full_context: bool) -> None:
        samples = np.concatenate(stream.segment) if stream.segment else np.zeros(0, np.float32)
        if stream.segment_rate != SAMPLE_RATE:
            samples = resample(samples, stream.segment_rate)
        self._jobs.append(_Job(sid, samples, None, stream.utterance_start_s * 1000.0, last, full_context))
        stream.segment = []
        stream.utterance_open = False

    def _utterance_done(self, sid: Hashable, stream: _Stream) -> None:
        last = stream.flush_last
        stream.flushing = stream.flush_last = False
        stream.delta.reset()
        if stream.settings.mode == "2pass":
            self._queue_segment(sid, stream, last, full_context=True)
        else:
            stream.utterance_open = False
            if last:
                self._emit(stream, ("done",))

    # ------------------------------------------------------------------------------------------ steps
    def _step_all(self) -> None:
        for key, streamer in list(self._streamers.items()):
            if not streamer.pending():
                continue
            began = time.perf_counter()
            try:
                results = streamer.step()
            except Exception as error:  # the engine failed on this batch: its streams fail, the rest go on
                logger.exception("step failed for chunk configuration %s", key)
                for sid in list(streamer.streams):
                    self._fail(sid, error)
                continue
            self.steps += 1
            self.last_step_ms = (time.perf_counter() - began) * 1000
            for sid, ids in results.items():
                stream = self._streams.get(sid)
                if stream is None:
                    continue
                if ids:
                    text = stream.delta.add(ids)
                    if text:
                        done = stream.end_s - len(streamer.session(sid).buffer) / SAMPLE_RATE
                        self._emit(stream, ("partial", text, int(round(done * 1000))))
                if stream.flushing and not streamer.session(sid).final_pending:
                    self._utterance_done(sid, stream)

    def _update_progress(self) -> None:
        for sid, stream in self._streams.items():
            buffered = 0.0
            if stream.config_key is not None:
                streamer = self._streamers.get(stream.config_key)
                if streamer is not None and sid in streamer.streams:
                    buffered = len(streamer.session(sid).buffer) / SAMPLE_RATE
            stream.progress.done_s = stream.fed_s - buffered

    # ------------------------------------------------------------------------------------ offline pass
    MAX_JOBS = 8  # offline passes per loop iteration: the streams' next step waits for them
    JOB_BATCH = 8  # segments per batched full-context forward

    def _run_jobs(self) -> None:
        """The queued offline passes: full-context segments in length-sorted batches (one forward each, as the
        online steps are), the rest one by one; results go out in queue order (a stream's sentences in order)."""
        jobs = [self._jobs.popleft() for _ in range(min(len(self._jobs), self.MAX_JOBS))]
        jobs = [job for job in jobs if job.sid in self._streams]
        model = self.offline_model if self.offline_model is not None else self.model
        streaming = bool(getattr(model, "streaming", False))
        results: dict[int, Any] = {}
        batched = [i for i, job in enumerate(jobs) if job.data is None and 0 < len(job.samples) <= 60 * SAMPLE_RATE
                   and (job.full_context or not streaming) and not self._streams[job.sid].settings.hotwords]
        began = time.perf_counter()
        for group in length_batches([len(jobs[i].samples) for i in batched], self.JOB_BATCH):
            indices = [batched[k] for k in group]
            try:
                decoded = model.recognizer.recognize([jobs[i].samples for i in indices],
                                                     [self._streams[jobs[i].sid].settings.key for i in indices],
                                                     [jobs[i].offset_ms for i in indices])
                results.update(zip(indices, decoded))
            except Exception as error:  # a failed batch: its streams fail, the rest go on
                for i in indices:
                    results[i] = error
        for i, job in enumerate(jobs):
            if i not in results:
                try:
                    results[i] = self._decode(job, self._streams[job.sid].settings.key)
                except Exception as error:
                    results[i] = error
        logger.debug("%d offline passes in %.0f ms", len(jobs), (time.perf_counter() - began) * 1000)
        for i, job in enumerate(jobs):
            stream, transcript = self._streams.get(job.sid), results[i]
            if stream is None:
                continue
            if isinstance(transcript, Exception):
                self._fail(job.sid, transcript)
                continue
            if transcript.text or job.last:
                text = transcript.text
                if self.punctuator is not None and text:
                    try:
                        text = self.punctuator.punctuate(text).text
                    except Exception:  # a sentence without punctuation beats a failed session
                        logger.exception("punctuation failed; sending the sentence unpunctuated")
                self._emit(stream, ("sentence", text, transcript.timestamps, job.last))
            if job.last:
                self._emit(stream, ("done",))

    def _decode(self, job: _Job, key: str) -> Transcript:
        model = self.offline_model if self.offline_model is not None else self.model
        hotwords = self._streams[job.sid].settings.hotwords
        if job.data is not None:  # a whole audio file
            samples, rate = decode_audio(job.data, name=key)
            return model.recognizer.transcribe([resample(samples, rate)], [key], hotwords=hotwords)[0]
        samples = job.samples
        if len(samples) == 0:
            return Transcript(key, "")
        if job.full_context or not getattr(model, "streaming", False):
            # the segment in one full-context pass (Recognizer.recognize also works for a chunked encoder)
            recognizer = model.recognizer
            if len(samples) <= 60 * SAMPLE_RATE:
                return recognizer.recognize([samples], [key], [job.offset_ms], hotwords=hotwords)[0]
            transcript = recognizer.transcribe_long(samples, key, hotwords=hotwords)
        else:  # offline mode on a streaming model: as the in-process pipeline does it (streamed)
            transcript = model.transcribe([samples], [key])[0]
        offset = int(round(job.offset_ms))
        transcript.timestamps = [[start + offset, end + offset] for start, end in transcript.timestamps]
        return transcript
