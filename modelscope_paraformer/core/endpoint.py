"""A causal energy endpointer for live streams: where utterances start and end (numpy only, no torch).

Live audio arrives in pieces and an utterance must be closed without look-ahead, so unlike :mod:`.vad` (which
sees a whole recording) every decision here uses past samples only. Per 10 ms frame: log energy, smoothed over
a few frames; a noise floor that is the quietest smoothed energy of the last seconds (a monotonic deque keeps
the running minimum O(1) per frame); a frame is loud when it is ``margin_db`` above the floor. Speech starts
after ``onset_frames`` consecutive loud frames; the utterance ends (an endpoint) after ``end_silence_ms``
without a loud frame, or when it reaches ``max_utterance_ms``, so that a session that stays open for hours
keeps its streaming caches and token lists bounded. The defaults follow FunASR's FSMN-VAD: 800 ms end silence,
60 s at most per segment.

:class:`Segmenter` gates a stream with it, as FunASR's runtimes do with their VAD: only utterances (each with
``preroll_ms`` of audio before its onset) go on to recognition, the silence between them costs nothing, and a
model never sees long stretches of silence before speech (small models hallucinate on them).
:class:`FsmnSegmenter` does the same with FunASR's FSMN-VAD (:mod:`.fsmn_vad`) deciding instead of the energy.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .vad import frame_energy_db

if TYPE_CHECKING:  # the energy endpointer needs no torch; only a loaded FSMN-VAD brings it
    from .fsmn_vad import FsmnVad


@dataclass(frozen=True)
class EndpointConfig:
    """Settings of :class:`Endpointer` (frames are 10 ms)."""

    end_silence_ms: int = 800  # FunASR's max_end_silence_time
    max_utterance_ms: int = 60000  # FunASR's max_single_segment_time
    margin_db: float = 12.0  # loud: this far above the noise floor
    min_floor_db: float = -70.0  # digital silence must not drag the threshold down to nothing
    floor_window_s: float = 5.0  # the floor is the quietest smoothed energy within this past window
    smooth_frames: int = 5  # one quiet frame is not the noise floor
    onset_frames: int = 3  # consecutive loud frames that make speech (a click is not speech)
    preroll_ms: int = 300  # audio kept before an onset (soft word starts)
    head_ms: int = 1000  # speech that starts this early in a stream starts its first utterance at sample 0

    def __post_init__(self) -> None:
        if self.end_silence_ms <= 0 or self.max_utterance_ms <= 0:
            raise ValueError("end_silence_ms and max_utterance_ms must be positive")


class Endpointer:
    """Feed one stream's samples with :meth:`accept`; it returns where utterances start and end.

    The state (floor history, speech, silence run) carries over between calls and across endpoints, so
    splitting the same audio into pieces of any size gives the same events.
    """

    def __init__(self, sample_rate: int, config: EndpointConfig = EndpointConfig()):
        if sample_rate < 100:
            raise ValueError(f"sample_rate must be at least 100 Hz, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.config = config
        self.frame = self.sample_rate // 100
        self._end_frames = max(1, config.end_silence_ms // 10)
        self._max_frames = max(1, config.max_utterance_ms // 10)
        self._floor_frames = max(1, int(config.floor_window_s * 100))
        self._carry = np.zeros(0, np.float32)  # samples of an unfinished frame
        self._recent: deque = deque(maxlen=max(1, config.smooth_frames))
        self._minima: deque = deque()  # (frame index, smoothed energy), increasing energies
        self._index = 0  # frames seen in the stream
        self._utterance_frames = 0
        self._loud_run = 0
        self._silence_run = 0
        self.in_speech = False  # an utterance is in progress

    def accept(self, samples: np.ndarray) -> list[tuple[str, int]]:
        """Take the next samples (float, any scale); return events ``("start", offset)`` (the first loud frame
        of an onset: it may lie before this call's samples, a negative offset) and ``("end", offset)`` (samples
        before the offset belong to the ending utterance), offsets into ``samples``, in order."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        carried = len(self._carry)
        data = np.concatenate([self._carry, samples]) if carried else samples
        whole = len(data) // self.frame
        events: list[tuple[str, int]] = []
        if whole:
            for k, energy in enumerate(frame_energy_db(data[: whole * self.frame], self.frame)):
                event = self._frame(float(energy))
                if event == "start":
                    events.append(("start", (k + 1 - self.config.onset_frames) * self.frame - carried))
                elif event == "end":
                    events.append(("end", (k + 1) * self.frame - carried))
        self._carry = data[whole * self.frame:].copy()
        return events

    def _frame(self, energy: float) -> str:
        """Advance by one frame; "start" or "end" when an utterance starts or ends with it, else ""."""
        config = self.config
        self._recent.append(energy)
        smooth = sum(self._recent) / len(self._recent)
        while self._minima and self._minima[-1][1] >= smooth:
            self._minima.pop()
        self._minima.append((self._index, smooth))
        while self._minima[0][0] <= self._index - self._floor_frames:
            self._minima.popleft()
        floor = max(self._minima[0][1], config.min_floor_db)
        self._index += 1
        loud = energy > floor + config.margin_db
        self._loud_run = self._loud_run + 1 if loud else 0
        if not self.in_speech:
            if self._loud_run >= config.onset_frames:
                self.in_speech = True
                self._utterance_frames, self._silence_run = self._loud_run, 0
                return "start"
            return ""
        self._utterance_frames += 1
        self._silence_run = 0 if loud else self._silence_run + 1
        if self._silence_run >= self._end_frames or self._utterance_frames >= self._max_frames:
            self._utterance_frames = self._loud_run = self._silence_run = 0
            self.in_speech = False
            return "end"
        return ""


