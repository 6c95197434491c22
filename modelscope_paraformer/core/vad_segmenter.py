"""The E2E VAD decisions of FunASR's ``FsmnVADStreaming``: frame posteriors in, speech segments (ms) out.

Each 10 ms frame is speech when its speech posterior beats the silence posterior by ``speech_noise_thres``
(and its level passes the dB/SNR floors, which the shipped options make moot). A sliding window of these
decisions (``window_size_ms``, hysteresis counts ``sil_to_speech`` / ``speech_to_sil``) flips between silence
and speech. A segment starts ``window + lookback`` before the flip to speech; it ends after
``end_silence_ms`` of silence (trimmed back to ``lookahead`` after the speech), at ``max_single_segment_time``,
or at the last frame. The bookkeeping mirrors FunASR's so that the segments are the same to the millisecond,
quirks included (e.g. where the next segment may start after one ended). No torch here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from .config import ConfigError

MULTIPLE_UTTERANCES = 1  # detect_mode: keep segmenting after an end point (0: stop after the first utterance)


@dataclass
class VadOptions:
    """``model_conf`` of an FSMN-VAD config.yaml, with FunASR's defaults (times in ms)."""

    sample_rate: int = 16000
    detect_mode: int = MULTIPLE_UTTERANCES
    max_end_silence_time: float = 800
    max_start_silence_time: float = 3000
    window_size_ms: float = 200
    sil_to_speech_time_thres: float = 150
    speech_to_sil_time_thres: float = 150
    speech_2_noise_ratio: float = 1.0
    do_extend: int = 1
    lookback_time_start_point: float = 200
    lookahead_time_end_point: float = 100
    max_single_segment_time: float = 60000
    snr_thres: float = -100.0
    noise_frame_num_used_for_snr: float = 100
    decibel_thres: float = -100.0
    speech_noise_thres: float = 0.6
    fe_prior_thres: float = 1e-4
    sil_pdf_ids: list[int] = field(default_factory=lambda: [0])
    frame_in_ms: int = 10
    frame_length_ms: int = 25
    # accepted as FunASR accepts them, and as unused by its decisions
    snr_mode: int = 0
    do_start_point_detection: bool = True
    do_end_point_detection: bool = True
    nn_eval_block_size: int = 8
    dcd_block_size: int = 4
    silence_pdf_num: int = 1
    speech_noise_thresh_low: float = -0.1
    speech_noise_thresh_high: float = 0.3
    output_frame_probs: bool = False

    @classmethod
    def from_config(cls, model_conf: dict[str, Any] | None, source: str = "config.yaml") -> VadOptions:
        """The known keys of ``model_conf``, type-checked (others are ignored, as FunASR ignores them)."""
        values = {}
        for option in fields(cls):
            if option.name not in (model_conf or {}):
                continue
            value = model_conf[option.name]
            if option.name == "sil_pdf_ids":
                if not (isinstance(value, list) and value and all(isinstance(v, int) for v in value)):
                    raise ConfigError(f"{source}: model_conf.sil_pdf_ids must be a non-empty list of class "
                                      f"indices, got {value!r}")
            elif isinstance(option.default, bool):
                if not isinstance(value, (bool, int)):
                    raise ConfigError(f"{source}: model_conf.{option.name} must be true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: model_conf.{option.name} must be a number, got {value!r}")
            values[option.name] = value
        options = cls(**values)
        if options.frame_in_ms <= 0 or options.window_size_ms < options.frame_in_ms:
            raise ConfigError(f"{source}: model_conf needs frame_in_ms > 0 and window_size_ms >= frame_in_ms")
        return options


class Change(Enum):
    """What one frame did to the smoothed speech/silence state."""

    SPEECH_TO_SPEECH = 0
    SPEECH_TO_SILENCE = 1
    SILENCE_TO_SILENCE = 2
    SILENCE_TO_SPEECH = 3


