"""Continuous integrate-and-fire (CIF) and token timestamps, in numpy: one implementation for every engine.

An engine gives per-frame weights ``alphas`` (the predictor network); this module decides where tokens fire.
With cumulative weights ``c_t``, token ``k`` takes ``overlap([c_{t-1}, c_t], [k, k+1])`` of frame ``t``: one
matrix product instead of FunASR's frame loop, with the same result. Streaming carries the unfired
remainder (its weight and mean hidden vector) into the next window. Sums run in float64 as in FunASR:
float32 drifts enough over long inputs to move a fire.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np



@dataclass
class CifCarry:
    """Unfired remainder of one stream: its weight and mean hidden vector (``None`` until the first window)."""

    weight: np.float32 = np.float32(0.0)
    hidden: Optional[np.ndarray] = field(default=None)


def integrate_and_fire(hidden: np.ndarray, alphas: np.ndarray, threshold: float = 1.0
                       ) -> tuple[np.ndarray, list[int]]:
    """Fire a token each time the running sum of ``alphas`` (frames,) crosses a multiple of ``threshold``.

    Returns the token embeddings (tokens, dim) and the frame at which each token fired; the unfired remainder
    is left out.
    """
    alphas = np.asarray(alphas, np.float32)
    frames = alphas.shape[0]
    if frames == 0:
        return np.zeros((0, hidden.shape[1]), np.float32), []
    cumulative = np.cumsum((alphas / np.float32(threshold)).astype(np.float64)).astype(np.float32)
    tokens = int(np.floor(cumulative[-1]))
    previous = np.concatenate([np.zeros(1, np.float32), cumulative[:-1]])
    fire_frames = np.flatnonzero(np.floor(cumulative) > np.floor(previous)).tolist()
    if tokens == 0:
        return np.zeros((0, hidden.shape[1]), np.float32), []
    bounds = np.arange(tokens, dtype=np.float32)[:, None]
    weights = np.minimum(cumulative[None, :], bounds + 1) - np.maximum(previous[None, :], bounds)
    weights = np.maximum(weights, np.float32(0.0)) * np.float32(threshold)
    return weights @ np.asarray(hidden, np.float32), fire_frames


def integrate_and_fire_running(hidden: np.ndarray, alphas: np.ndarray, threshold: float = 1.0
                               ) -> tuple[np.ndarray, list[int]]:
    """CIF as FunASR's ``CifPredictorV3`` (BiCif, SeACo) runs it: a float32 running sum, less 1 after each fire.

    Its float32 rounding differs from :func:`integrate_and_fire`'s float64 cumulative sum near a threshold, so
    the frame loop is kept to fire where FunASR does. Returns the embeddings and the fire frames.
    """
    alphas = np.asarray(alphas, np.float32)
    frames, one, limit = alphas.shape[0], np.float32(1.0), np.float32(threshold)
    weights = np.zeros((int(np.floor(alphas.astype(np.float64).sum())) + 1, frames), np.float32)
    token, integrate, fires = 0, np.float32(0.0), []
    for frame, alpha in enumerate(alphas):
        completion = one - integrate
        integrate = integrate + alpha
        if integrate >= limit:
            fires.append(frame)
            integrate = integrate - one
            if token < len(weights):
                weights[token, frame] = completion
            token += 1
            if token < len(weights):
                weights[token, frame] = alpha - completion
        elif token < len(weights):
            weights[token, frame] = alpha
    return weights[:len(fires)] @ np.asarray(hidden, np.float32), fires


def fire_utterance(hidden: np.ndarray, alphas: np.ndarray, threshold: float, tail_threshold: float,
                   running: bool = False) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Offline CIF of a whole utterance. A zero frame of weight ``tail_threshold`` is appended first, to flush a
    last token whose weight fell just short (FunASR's tail_process_fn). Returns the embeddings, the fire frames
    and the weights integrated (tail included, for :func:`paraformer_timestamps`). ``running``: fire as
    :func:`integrate_and_fire_running` (CifPredictorV3 models)."""
    if tail_threshold > 0.0:
        hidden = np.concatenate([hidden, np.zeros((1, hidden.shape[1]), np.float32)])
        alphas = np.concatenate([alphas, np.full(1, tail_threshold, np.float32)])
    if running:
        embeddings, fires = integrate_and_fire_running(hidden, alphas, threshold)
        tokens = int(np.floor(alphas.astype(np.float64).sum()))  # as many tokens as the weights sum to
        if len(embeddings) < tokens:
            embeddings = np.concatenate([embeddings, np.zeros((tokens - len(embeddings), hidden.shape[1]),
                                                              np.float32)])
        return embeddings[:tokens], fires, alphas
    embeddings, fires = integrate_and_fire(hidden, alphas, threshold)
    return embeddings, fires, alphas


