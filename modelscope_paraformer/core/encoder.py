"""SAN-M encoder: self-attention with an FSMN memory block, offline and chunked (streaming).

Parameter names follow FunASR's ``SANMEncoder`` / ``SANMEncoderChunkOpt`` so checkpoints load unchanged.
The streaming path (:meth:`SANMEncoder.forward_chunk`) reproduces ``SANMEncoderChunkOpt.forward_chunk``:
each step encodes a window made of the previous step's overlap frames plus the new frames, attends to
cached keys/values of up to ``look_back`` earlier chunks, and applies the FSMN within the window only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .layers import (FeedForward, LayerNorm, TimeDepthwiseConv, attend, lengths_to_mask, merge_heads,
                     sinusoidal_encoding, split_heads)


@dataclass
class LayerCache:
    """Keys/values of earlier chunks for one layer, (batch, heads, time, d_k), plus their validity (batch, time);
    ``valid`` None means every position is real (a single stream: no masks, no extra work)."""

    key: torch.Tensor
    value: torch.Tensor
    valid: Optional[torch.Tensor]


def _cat_valid(first: Optional[torch.Tensor], second: Optional[torch.Tensor], first_length: int,
               second_length: int) -> Optional[torch.Tensor]:
    """Concatenate two validity masks along time; None (all valid) stays None when both are."""
    if first is None and second is None:
        return None
    batch = (first if first is not None else second).size(0)
    device = (first if first is not None else second).device
    if first is None:
        first = torch.ones(batch, first_length, dtype=torch.bool, device=device)
    if second is None:
        second = torch.ones(batch, second_length, dtype=torch.bool, device=device)
    return torch.cat([first, second], dim=1)


class SANMAttention(nn.Module):
    """Multi-head self-attention plus an FSMN (depthwise conv) memory over the values."""

    def __init__(self, heads: int, in_size: int, size: int, kernel_size: int, shift: int = 0, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.size = size
        self.dropout = dropout
        self.linear_q_k_v = nn.Linear(in_size, size * 3)
        self.linear_out = nn.Linear(size, size)
        self.fsmn_block = TimeDepthwiseConv(size, kernel_size)
        left = (kernel_size - 1) // 2 + max(shift, 0)
        self.padding = (left, kernel_size - 1 - left)

    def fsmn(self, value: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
        """FSMN memory: depthwise conv over time plus the values themselves, zero outside ``valid``."""
        if valid is not None:
            value = value * valid[:, :, None]
        memory = self.fsmn_block(value, self.padding) + value
        memory = nn.functional.dropout(memory, self.dropout, self.training)
        return memory * valid[:, :, None] if valid is not None else memory

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor],
                attention_mask: Optional[torch.Tensor] = None,
                cache: Optional[LayerCache] = None, cache_drop_last: int = 0,
                cache_keep: Optional[int] = None) -> tuple[torch.Tensor, Optional[LayerCache]]:
        """Attend over ``x`` (batch, time, in_size); ``valid`` (batch, time) marks real frames.

        With ``cache_keep`` set (streaming), keys/values of ``cache`` are prepended, and the new cache
        keeps this window's keys/values minus the last ``cache_drop_last`` (look-ahead) frames, trimmed to
        the last ``cache_keep`` frames (-1: keep all).
        """
        query, key, value = self.linear_q_k_v(x).split(self.size, dim=-1)
        memory = self.fsmn(value, valid)
        query, key, value = (split_heads(t, self.heads) for t in (query, key, value))
        key_valid = valid
        new_cache = None
        if cache_keep is not None:
            if cache is not None:
                key = torch.cat([cache.key, key], dim=2)
                value = torch.cat([cache.value, value], dim=2)
                key_valid = _cat_valid(cache.valid, valid, cache.key.size(2), x.size(1))
            # the new cache is a view of the attended keys/values: old cache + window, minus the look-ahead
            keep_until = key.size(2) - cache_drop_last
            start = max(0, keep_until - cache_keep) if cache_keep > 0 else 0
            new_cache = LayerCache(key[:, :, start:keep_until], value[:, :, start:keep_until],
                                   None if key_valid is None else key_valid[:, start:keep_until])
        mask = attention_mask
        if mask is None and key_valid is not None:
            mask = key_valid[:, None, None, :]
        attended = attend(query, key, value, mask, self.dropout if self.training else 0.0)
        return self.linear_out(merge_heads(attended)) + memory, new_cache


class EncoderLayer(nn.Module):
    """Pre-norm SAN-M block; the first block maps the feature size to the model size without a residual."""

    def __init__(self, in_size: int, size: int, heads: int, linear_units: int, kernel_size: int,
                 shift: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.self_attn = SANMAttention(heads, in_size, size, kernel_size, shift, attention_dropout)
        self.feed_forward = FeedForward(size, linear_units, dropout)
        self.norm1 = LayerNorm(in_size)
        self.norm2 = LayerNorm(size)
        self.dropout = nn.Dropout(dropout)
        self.residual = in_size == size

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor], **attention_kwargs
                ) -> tuple[torch.Tensor, Optional[LayerCache]]:
        attended, cache = self.self_attn(self.norm1(x), valid, **attention_kwargs)
        x = x + self.dropout(attended) if self.residual else self.dropout(attended)
        return x + self.dropout(self.feed_forward(self.norm2(x))), cache


class SANMEncoder(nn.Module):
    """Stack of SAN-M layers: ``encoders0`` (feature size -> model size) then ``encoders``."""

    def __init__(self, input_size: int, output_size: int = 512, attention_heads: int = 4, linear_units: int = 2048,
                 num_blocks: int = 50, kernel_size: int = 11, sanm_shift: int = 0, dropout_rate: float = 0.1,
                 attention_dropout_rate: float = 0.1):
        super().__init__()
        self.output_size = output_size
        layer_args = (attention_heads, linear_units, kernel_size, sanm_shift, dropout_rate, attention_dropout_rate)
        self.encoders0 = nn.ModuleList([EncoderLayer(input_size, output_size, *layer_args)])
        self.encoders = nn.ModuleList([EncoderLayer(output_size, output_size, *layer_args)
                                       for _ in range(num_blocks - 1)])
        self.after_norm = LayerNorm(output_size)

    @property
    def layers(self) -> list[EncoderLayer]:
        return [*self.encoders0, *self.encoders]

    def embed(self, features: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Scale features by sqrt(d_model) and add positions ``start+1 ...`` (FunASR's ``pe``/``pe_online``)."""
        positions = sinusoidal_encoding(start, features.size(1), features.size(2), torch.float32, features.device)
        return (features.float() * self.output_size ** 0.5 + positions).to(features.dtype)  # one rounding

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-context encoding of (batch, frames, input_size) LFR features."""
        valid = lengths_to_mask(lengths, features.size(1))
        x = self.embed(features)
        all_valid = bool(valid.all())
        mask = None if all_valid else valid[:, None, None, :]
        for layer in self.layers:
            x, _ = layer(x, None if all_valid else valid, attention_mask=mask)
        return self.after_norm(x), lengths

    def forward_chunk(self, window: torch.Tensor, valid: Optional[torch.Tensor], caches: list[Optional[LayerCache]],
                      look_ahead: int, look_back_frames: int) -> torch.Tensor:
        """Encode one streaming window of already embedded frames; updates ``caches`` in place.

        ``look_back_frames`` is ``encoder_chunk_look_back * chunk_size[1]`` (0: no cache, -1: unbounded).
        """
        x = window
        use_cache = look_back_frames != 0
        for index, layer in enumerate(self.layers):
            x, new_cache = layer(x, valid, cache=caches[index] if use_cache else None,
                                 cache_drop_last=look_ahead, cache_keep=look_back_frames if use_cache else None)
            if use_cache:
                caches[index] = new_cache
        return self.after_norm(x)
