"""CIF predictor (FunASR ``CifPredictorV2``): per-frame weights that integrate-and-fire into token embeddings.

The integrate-and-fire step is written as one matrix product: with cumulative weights ``c_t``, token ``k``
takes ``overlap([c_{t-1}, c_t], [k, k+1])`` of frame ``t``. That equals FunASR's frame loop and its
vectorised ``cif_v1`` without a Python loop over frames, and the streaming variant only carries the
unfired remainder (weight and mean hidden) into the next chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass
class CifState:
    """Unfired remainder carried between streaming chunks: its weight (batch,) and mean hidden (batch, dim)."""

    weight: torch.Tensor
    hidden: torch.Tensor


@dataclass
class CifOutput:
    """Token embeddings (batch, tokens, dim), token counts (batch,), frame weights and fire frames."""

    embeddings: torch.Tensor
    token_counts: torch.Tensor
    alphas: torch.Tensor
    fire_frames: list[list[int]]


def integrate_and_fire(hidden: torch.Tensor, alphas: torch.Tensor, threshold: float = 1.0,
                       max_tokens: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Fire a token each time the running sum of ``alphas`` (batch, time) crosses a multiple of ``threshold``.

    Returns embeddings (batch, max_tokens, dim), the number of fired tokens per row, and for each row the
    frame index at which each token fired. Unfired remainders are left out.
    """
    batch, time, _ = hidden.shape
    # float64 cumulative sum, like FunASR: float32 drifts enough over long inputs to move a fire.
    cumulative = torch.cumsum(alphas / threshold, dim=1, dtype=torch.float64).to(alphas.dtype)
    counts = torch.floor(cumulative[:, -1]).long() if time else alphas.new_zeros(batch, dtype=torch.long)
    tokens = int(counts.max()) if max_tokens is None else max_tokens
    if tokens == 0 or time == 0:
        return hidden.new_zeros(batch, tokens, hidden.size(2)), counts, [[] for _ in range(batch)]
    previous = torch.cat([cumulative.new_zeros(batch, 1), cumulative[:, :-1]], dim=1)
    bounds = torch.arange(tokens, device=hidden.device, dtype=alphas.dtype)[None, :, None]
    weights = (torch.minimum(cumulative[:, None, :], bounds + 1) - torch.maximum(previous[:, None, :], bounds))
    weights = weights.clamp(min=0.0) * threshold
    weights = weights * (bounds < counts[:, None, None].to(alphas.dtype))  # unfired remainder is not a token
    fired = torch.floor(cumulative) > torch.floor(previous)
    fire_frames = [torch.nonzero(row).flatten().tolist() for row in fired]
    return torch.bmm(weights, hidden), counts, fire_frames


