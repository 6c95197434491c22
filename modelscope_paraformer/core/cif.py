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

from .transcript import FRAME_MS


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


def fire_utterance(hidden: np.ndarray, alphas: np.ndarray, threshold: float, tail_threshold: float
                   ) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Offline CIF of a whole utterance. A zero frame of weight ``tail_threshold`` is appended first, to flush a
    last token whose weight fell just short (FunASR's tail_process_fn). Returns the embeddings, the fire frames
    and the weights integrated (tail included, for :func:`timestamps_from_fires`)."""
    if tail_threshold > 0.0:
        hidden = np.concatenate([hidden, np.zeros((1, hidden.shape[1]), np.float32)])
        alphas = np.concatenate([alphas, np.full(1, tail_threshold, np.float32)])
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


def timestamps_from_fires(alphas: np.ndarray, fire_frames: list[int], num_tokens: int,
                          frame_ms: float = FRAME_MS, offset_ms: float = 0.0) -> list[list[int]]:
    """Start/end (ms) per token from CIF fire frames, following FunASR's convention.

    A token spans from its own fire to the next one (the predictor fires as a character starts), shifted
    1.5 frames earlier; spans over 12 frames are cut; the last token ends at the input's end unless a
    long silence follows. When the fires do not number ``tokens + 1`` the weights are renormalised.
    """
    if num_tokens == 0:
        return []
    alphas = np.asarray(alphas, np.float32)
    fires = list(fire_frames)
    if len(fires) != num_tokens + 1:
        scaled = alphas * np.float32((num_tokens + 1) / max(float(alphas.sum()), 1e-8))
        crossed = np.floor(np.cumsum(scaled.astype(np.float64)) / (1.0 - 1e-4))
        previous = np.concatenate([np.zeros(1), crossed[:-1]])
        fires = np.flatnonzero(crossed > previous).tolist()
    places = [frame - 1.5 for frame in fires]
    num_frames = alphas.size
    spans, last_was_cut = [], False
    for index in range(num_tokens):
        start = places[min(index, len(places) - 1)] if places else 0.0
        end = places[index + 1] if index + 1 < len(places) else start
        last_was_cut = end - start > 12
        spans.append([start, start + 12 if last_was_cut else end])
    if not last_was_cut:  # the last token runs to the end, or half-way into a long final silence
        spans[-1][1] = (num_frames + places[-1]) * 0.5 if places and num_frames - places[-1] > 5 else num_frames
    return [[int(round(max(start, 0.0) * frame_ms + offset_ms)), int(round(max(end, 0.0) * frame_ms + offset_ms))]
            for start, end in spans]
