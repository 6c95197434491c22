"""Long audio: cut at pauses found by a small energy VAD, decode the pieces in batches, join the results.

The VAD works on 10 ms frames: log energy, a noise floor that follows the quietest stretches of the
surrounding seconds, "speech" where the energy is ``margin_db`` above the floor, widened by a hangover
so that the short dips inside words are not pauses. As with a VAD front end, every clear pause ends a
segment and the silence inside it is not decoded (models trained on utterances hallucinate less, and
silence costs nothing); a stretch longer than ``max_seconds`` is cut at the quietest frame of its best
shorter pause (long pauses, 0.5 s and over counting as equal, late in the window: few cuts), and where
there is no pause at all at the quietest frame of the window's last seconds. Only one batch of
features exists at a time, so memory does not grow with the input beyond the waveform itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME = 160  # 10 ms
LONG_PAUSE_FRAMES = 50  # a pause this long is a clear phrase boundary; longer ones are no better cuts


@dataclass(frozen=True)
class VadConfig:
    """Energy VAD settings (frames are 10 ms)."""

    margin_db: float = 12.0  # speech: this far above the noise floor
    floor_window_s: float = 6.0  # the floor is the quietest (smoothed) energy within this window
    min_floor_db: float = -70.0  # digital silence must not drag the floor (and threshold) down to nothing
    hangover_frames: int = 15  # speech continues this long after the energy drops (word-internal dips)
    onset_frames: int = 5  # and starts this early (soft onsets)
    min_pause_frames: int = 10  # shorter non-speech runs are not pauses
    split_pause_frames: int = 30  # pauses this long (~0.5 s of silence with the widening) end a segment
    margin_frames: int = 10  # silence kept on each side of a segment


def frame_energy_db(samples: np.ndarray) -> np.ndarray:
    """Log energy (dB re full scale) of consecutive 10 ms frames; a last partial frame is included."""
    whole = len(samples) // FRAME
    frames = samples[: whole * FRAME].reshape(whole, FRAME)  # a view: no copy of long inputs
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / FRAME
    if len(samples) > whole * FRAME:
        tail = samples[whole * FRAME:].astype(np.float64)
        power = np.append(power, np.dot(tail, tail) / FRAME)
    return 10.0 * np.log10(power + 1e-10)


def _running(values: np.ndarray, width: int, reduce) -> np.ndarray:
    """``reduce`` over a centred window of ``width`` frames (edges: the window is clipped)."""
    half = width // 2
    padded = np.pad(values, (half, width - 1 - half), mode="edge")
    return reduce(sliding_window_view(padded, width), axis=1)


def speech_frames(energy: np.ndarray, config: VadConfig = VadConfig()) -> np.ndarray:
    """Boolean speech mask per 10 ms frame."""
    if energy.size == 0:
        return np.zeros(0, bool)
    smooth = _running(energy, 5, np.mean)  # one quiet frame is not the noise floor
    floor = np.maximum(_running(smooth, max(1, int(config.floor_window_s * 100)), np.min), config.min_floor_db)
    loud = energy > floor + config.margin_db
    # widen: a frame is speech if any loud frame lies within [t - hangover, t + onset]
    width = config.hangover_frames + config.onset_frames + 1
    padded = np.pad(loud, (config.hangover_frames, config.onset_frames))
    return sliding_window_view(padded, width).any(axis=1)


@dataclass(frozen=True)
class Pause:
    """A run of non-speech frames [start, end)."""

    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def find_pauses(speech: np.ndarray, min_frames: int) -> list[Pause]:
    """Non-speech runs of at least ``min_frames`` frames."""
    edges = np.flatnonzero(np.diff(np.concatenate([[1], speech.astype(np.int8), [1]])))
    pauses = []
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start >= min_frames:
            pauses.append(Pause(int(start), int(end)))
    return pauses


def _quietest_near_centre(energy: np.ndarray, start: int, end: int) -> int:
    """Frame in [start, end) within 1 dB of the quietest, nearest the centre (all are equally good cuts)."""
    run = energy[start:end]
    quiet = np.flatnonzero(run <= run.min() + 1.0)
    return int(start + quiet[np.argmin(np.abs(quiet - (end - start - 1) / 2))])


def _choose_cut(pauses: list[Pause], energy: np.ndarray, lo: int, hi: int, force_frames: int) -> int:
    """Frame to cut at within (lo, hi]: in the longest pause of the later half, else of the whole, else forced."""
    for first in ((lo + hi) // 2, lo + 1):
        near = [p for p in pauses if p.end > first and p.start <= hi]
        if near:  # the longest pause, all over 0.5 s counting as equal: then the latest (longer segments)
            best = max(near, key=lambda p: (min(p.frames, LONG_PAUSE_FRAMES), p.start))
            return _quietest_near_centre(energy, max(best.start, first), min(best.end, hi + 1))
    search_start = max(lo + 1, hi - force_frames)
    return search_start + int(np.argmin(energy[search_start:hi + 1]))


def speech_regions(pauses: list[Pause], frames: int, split_frames: int, margin: int) -> list[tuple[int, int]]:
    """Frame ranges between pauses of at least ``split_frames``, each keeping ``margin`` frames of silence."""
    regions, start = [], 0
    for pause in pauses:
        if pause.frames < split_frames:
            continue
        if pause.start > start:
            regions.append((start, pause.start))
        start = pause.end
    if start < frames:
        regions.append((start, frames))
    return [(max(0, a - margin), min(frames, b + margin)) for a, b in regions]


def _split_region(pauses: list[Pause], energy: np.ndarray, start: int, end: int, max_frames: int,
                  min_frames: int, force_frames: int) -> list[tuple[int, int]]:
    """Cut a frame range longer than ``max_frames`` at its best pauses (forced where there are none)."""
    bounds = [start]
    while end - bounds[-1] > max_frames:
        lo, hi = bounds[-1] + min_frames, bounds[-1] + max_frames
        bounds.append(_choose_cut(pauses, energy, lo, hi, force_frames))  # a cut frame opens the next piece
    bounds.append(end)
    return list(zip(bounds[:-1], bounds[1:]))


def split_long_audio(samples: np.ndarray, max_seconds: float = 20.0, min_seconds: float = 2.0,
                     force_search_seconds: float = 3.0, config: VadConfig = VadConfig()) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech, each at most ``max_seconds`` long, cut in pauses where possible.

    Like a VAD front end (FunASR's FSMN-VAD), every pause of ``config.split_pause_frames`` or more ends a
    segment and its silence is left out but for ``config.margin_frames`` on each side; longer stretches
    are cut at their best shorter pause. Audio without any detected speech is tiled whole (the model
    decides), so nothing is dropped on a VAD miss.
    """
    total = len(samples)
    if total == 0:
        return []
    energy = frame_energy_db(samples)
    speech = speech_frames(energy, config)
    pauses = find_pauses(speech, config.min_pause_frames)
    if speech.any():
        regions = speech_regions(pauses, len(energy), config.split_pause_frames, config.margin_frames)
    else:
        regions = [(0, len(energy))]
    frames = [piece for start, end in regions
              for piece in _split_region(pauses, energy, start, end, max(1, int(max_seconds * 100)),
                                         int(min_seconds * 100), int(force_search_seconds * 100))]
    return [(start * FRAME, min(total, end * FRAME)) for start, end in frames if start * FRAME < total]