class WindowDetector:
    """Speech/silence flips over a sliding window of frame decisions, with hysteresis counts."""

    def __init__(self, options: VadOptions):
        frame = options.frame_in_ms
        self.size = int(options.window_size_ms / frame)
        self.to_speech = int(options.sil_to_speech_time_thres / frame)
        self.to_silence = int(options.speech_to_sil_time_thres / frame)
        self.reset()

    def reset(self) -> None:
        self.window = [0] * self.size
        self.position = 0
        self.speech_count = 0
        self.in_speech = False

    def step(self, speech: bool) -> Change:
        """Push one frame decision; report the state change."""
        self.speech_count += int(speech) - self.window[self.position]
        self.window[self.position] = int(speech)
        self.position = (self.position + 1) % self.size
        if not self.in_speech and self.speech_count >= self.to_speech:
            self.in_speech = True
            return Change.SILENCE_TO_SPEECH
        if self.in_speech and self.speech_count <= self.to_silence:
            self.in_speech = False
            return Change.SPEECH_TO_SILENCE
        return Change.SPEECH_TO_SPEECH if self.in_speech else Change.SILENCE_TO_SILENCE


class State(Enum):
    WAITING = 1  # no start point yet
    IN_SPEECH = 2
    ENDED = 3


@dataclass
class _Segment:
    start_ms: int
    end_ms: int
    has_start: bool = False
    has_end: bool = False


def _log(value: float) -> float:
    # FunASR's math.log raises on a posterior of exactly 0 or 1; -inf gives the decision the limit implies
    return math.log(value) if value > 0.0 else -math.inf


