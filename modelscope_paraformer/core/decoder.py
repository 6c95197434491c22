"""SAN-M decoder (FunASR ``ParaformerSANMDecoder``): FSMN self-memory over tokens plus cross-attention.

Paraformer decodes all tokens at once: the inputs are the CIF acoustic embeddings, not previous tokens.
For streaming, each layer keeps the FSMN's left context over the token sequence and, for cross-attention,
the keys/values of the last ``decoder_chunk_look_back`` chunks of encoder output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .layers import (
    LayerNorm,
    TimeDepthwiseConv,
    attend,
    lengths_to_mask,
    merge_heads,
    split_heads,
)


class DecoderFeedForward(nn.Module):
    """w_2(norm(dropout(relu(w_1(x))))) with no bias on w_2, as in the checkpoints."""

    def __init__(self, size: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w_1 = nn.Linear(size, hidden)
        self.w_2 = nn.Linear(hidden, size, bias=False)
        self.norm = LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.activation = nn.ReLU()  # a module, so that inference packing can fuse it into w_1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.norm(self.dropout(self.activation(self.w_1(x)))))


class TokenFSMN(nn.Module):
    """Depthwise conv memory over the token axis (the decoder's "self-attention")."""

    def __init__(self, size: int, kernel_size: int, shift: int = 0, dropout: float = 0.0):
        super().__init__()
        self.fsmn_block = TimeDepthwiseConv(size, kernel_size)
        left = (kernel_size - 1) // 2 + max(shift, 0)
        self.padding = (left, kernel_size - 1 - left)
        self.kernel_size = kernel_size
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor], cache: Optional[torch.Tensor] = None,
                streaming: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Return memory for (batch, tokens, size) and, when ``streaming``, the padded context to carry on
        (batch, kernel - 1 + tokens, size)."""
        if valid is not None:
            x = x * valid[:, :, None]
        if cache is None:
            padded = nn.functional.pad(x, (0, 0, *self.padding))
        else:  # previous context (minus its oldest frame) followed by the new tokens, as FunASR does
            padded = torch.cat([cache[:, 1:], x], dim=1)[:, -(self.kernel_size + x.size(1) - 1):]
        memory = self.dropout(self.fsmn_block(padded) + x)
        if valid is not None:
            memory = memory * valid[:, :, None]
        return memory, padded if streaming else None


class CrossAttention(nn.Module):
    """Multi-head attention from tokens (queries) to encoder frames (keys/values)."""

    def __init__(self, heads: int, size: int, memory_size: Optional[int] = None, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.size = size
        self.dropout = dropout
        self.linear_q = nn.Linear(size, size)
        self.linear_k_v = nn.Linear(memory_size or size, size * 2)
        self.linear_out = nn.Linear(size, size)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: Optional[torch.Tensor],
                cache: Optional[tuple[torch.Tensor, torch.Tensor]] = None, cache_keep: int = 0
                ) -> tuple[torch.Tensor, Optional[tuple[torch.Tensor, torch.Tensor]]]:
        """``mask`` (batch, 1 or tokens, frames) is True where attention is allowed."""
        query = split_heads(self.linear_q(x), self.heads)
        key, value = (split_heads(t, self.heads) for t in self.linear_k_v(memory).split(self.size, dim=-1))
        new_cache = None
        if cache_keep:
            if cache is not None:
                key, value = torch.cat([cache[0], key], dim=2), torch.cat([cache[1], value], dim=2)
            new_cache = (key[:, :, -cache_keep:], value[:, :, -cache_keep:]) if cache_keep > 0 else (key, value)
        attended = attend(query, key, value, None if mask is None else mask[:, None],
                          self.dropout if self.training else 0.0)
        return self.linear_out(merge_heads(attended)), new_cache

    def weights(self, x: torch.Tensor, memory: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Attention probabilities (batch, heads, tokens, frames); masked frames get 0."""
        query = split_heads(self.linear_q(x), self.heads)
        key = split_heads(self.linear_k_v(memory)[..., :self.size], self.heads)
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None], float("-inf"))
        probabilities = torch.softmax(scores, dim=-1)
        return probabilities if mask is None else probabilities.masked_fill(~mask[:, None], 0.0)