def transcribe_long(model, samples: np.ndarray, key: str = "utt", batch_size: int = 8, max_seconds: float = 20.0,
                    segments: Optional[list[tuple[int, int]]] = None):
    """Recognise a long waveform segment by segment; one :class:`~.model.Transcript` with absolute timestamps.

    Offline models decode length-sorted batches of segments; streaming models stream every segment
    (batched with :class:`~.batch_streaming.BatchedStreamer`, token-identical to one at a time).
    """
    from .model import Transcript

    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    segments = split_long_audio(samples, max_seconds) if segments is None else segments
    logger.debug("%s: %d segments", key, len(segments))
    decode = _decode_streaming if model.streaming else _decode_offline
    pieces = decode(model, samples, segments, max(1, batch_size))
    token_ids = [i for piece in pieces for i in piece.token_ids]
    timestamps = [stamp for piece in pieces for stamp in piece.timestamps]
    text = model.tokenizer.decode(token_ids) if model.tokenizer is not None else ""
    return Transcript(key, text, token_ids, timestamps)


def group_by_length(lengths: Sequence[int], fits: Callable[[list[int]], bool]) -> list[list[int]]:
    """Indices in length order, each appended to the last batch while ``fits(batch + [index])`` holds (the
    candidate batch's last index is its longest), else starting a new batch. Shared by every batching policy."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batches and fits(batches[-1] + [index]):
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def length_batches(lengths: list[int], batch_size: int, max_padding: float = 0.2) -> list[list[int]]:
    """Indices in length order, grouped into batches of at most ``batch_size`` whose padding stays under
    ``max_padding`` of the computed frames (on a CPU, padding costs more than batching saves)."""
    def fits(batch: list[int]) -> bool:
        padded = lengths[batch[-1]] * len(batch)
        return len(batch) <= batch_size and padded - sum(lengths[i] for i in batch) <= max_padding * padded

    return group_by_length(lengths, fits)


def _decode_offline(model, samples: np.ndarray, segments: list[tuple[int, int]], batch_size: int) -> list:
    """Length-sorted batches through ``recognize_features``; results in time order."""
    results: list = [None] * len(segments)
    for batch in length_batches([end - start for start, end in segments], batch_size):
        features, lengths = model.features([samples[segments[i][0]:segments[i][1]] for i in batch])
        offsets = [segments[i][0] * 1000.0 / SAMPLE_RATE for i in batch]
        for i, transcript in zip(batch, model.recognize_features(features, lengths, [f"seg{i}" for i in batch],
                                                                 offsets)):
            results[i] = transcript
    return results


def _decode_streaming(model, samples: np.ndarray, segments: list[tuple[int, int]], batch_size: int) -> list:
    """Each segment as one stream, ``batch_size`` streams at a time; timestamps shifted to absolute."""
    from .batch_streaming import BatchedStreamer

    order = sorted(range(len(segments)), key=lambda i: segments[i][1] - segments[i][0])
    results: list = [None] * len(segments)
    for first in range(0, len(order), batch_size):  # ragged lengths cost nothing here: finished streams leave
        streamer = BatchedStreamer(model)
        batch = order[first:first + batch_size]
        for i in batch:
            streamer.open(i)
            streamer.feed(i, samples[segments[i][0]:segments[i][1]], is_final=True)
        streamer.run_until_idle()
        for i in batch:
            transcript = streamer.close(i)
            offset = int(round(segments[i][0] * 1000 / SAMPLE_RATE))
            transcript.timestamps = [[start + offset, end + offset] for start, end in transcript.timestamps]
            results[i] = transcript
    return results
