"""CIF predictor (FunASR ``CifPredictorV2``): the network that gives each encoder frame its firing weight, and
the differentiable integrate-and-fire that training needs. Inference fires in :mod:`.cif` (numpy, every engine).
:class:`TimestampCifPredictor` (FunASR ``CifPredictorV3``, BiCif and SeACo models) adds a second head that gives
weights at ``upsample_times`` the frame rate, used only for timestamps.

The integrate-and-fire step is written as one matrix product: with cumulative weights ``c_t``, token ``k``
takes ``overlap([c_{t-1}, c_t], [k, k+1])`` of frame ``t``. That equals FunASR's frame loop and its
vectorised ``cif_v1`` without a Python loop over frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


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

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor) -> CifOutput:
        """Training CIF: the weights are rescaled to fire exactly ``target_lengths`` tokens (teacher forcing); the
        unscaled sum is returned as ``token_counts`` for the length (MAE) loss. Inference fires in
        :mod:`..cif` (numpy, one implementation for every engine) on :meth:`frame_weights`."""
        dtype = hidden.dtype
        hidden = hidden.to(self.dtype)  # CIF sums hundreds of weights: it runs in the predictor's float32
        valid = torch.arange(hidden.size(1), device=hidden.device)[None, :] < lengths[:, None]
        # the padding is not zeroed before the conv here (inference zeroes it): FunASR's training does not, and
        # the loss equals FunASR's
        alphas = self.frame_weights(hidden) * valid
        scaled = alphas * (target_lengths / alphas.sum(-1).clamp(min=1e-8))[:, None]
        embeddings, _, fires = integrate_and_fire(hidden, scaled, self.threshold, int(target_lengths.max()))
        return CifOutput(embeddings.to(dtype), alphas.sum(-1), scaled, fires)


class TimestampCifPredictor(CifPredictor):
    """CifPredictorV3: the CIF head above plus an upsampled weight head for timestamps.

    The second head is a transposed conv (``upsample_times`` sub-frames per encoder frame) over the first head's
    conv output (``use_cif1_cnn``) or over the encoder output itself, then linear + sigmoid.
    """

    def __init__(self, idim: int, l_order: int = 1, r_order: int = 1, threshold: float = 1.0,
                 tail_threshold: float = 0.45, smooth_factor: float = 1.0, noise_threshold: float = 0.0,
                 upsample_times: int = 5, smooth_factor2: float = 1.0, noise_threshold2: float = 0.0,
                 use_cif1_cnn: bool = True, **_unused):
        super().__init__(idim, l_order, r_order, threshold, tail_threshold, smooth_factor, noise_threshold)
        self.upsample_times = upsample_times
        self.upsample_cnn = nn.ConvTranspose1d(idim, idim, upsample_times, upsample_times)
        self.cif_output2 = nn.Linear(idim, 1)
        self.smooth_factor2 = smooth_factor2
        self.noise_threshold2 = noise_threshold2
        self.use_cif1_cnn = use_cif1_cnn

    def timestamp_weights(self, hidden: torch.Tensor) -> torch.Tensor:
        """Upsampled weights (batch, time * upsample_times), not yet rescaled to the token count."""
        context = hidden.transpose(1, 2)
        if self.use_cif1_cnn:
            context = torch.relu(self.cif_conv1d(nn.functional.pad(context, self.padding)))
        upsampled = self.upsample_cnn(context).transpose(1, 2)
        alphas = torch.sigmoid(self.cif_output2(upsampled)).squeeze(-1)
        return torch.relu(alphas * self.smooth_factor2 - self.noise_threshold2)
