"""Building blocks shared by the SAN-M encoder and decoder."""
from __future__ import annotations

import math

import torch
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm with FunASR's eps (1e-12): checkpoints were trained with it."""

    def __init__(self, size: int):
        super().__init__(size, eps=1e-12)


class FeedForward(nn.Module):
    """Position-wise feed-forward: w_2(dropout(relu(w_1(x))))."""

    def __init__(self, size: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w_1 = nn.Linear(size, hidden)
        self.w_2 = nn.Linear(hidden, size)
        self.dropout = nn.Dropout(dropout)
        self.activation = nn.ReLU()  # a module, so that inference packing can fuse it into w_1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


def sinusoidal_encoding(start: int, length: int, depth: int, dtype: torch.dtype = torch.float32,
                        device: torch.device | None = None) -> torch.Tensor:
    """FunASR's sinusoidal position encoding for positions ``start+1 .. start+length``, shape (length, depth).

    Positions start at 1 and the timescale divides by ``depth/2 - 1`` (not ``depth/2``): both match
    the checkpoints' training code, so they are kept.
    """
    # always float32: in bfloat16 the positions themselves (up to thousands) would lose their low digits
    positions = torch.arange(start + 1, start + length + 1, device=device, dtype=torch.float32)
    log_increment = math.log(10000.0) / (depth / 2 - 1)
    inv_timescales = torch.exp(torch.arange(depth // 2, device=device, dtype=torch.float32) * -log_increment)
    scaled = positions[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1).to(dtype)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           mask: torch.Tensor | None, dropout: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention over (batch, heads, time, d_k); ``mask`` is True where allowed.

    Rows with no allowed key give zeros (FunASR's masked_fill after softmax), not NaN.
    """
    # torch's fused kernel (one op instead of five); it also returns zeros for rows with no allowed key
    # on the CPU, but not on every device, so those rows are zeroed explicitly
    attended = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)
    if mask is not None and query.device.type != "cpu":
        attended = attended.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    return attended


def depthwise_conv_time(x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Depthwise convolution over time of a time-major (batch, time, channels) tensor with a Conv1d ``weight``
    (channels, 1, kernel), zero-padded by ``padding`` (left, right) frames; returns (batch, time', channels).

    Runs as a conv2d over the (batch, channels, 1, time) view, which oneDNN reads as channels-last: conv1d needs
    channels-first and pays two layout copies around a tiny kernel. Same numbers, 1.4-3x faster on the CPU.
    """
    left, right = padding
    if left != right:
        x = nn.functional.pad(x, (0, 0, left, right))
        left = 0
    out = nn.functional.conv2d(x.transpose(1, 2).unsqueeze(2), weight.unsqueeze(2), None, 1, (0, left), 1,
                               weight.size(0))
    return out.squeeze(2).transpose(1, 2)


class TimeDepthwiseConv(nn.Conv1d):
    """FunASR's ``fsmn_block``: a depthwise ``nn.Conv1d`` without bias (same parameters, so checkpoints load),
    called on time-major (batch, time, channels) input with a (left, right) zero ``padding``."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, x: torch.Tensor, padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
        return depthwise_conv_time(x, self.weight, padding)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, time, heads*d_k) -> (batch, heads, time, d_k)."""
    batch, time, size = x.shape
    return x.view(batch, time, heads, size // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, time, d_k) -> (batch, time, heads*d_k)."""
    batch, heads, time, d_k = x.shape
    return x.transpose(1, 2).reshape(batch, time, heads * d_k)


def lengths_to_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_length) bool mask, True on valid positions."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]