class DecoderLayer(nn.Module):
    """FFN, then FSMN memory (residual from the layer input), then cross-attention; any part may be absent."""

    def __init__(self, size: int, heads: int, linear_units: int, kernel_size: int, shift: int, dropout: float,
                 self_attention_dropout: float, src_attention_dropout: float, has_memory: bool, has_cross: bool):
        super().__init__()
        self.feed_forward = DecoderFeedForward(size, linear_units, dropout)
        self.norm1 = LayerNorm(size)
        self.self_attn = TokenFSMN(size, kernel_size, shift, self_attention_dropout) if has_memory else None
        self.norm2 = LayerNorm(size) if has_memory else None
        self.src_attn = CrossAttention(heads, size, dropout=src_attention_dropout) if has_cross else None
        self.norm3 = LayerNorm(size) if has_cross else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor], memory: Optional[torch.Tensor],
                memory_mask: Optional[torch.Tensor], state: Optional["DecoderLayerState"] = None,
                cross_keep: int = 0) -> torch.Tensor:
        residual = x
        x = self.feed_forward(self.norm1(x))
        if self.self_attn is not None:
            fsmn_out, fsmn_cache = self.self_attn(self.norm2(x), valid, state.fsmn if state else None,
                                                  streaming=state is not None)
            x = residual + self.dropout(fsmn_out)
            if state is not None:
                state.fsmn = fsmn_cache
        if self.src_attn is not None:
            attended, cross_cache = self.src_attn(self.norm3(x), memory, memory_mask,
                                                  state.cross if state else None, cross_keep if state else 0)
            x = x + self.dropout(attended)
            if state is not None and cross_keep:
                state.cross = cross_cache
        return x

    def cross_attention_weights(self, x: torch.Tensor, valid: Optional[torch.Tensor], memory: torch.Tensor,
                                memory_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """This layer's cross-attention probabilities (batch, heads, tokens, frames) for input ``x``."""
        residual = x
        x = self.feed_forward(self.norm1(x))
        if self.self_attn is not None:
            x = residual + self.self_attn(self.norm2(x), valid)[0]
        return self.src_attn.weights(self.norm3(x), memory, memory_mask)


@dataclass
class DecoderLayerState:
    """Streaming state of one decoder layer."""

    fsmn: Optional[torch.Tensor] = None
    cross: Optional[tuple[torch.Tensor, torch.Tensor]] = None


@dataclass
class DecoderState:
    """Streaming state of the whole decoder: one entry per layer with memory."""

    layers: list[DecoderLayerState] = field(default_factory=list)


class ParaformerDecoder(nn.Module):
    """``decoders`` (FSMN + cross-attention), ``decoders2`` (FSMN only), ``decoders3`` (FFN only)."""

    def __init__(self, vocab_size: int, encoder_output_size: int, attention_heads: int = 4, linear_units: int = 2048,
                 num_blocks: int = 16, att_layer_num: int = 16, kernel_size: int = 11, sanm_shift: int = 0,
                 dropout_rate: float = 0.1, self_attention_dropout_rate: float = 0.1,
                 src_attention_dropout_rate: float = 0.1, embedding: bool = True, output_layer: bool = True):
        super().__init__()
        size = encoder_output_size
        common = (size, attention_heads, linear_units, kernel_size)
        dropouts = (dropout_rate, self_attention_dropout_rate, src_attention_dropout_rate)
        # used by the glancing sampler in training and SeACo's hotword encoder; built from a given tensor
        # because nn.Embedding's own init, under load_model's meta device, imports torch._dynamo (~1.5 s per load)
        if embedding:
            weight = torch.empty(vocab_size, size)
            if not weight.is_meta:
                nn.init.normal_(weight)
            self.embed = nn.Sequential(nn.Embedding(vocab_size, size, _weight=weight))
        self.decoders = nn.ModuleList([DecoderLayer(*common, sanm_shift, *dropouts, True, True)
                                       for _ in range(att_layer_num)])
        extra = num_blocks - att_layer_num
        self.decoders2 = nn.ModuleList([DecoderLayer(*common, 0, *dropouts, True, False)
                                        for _ in range(extra)]) if extra > 0 else None
        self.decoders3 = nn.ModuleList([DecoderLayer(*common, 0, *dropouts, False, False)])
        self.after_norm = LayerNorm(size)
        # SeACo's seaco decoder has neither embedding nor output layer (its hidden states feed the hotword head)
        self.output_layer = nn.Linear(size, vocab_size) if output_layer else None

    @property
    def memory_layers(self) -> list[DecoderLayer]:
        return [*self.decoders, *(self.decoders2 or [])]

    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor, token_embeddings: torch.Tensor,
                token_lengths: torch.Tensor, cross_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits (batch, tokens, vocab) for all tokens at once.

        ``cross_mask`` (batch, tokens, frames), optional, restricts which frames each token may see
        (chunk-aware training of the streaming model).
        """
        return self.output_layer(self.hidden(memory, memory_lengths, token_embeddings, token_lengths, cross_mask))

    def hidden(self, memory: torch.Tensor, memory_lengths: torch.Tensor, token_embeddings: torch.Tensor,
               token_lengths: torch.Tensor, cross_mask: Optional[torch.Tensor] = None,
               layers: Optional[int] = None) -> torch.Tensor:
        """The normalised hidden states (batch, tokens, size) before the output layer (see :meth:`forward`);
        ``layers``: run only the first ``layers`` layers and skip the final norm."""
        valid, memory_mask = self._masks(memory, memory_lengths, token_embeddings, token_lengths, cross_mask)
        x = token_embeddings
        stack = [*self.memory_layers, *self.decoders3]
        for layer in stack if layers is None else stack[:layers]:
            x = layer(x, valid, memory, memory_mask)
        return self.after_norm(x) if layers is None else x

    def cross_attention_weights(self, memory: torch.Tensor, memory_lengths: torch.Tensor,
                                token_embeddings: torch.Tensor, token_lengths: torch.Tensor, layer: int
                                ) -> torch.Tensor:
        """Attention probabilities (batch, heads, tokens, frames) of layer ``layer``'s cross-attention, after the
        layers before it (SeACo's hotword filter scores hotwords with them)."""
        valid, memory_mask = self._masks(memory, memory_lengths, token_embeddings, token_lengths, None)
        x = self.hidden(memory, memory_lengths, token_embeddings, token_lengths, layers=layer)
        return self.decoders[layer].cross_attention_weights(x, valid, memory, memory_mask)

    @staticmethod
    def _masks(memory: torch.Tensor, memory_lengths: torch.Tensor, token_embeddings: torch.Tensor,
               token_lengths: torch.Tensor, cross_mask: Optional[torch.Tensor]
               ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        valid: Optional[torch.Tensor] = lengths_to_mask(token_lengths, token_embeddings.size(1))
        memory_mask: Optional[torch.Tensor] = lengths_to_mask(memory_lengths, memory.size(1))[:, None, :]
        if cross_mask is not None:
            memory_mask = memory_mask & cross_mask
        elif bool(memory_mask.all()):  # e.g. one utterance: no masking work, and the unmasked attention kernel
            memory_mask = None
        if bool(valid.all()):
            valid = None
        return valid, memory_mask

    def forward_chunk(self, memory: torch.Tensor, token_embeddings: torch.Tensor, state: DecoderState,
                      look_back_frames: int) -> torch.Tensor:
        """Logits for the tokens fired in one streaming chunk; ``state`` is updated in place."""
        if not state.layers:
            state.layers = [DecoderLayerState() for _ in self.memory_layers]
        x = token_embeddings
        for layer, layer_state in zip(self.memory_layers, state.layers):
            x = layer(x, None, memory, None, layer_state, look_back_frames)
        for layer in self.decoders3:
            x = layer(x, None, None, None)
        return self.output_layer(self.after_norm(x))