class CifPredictor(nn.Module):
    """Conv1d + linear + sigmoid weights per encoder frame, then integrate-and-fire."""

    def __init__(self, idim: int, l_order: int = 1, r_order: int = 1, threshold: float = 1.0,
                 tail_threshold: float = 0.45, smooth_factor: float = 1.0, noise_threshold: float = 0.0,
                 **_unused):
        super().__init__()
        self.padding = (l_order, r_order)
        self.cif_conv1d = nn.Conv1d(idim, idim, l_order + r_order + 1)
        self.cif_output = nn.Linear(idim, 1)
        self.threshold = threshold
        self.tail_threshold = tail_threshold
        self.smooth_factor = smooth_factor
        self.noise_threshold = noise_threshold

    @property
    def dtype(self) -> torch.dtype:
        """The predictor's own dtype (kept float32 when the rest of the model runs in bfloat16)."""
        return self.cif_output.weight.dtype

    def frame_weights(self, hidden: torch.Tensor) -> torch.Tensor:
        """Per-frame firing weights ``alpha`` in [0, 1], shape (batch, time)."""
        context = nn.functional.pad(hidden.transpose(1, 2), self.padding)
        output = torch.relu(self.cif_conv1d(context)).transpose(1, 2)
        alphas = torch.sigmoid(self.cif_output(output)).squeeze(-1)
        return torch.relu(alphas * self.smooth_factor - self.noise_threshold)

    def add_tail(self, hidden: torch.Tensor, alphas: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append one zero frame whose weight ``tail_threshold`` sits right after each row's last frame.

        This flushes a last token whose weight fell just short of the threshold (FunASR's tail_process_fn).
        """
        batch = hidden.size(0)
        hidden = torch.cat([hidden, hidden.new_zeros(batch, 1, hidden.size(2))], dim=1)
        alphas = torch.cat([alphas, alphas.new_zeros(batch, 1)], dim=1)
        alphas[torch.arange(batch), lengths] += self.tail_threshold
        return hidden, alphas

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor,
                target_lengths: Optional[torch.Tensor] = None) -> CifOutput:
        """Offline CIF. With ``target_lengths`` (training) the weights are rescaled to sum to them."""
        dtype = hidden.dtype
        hidden = hidden.to(self.dtype)  # CIF sums hundreds of weights: it runs in the predictor's float32
        valid = torch.arange(hidden.size(1), device=hidden.device)[None, :] < lengths[:, None]
        if target_lengths is None:
            # zero the padding first: the conv would otherwise see it beside a row's last frame, and a batch
            # would decode differently from each utterance alone (FunASR has that quirk; training keeps it
            # so the loss equals FunASR's)
            hidden = hidden * valid[:, :, None]
        alphas = self.frame_weights(hidden) * valid
        if target_lengths is not None:
            # teacher forcing: scale the weights to fire exactly the target count; the unscaled sum
            # is returned as ``token_counts`` for the length (MAE) loss
            scaled = alphas * (target_lengths / alphas.sum(-1).clamp(min=1e-8))[:, None]
            embeddings, _, fires = integrate_and_fire(hidden, scaled, self.threshold, int(target_lengths.max()))
            return CifOutput(embeddings.to(dtype), alphas.sum(-1), scaled, fires)
        if self.tail_threshold > 0.0:
            hidden, alphas = self.add_tail(hidden, alphas, lengths)
        embeddings, counts, fires = integrate_and_fire(hidden, alphas, self.threshold)
        return CifOutput(embeddings.to(dtype), counts, alphas, fires)

    def forward_chunk(self, window: torch.Tensor, state: CifState, is_final: bool, start: int, end: int
                      ) -> tuple[CifOutput, CifState]:
        """Streaming CIF over frames ``start:end`` of an encoded window, carrying the unfired remainder.

        Weights are computed on the whole window first (the conv sees the neighbouring frames), then cut.
        """
        dtype = window.dtype
        window = window.to(self.dtype)  # float32 CIF (see forward); the carried state stays float32 too
        alphas = self.frame_weights(window)[:, start:end]
        hidden = window[:, start:end]
        hidden = torch.cat([state.hidden[:, None, :].to(self.dtype), hidden], dim=1)
        alphas = torch.cat([state.weight[:, None].to(self.dtype), alphas], dim=1)
        if is_final:
            batch = hidden.size(0)
            hidden = torch.cat([hidden, hidden.new_zeros(batch, 1, hidden.size(2))], dim=1)
            alphas = torch.cat([alphas, alphas.new_full((batch, 1), self.tail_threshold)], dim=1)
        embeddings, counts, fires = integrate_and_fire(hidden, alphas, self.threshold)
        total = alphas.sum(-1, dtype=torch.float64)
        remainder = (total - torch.floor(total / self.threshold) * self.threshold).to(alphas.dtype)
        # mean hidden of the unfired part: weighted frames after the last fire, divided by their weight
        cumulative = torch.cumsum(alphas, dim=1, dtype=torch.float64).to(alphas.dtype)
        previous = torch.cat([cumulative.new_zeros(alphas.size(0), 1), cumulative[:, :-1]], dim=1)
        floor_total = torch.floor(cumulative[:, -1:])
        tail_weights = (cumulative - torch.maximum(previous, floor_total)).clamp(min=0.0)
        tail_hidden = torch.bmm(tail_weights[:, None, :], hidden).squeeze(1)
        tail_hidden = torch.where(remainder[:, None] > 0, tail_hidden / remainder.clamp(min=1e-30)[:, None],
                                  tail_hidden)
        fires = [[frame - 1 for frame in row] for row in fires]  # index frames of this chunk, not the carry
        return CifOutput(embeddings.to(dtype), counts, alphas[:, 1:], fires), CifState(remainder, tail_hidden)


def timestamps_from_fires(alphas: torch.Tensor, fire_frames: list[int], num_tokens: int,
                          frame_ms: float = 60.0, offset_ms: float = 0.0) -> list[list[int]]:
    """Start/end (ms) per token from CIF fire frames, following FunASR's convention.

    A token spans from its own fire to the next one (the predictor fires as a character starts), shifted
    1.5 frames earlier; spans over 12 frames are cut; the last token ends at the input's end unless a
    long silence follows. When the fires do not number ``tokens + 1`` the weights are renormalised.
    """
    if num_tokens == 0:
        return []
    fires = list(fire_frames)
    if len(fires) != num_tokens + 1:
        scaled = alphas * ((num_tokens + 1) / alphas.sum().clamp(min=1e-8))
        cumulative = torch.cumsum(scaled.double(), 0)
        crossed = torch.floor(cumulative / (1.0 - 1e-4))
        previous = torch.cat([crossed.new_zeros(1), crossed[:-1]])
        fires = torch.nonzero(crossed > previous).flatten().tolist()
    places = [frame - 1.5 for frame in fires]
    num_frames = alphas.numel()
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