def fire_window(hidden: np.ndarray, alphas: np.ndarray, carry: CifCarry, is_final: bool, start: int, end: int,
                threshold: float, tail_threshold: float) -> tuple[np.ndarray, list[int], CifCarry]:
    """Streaming CIF over frames ``start:end`` of an encoded window, after the carried remainder.

    The weights come over the whole window (the predictor's conv sees the neighbouring frames) and are cut here.
    The final window also gets the tail frame. Fire frames index the window's frames from ``start``.
    """
    dim = hidden.shape[1]
    carried = carry.hidden if carry.hidden is not None else np.zeros(dim, np.float32)
    hidden = np.concatenate([carried[None, :], hidden[start:end]])
    alphas = np.concatenate([np.array([carry.weight], np.float32), alphas[start:end]])
    if is_final:
        hidden = np.concatenate([hidden, np.zeros((1, dim), np.float32)])
        alphas = np.concatenate([alphas, np.full(1, tail_threshold, np.float32)])
    embeddings, fires = integrate_and_fire(hidden, alphas, threshold)
    total = alphas.astype(np.float64).sum()
    remainder = np.float32(total - np.floor(total / threshold) * threshold)
    # mean hidden of the unfired part: the weighted frames after the last fire, divided by their weight
    cumulative = np.cumsum(alphas.astype(np.float64)).astype(np.float32)
    previous = np.concatenate([np.zeros(1, np.float32), cumulative[:-1]])
    tail_weights = np.maximum(cumulative - np.maximum(previous, np.floor(cumulative[-1])), np.float32(0.0))
    tail_hidden = tail_weights @ hidden
    if remainder > 0:
        tail_hidden = tail_hidden / max(remainder, np.float32(1e-30))
    return embeddings, [frame - 1 for frame in fires], CifCarry(remainder, tail_hidden.astype(np.float32))


# ------------------------------------------------------------------------------------------------ timestamps
PEAK_THRESHOLD = np.float32(1.0 - 1e-4)  # FunASR fires timestamp peaks just below 1
SILENCE_FRAMES = 5  # a gap over this many frames before the first / after the last token is silence
MAX_TOKEN_FRAMES = 12  # longer spans are cut: the rest is silence
FIRE_SHIFT = -1.5  # frames: a token starts this much before its peak


def running_integrate(alphas: np.ndarray, threshold: float = PEAK_THRESHOLD) -> np.ndarray:
    """The float32 running sum after each frame, less ``threshold`` after each crossing (FunASR's
    ``cif_wo_hidden``); a value >= ``threshold`` marks a peak."""
    alphas = np.asarray(alphas, np.float32)
    limit, integrate = np.float32(threshold), np.float32(0.0)
    sums = np.empty_like(alphas)
    for frame, alpha in enumerate(alphas):
        integrate = integrate + alpha
        sums[frame] = integrate
        if integrate >= limit:
            integrate = integrate - limit
    return sums


def cif_peaks(alphas: np.ndarray) -> np.ndarray:
    """Per frame: the fractional part of the cumulative weight, plus 1 where a token fires (FunASR's
    ``cif_wo_hidden_v1``, the CifPredictorV2 output its Paraformer timestamps are computed from)."""
    cumulative = np.cumsum(np.asarray(alphas, np.float32).astype(np.float64)).astype(np.float32)
    whole = np.floor(cumulative)
    fired = np.diff(whole, prepend=np.float32(0.0)) > 0
    return (fired.astype(np.float32) + cumulative) - whole