class Segmenter:
    """Gates one stream into utterances: :meth:`accept` returns ``(samples, ends, start)`` pieces of utterance
    audio only (``ends``: the utterance ends after this piece; ``start``: the piece's first sample in the
    stream), holding back at most ``preroll_ms`` (``head_ms`` at the stream start) while no one is in progress.
    """

    def __init__(self, sample_rate: int, config: EndpointConfig = EndpointConfig()):
        self.endpointer = Endpointer(sample_rate, config)
        self.preroll = int(config.preroll_ms * sample_rate / 1000)
        self.head = int(config.head_ms * sample_rate / 1000)
        slack = (config.onset_frames + 1) * self.endpointer.frame  # an onset is known a few frames late
        self._cap = self.preroll + slack
        self._head_cap = max(self.head, self.preroll) + slack
        self._held = np.zeros(0, np.float32)  # the latest samples outside utterances
        self.position = 0  # samples seen
        self.last_end = 0  # where the last utterance ended (the next one cannot start before)
        self.utterances = 0

    @property
    def in_utterance(self) -> bool:
        return self.endpointer.in_speech

    def accept(self, samples: np.ndarray) -> list[tuple[np.ndarray, bool, int]]:
        """The utterance pieces within the held-back and the new samples."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        pieces: list[tuple[np.ndarray, bool, int]] = []
        cursor = 0  # samples[:cursor] are handled
        for kind, offset in self.endpointer.accept(samples):
            if kind == "start":
                onset = self.position + offset
                begin = onset - self.preroll
                if self.utterances == 0 and onset <= self.head:
                    begin = 0
                held_start = self.position - len(self._held)
                begin = max(begin, self.last_end, held_start)
                if begin < self.position:
                    pieces.append((self._held[begin - held_start:], False, begin))
                    cursor = 0
                else:
                    cursor = begin - self.position
                self._held = self._held[:0]
                self.utterances += 1
            else:  # end
                pieces.append((samples[cursor:offset], True, self.position + cursor))
                cursor = offset
                self.last_end = self.position + offset
        if self.in_utterance:
            if cursor < len(samples):
                pieces.append((samples[cursor:], False, self.position + cursor))
        else:
            cap = self._head_cap if self.utterances == 0 else self._cap
            rest = samples[cursor:]
            held = np.concatenate([self._held, rest]) if len(self._held) else rest.copy()
            self._held = held[len(held) - cap:] if len(held) > cap else held
        self.position += len(samples)
        return [piece for piece in pieces if len(piece[0]) or piece[1]]


class FsmnSegmenter:
    """:class:`Segmenter`'s interface with an FSMN-VAD stream deciding where utterances start and end.

    The VAD reports a start a few hundred ms after it (its window and look-back) and an end after
    ``end_silence_ms`` of silence, so the audio outside utterances is held back long enough to begin each
    utterance where the VAD says, while the audio of an utterance goes on at once (no added latency): an
    utterance ends with the audio fed when its end is known, keeping the silence the VAD took to decide.
    ``max_utterance_ms`` cuts an utterance that goes on, and the next one continues at the cut.
    """

    def __init__(self, vad: FsmnVad, sample_rate: int, config: EndpointConfig = EndpointConfig(),
                 chunk_ms: int = 200):
        self.rate = int(sample_rate)
        self.stream = vad.stream(chunk_ms, max_end_silence_ms=config.end_silence_ms, partial=True,
                                 sample_rate=self.rate)
        options = vad.options
        start_latency_ms = options.window_size_ms + options.lookback_time_start_point + chunk_ms + 100  # + frontend
        self._cap = int(start_latency_ms * self.rate / 1000)
        self.head = int(config.head_ms * self.rate / 1000)
        self.max_utterance = max(1, int(config.max_utterance_ms * self.rate / 1000))
        self._held = np.zeros(0, np.float32)  # the latest samples outside utterances
        self._open = False
        self._utterance_start = 0
        self.position = 0  # samples seen
        self.last_end = 0  # where the last utterance ended (the next one cannot start before)
        self.utterances = 0

    @property
    def in_utterance(self) -> bool:
        return self._open

    def accept(self, samples: np.ndarray) -> list[tuple[np.ndarray, bool, int]]:
        """The utterance pieces ``(samples, ends, start)`` within the held-back and the new samples."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        pieces: list[tuple[np.ndarray, bool, int]] = []
        cursor = 0  # samples[:cursor] are handled
        for begin_ms, end_ms in self.stream.feed(samples):
            if begin_ms != -1 and not self._open:
                cursor = self._begin(begin_ms, samples, pieces)
            if end_ms != -1 and self._open:
                pieces.append((samples[cursor:], True, self.position + cursor))
                cursor = len(samples)
                self.last_end = self.position + len(samples)
                self._open = False
        if self._open:
            piece, start = samples[cursor:], self.position + cursor
            cut = start + len(piece) - self._utterance_start >= self.max_utterance
            pieces.append((piece, cut, start))
            if cut:  # the VAD still hears speech: the next utterance starts here
                self._utterance_start = self.last_end = self.position + len(samples)
                self.utterances += 1
        else:
            rest = samples[cursor:]
            held = np.concatenate([self._held, rest]) if len(self._held) else rest.copy()
            self._held = held[len(held) - self._cap:] if len(held) > self._cap else held
        self.position += len(samples)
        return [piece for piece in pieces if len(piece[0]) or piece[1]]

    def _begin(self, begin_ms: int, samples: np.ndarray, pieces: list) -> int:
        """Open an utterance at the VAD's start; the held-back audio from there goes out; returns the cursor."""
        onset = round(begin_ms * self.rate / 1000)
        begin = 0 if self.utterances == 0 and onset <= self.head else onset
        held_start = self.position - len(self._held)
        begin = max(begin, self.last_end, held_start)
        cursor = 0
        if begin < self.position:
            pieces.append((self._held[begin - held_start:], False, begin))
        else:
            cursor = min(begin - self.position, len(samples))
        self._held = self._held[:0]
        self._open, self._utterance_start = True, begin
        self.utterances += 1
        return cursor


def make_segmenter(sample_rate: int, config: EndpointConfig = EndpointConfig(),
                   vad: FsmnVad | None = None) -> Segmenter | FsmnSegmenter:
    """The FSMN-VAD segmenter when a VAD is given, else the causal energy one."""
    return Segmenter(sample_rate, config) if vad is None else FsmnSegmenter(vad, sample_rate, config)