class VadSegmenter:
    """One utterance stream's VAD state: feed frame blocks, get segments.

    ``end_silence_ms`` (silence that ends a segment, less the window's ``speech_to_sil`` time) and
    ``speech_noise_thres`` may be changed between blocks (FunASR's dynamic end-silence schedule does).
    """

    def __init__(self, options: VadOptions, end_silence_ms: float, speech_noise_thres: float):
        self.options = options
        self.end_silence_ms = end_silence_ms
        self.speech_noise_thres = speech_noise_thres
        self.window = WindowDetector(options)
        self.latency = self.window.size + (int(options.lookback_time_start_point / options.frame_in_ms)
                                           if options.do_extend else 0)
        self.frames = 0  # frames processed so far
        self.buffer_start = 0  # first frame a new segment may start at (FunASR's data_buf_start_frame)
        self.ends_detected = 0
        self.noise_db = -100.0  # running noise level for the SNR floor
        self.segments: list[_Segment] = []  # the last segment and any not yet fully reported
        self.reported = 0  # segments of ``self.segments`` fully reported
        self.start_reported = False  # partial mode: the last segment's start went out as [beg, -1]
        self._reset_detection()

    def _reset_detection(self) -> None:
        self.state = State.WAITING
        self.silence_run = 0
        self.last_speech = 0
        self.last_silence = -1
        self.confirmed_start = -1
        self.confirmed_end = -1
        self.window.reset()

    def process(self, decibels: Sequence[float], silence_probs: Sequence[Sequence[float]], is_final: bool,
                partial: bool) -> list[list[int]]:
        """Run one block of frames (their dB levels and silence-class posteriors, one row per frame).

        Returns segments as ``[beg, end]`` ms; with ``partial``, a start is reported at once as ``[beg, -1]``
        and its end later as ``[-1, end]`` (FunASR's streaming output); otherwise only complete segments,
        and on the final block also an unfinished one.
        """
        first = self.frames
        self.frames += len(decibels)
        if self.state is not State.ENDED:  # single-utterance mode ignores everything after its end
            last = len(decibels) - 1
            for offset, (decibel, probs) in enumerate(zip(decibels, silence_probs)):
                speech = self._is_speech(decibel, sum(probs))
                self._step(speech, first + offset, is_final and offset == last)
        return self._report(is_final, partial)

    def _is_speech(self, decibel: float, silence: float) -> bool:
        options = self.options
        if decibel < options.decibel_thres:
            return False
        snr = decibel - self.noise_db
        noise_score = _log(silence) * options.speech_2_noise_ratio
        speech_score = _log(1.0 - silence)
        if math.exp(speech_score) >= math.exp(noise_score) + self.speech_noise_thres:
            return snr >= options.snr_thres and decibel >= options.decibel_thres
        count = options.noise_frame_num_used_for_snr
        self.noise_db = decibel if self.noise_db < -99.9 else (decibel + self.noise_db * (count - 1)) / count
        return False

    def _step(self, speech: bool, frame: int, final: bool) -> None:
        options = self.options
        change = self.window.step(speech and 1.0 > options.fe_prior_thres)
        if change is Change.SILENCE_TO_SILENCE:
            self.silence_run += 1
            if self.state is State.WAITING:
                self._silence_while_waiting(frame, final)
            elif self.state is State.IN_SPEECH:
                self._silence_in_speech(frame, final)
        else:
            self.silence_run = 0
            if change is Change.SILENCE_TO_SPEECH and self.state is State.WAITING:
                start = max(self.buffer_start, frame - self.latency)
                self._start(start)
                self.state = State.IN_SPEECH
                for t in range(start + 1, frame + 1):
                    self._voice(t)
            elif self.state is State.IN_SPEECH:
                if change is Change.SILENCE_TO_SPEECH:
                    for t in range(self.last_speech + 1, frame):
                        self._voice(t)
                if self._too_long(frame):
                    self._end(frame)
                elif not final:
                    self._voice(frame)
                else:
                    self._end(frame)
        if self.state is State.ENDED and options.detect_mode == MULTIPLE_UTTERANCES:
            self._reset_detection()

    def _silence_while_waiting(self, frame: int, final: bool) -> None:
        options = self.options
        timed_out = (options.detect_mode != MULTIPLE_UTTERANCES
                     and self.silence_run * options.frame_in_ms > options.max_start_silence_time)
        if timed_out or (final and self.ends_detected == 0):
            # no speech at all: an empty decision that ends the utterance
            for t in range(self.last_silence + 1, frame):
                self._silence(t)
            self._start(0, fake=True)
            self._end(0, fake=True)
        elif frame >= self.latency:
            self._silence(frame - self.latency)

    def _silence_in_speech(self, frame: int, final: bool) -> None:
        options, frame_ms = self.options, self.options.frame_in_ms
        lookahead = int(options.lookahead_time_end_point / frame_ms)
        if self.silence_run * frame_ms >= self.end_silence_ms:
            lookback = int(self.end_silence_ms / frame_ms)
            if options.do_extend:
                lookback = max(0, lookback - lookahead - 1)
            self._end(frame - lookback)
        elif self._too_long(frame):
            self._end(frame)
        elif options.do_extend and not final:
            if self.silence_run <= lookahead:  # the segment keeps ``lookahead`` of its trailing silence
                self._voice(frame)
        elif final:
            self._end(frame)

    def _too_long(self, frame: int) -> bool:
        return frame - self.confirmed_start + 1 > self.options.max_single_segment_time / self.options.frame_in_ms

    def _silence(self, frame: int) -> None:
        self.last_silence = frame
        if self.state is State.WAITING:
            self.buffer_start = max(self.buffer_start, frame)

    def _voice(self, frame: int) -> None:
        self.last_speech = frame
        self._extend(frame)

    def _start(self, frame: int, fake: bool = False) -> None:
        if self.confirmed_start == -1:
            self.confirmed_start = frame
        if not fake and self.state is State.WAITING:
            self._extend(self.confirmed_start, starts=True)

    def _end(self, frame: int, fake: bool = False) -> None:
        for t in range(self.last_speech + 1, frame):
            self._voice(t)
        if self.confirmed_end == -1:
            self.confirmed_end = frame
        if not fake:
            self._extend(self.confirmed_end, ends=True)
        self.ends_detected += 1
        self.state = State.ENDED

    def _extend(self, frame: int, starts: bool = False, ends: bool = False) -> None:
        """Add ``frame`` to the current segment (a new one when it starts one)."""
        frame_ms = self.options.frame_in_ms
        # FunASR advances its buffer start by one frame per call, even for a frame behind it
        self.buffer_start = max(self.buffer_start, frame) + 1
        if not self.segments or starts:
            self.segments.append(_Segment(frame * frame_ms, frame * frame_ms))
        segment = self.segments[-1]
        segment.end_ms = (frame + 1) * frame_ms
        segment.has_start |= starts
        segment.has_end |= ends

    def _report(self, is_final: bool, partial: bool) -> list[list[int]]:
        out = []
        for segment in self.segments[self.reported:]:
            if partial:
                if not segment.has_start or (self.start_reported and not segment.has_end):
                    continue
                out.append([-1 if self.start_reported else segment.start_ms,
                            segment.end_ms if segment.has_end else -1])
                self.start_reported = not segment.has_end
                self.reported += int(segment.has_end)
            elif is_final or (segment.has_start and segment.has_end):
                out.append([segment.start_ms, segment.end_ms])
                self.reported += 1
        # reported segments are dropped, but the last one stays: new frames may still extend it
        dropped = min(self.reported, len(self.segments) - 1)
        if dropped > 0:
            del self.segments[:dropped]
            self.reported -= dropped
        return out
