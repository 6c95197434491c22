"""Energy VAD for long audio: where to cut a recording so that each piece is short and starts at a pause.

The VAD works on 10 ms frames: log energy, a noise floor that follows the quietest stretches of the
surrounding seconds, "speech" where the energy is ``margin_db`` above the floor, widened by a hangover
so that the short dips inside words are not pauses. As with a VAD front end, every clear pause ends a
segment and the silence inside it is not decoded (models trained on utterances hallucinate less, and
silence costs nothing); a stretch longer than ``max_seconds`` is cut at the quietest frame of its best
shorter pause (long pauses, 0.5 s and over counting as equal, late in the window: few cuts), and where
there is no pause at all at the quietest frame of the window's last seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


def frame_energy_db(samples: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """Log energy (dB re full scale) of consecutive frames of ``frame`` samples (10 ms at 16 kHz by default); a
    last partial frame is included."""
    whole = len(samples) // frame
    frames = samples[: whole * frame].reshape(whole, frame)  # a view: no copy of long inputs
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame
    if len(samples) > whole * frame:
        tail = samples[whole * frame:].astype(np.float64)
        power = np.append(power, np.dot(tail, tail) / frame)
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