def token_timestamps(weights: np.ndarray, peaks: np.ndarray, num_tokens: int, upsample_rate: int = 1
                     ) -> list[list[int]]:
    """[start_ms, end_ms] of ``num_tokens`` tokens, as FunASR's ``ts_prediction_lfr6_standard`` gives them.

    Peaks (``peaks >= 1 - 1e-4``), shifted 1.5 frames earlier, are the token boundaries: token ``i`` spans from
    peak ``i`` to peak ``i + 1``, cut to 12 frames (the rest is silence); the last span ends at the input's end,
    or half-way into a final silence of over 5 frames. When the peaks do not number ``num_tokens + 1``, new ones
    come from ``weights`` rescaled to sum to ``num_tokens + 1``. Frames are 60 ms / ``upsample_rate``. Times are
    truncated to whole ms, as FunASR's are, and may be negative (a peak at frame 0 or 1): the caller adds the
    segment's offset and then clips at 0, so a segment's first token may start a little before its cut, as in FunASR.
    """
    if num_tokens == 0:
        return []
    weights, peaks = np.asarray(weights, np.float32), np.asarray(peaks, np.float32)
    places = np.flatnonzero(peaks >= PEAK_THRESHOLD)
    if len(places) != num_tokens + 1:
        total = np.float32(weights.astype(np.float64).sum())
        peaks = running_integrate(weights / (total / np.float32(num_tokens + 1)))
        places = np.flatnonzero(peaks >= PEAK_THRESHOLD)
    if len(places) == 0:
        return []
    rate = 10.0 * 6 / 1000 / upsample_rate  # seconds per frame, computed as FunASR does (it truncates ms)
    boundaries = [float(place) + FIRE_SHIFT for place in places]
    frames = len(peaks)
    spans: list[list] = []  # [start_s, end_s, is_token]; silences matter: the last span's end is moved below
    for index in range(min(len(boundaries) - 1, num_tokens)):
        start, end = boundaries[index], boundaries[index + 1]
        if end - start <= MAX_TOKEN_FRAMES:
            spans.append([start * rate, end * rate, True])
        else:
            cut = start + MAX_TOKEN_FRAMES
            spans += [[start * rate, cut * rate, True], [cut * rate, end * rate, False]]
    if spans:
        if frames - boundaries[-1] > SILENCE_FRAMES:
            spans[-1][1] = (frames + boundaries[-1]) * 0.5 * rate
        else:
            spans[-1][1] = frames * rate
    return [[int(start * 1000), int(end * 1000)] for start, end, is_token in spans if is_token]


def paraformer_timestamps(alphas: np.ndarray, num_tokens: int) -> list[list[int]]:
    """Timestamps of a Paraformer (CifPredictorV2) utterance from its CIF weights (tail frame included).

    FunASR hands ``ts_prediction_lfr6_standard`` the CIF peaks as weights and the CIF weights as peaks; as a
    weight never reaches 1 - 1e-4, the boundaries come from the peaks rescaled to ``num_tokens + 1``. Kept as
    it is: those are the timestamps FunASR's Paraformer gives.
    """
    return token_timestamps(cif_peaks(alphas), alphas, num_tokens)


def upsampled_timestamps(weights: np.ndarray, cif_tokens: int, num_tokens: int, upsample_rate: int
                         ) -> list[list[int]]:
    """Timestamps of a BiCif / SeACo utterance from its upsampled timestamp weights (``upsample_rate`` per
    frame): they are rescaled to sum to ``cif_tokens`` (the tokens CIF fired), their peaks are the boundaries."""
    weights = np.asarray(weights, np.float32)
    total = np.float32(weights.astype(np.float64).sum())
    scaled = weights * (np.float32(cif_tokens) / total) if total > 0 else weights
    return token_timestamps(scaled, running_integrate(scaled), num_tokens, upsample_rate)
