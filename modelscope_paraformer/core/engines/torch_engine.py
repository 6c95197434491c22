"""The PyTorch engine: the :class:`~..model.Paraformer` network behind the :mod:`..engine` interface.

Offline, a batch is padded once and runs the encoder, the predictor's frame weights and the decoder with
masks only where rows differ in length. Streaming, all ready windows of a step run one encoder pass and the
fired tokens one decoder pass:

1. windows are embedded at their absolute positions and left-padded to one batch with the padding marked
   invalid; each stream's look-back keys/values are left-padded the same way, so a stream's real frames
   always end the row (the FSMN sees zeros where a lone stream sees its zero padding, attention ignores the
   padding, and the look-ahead frames dropped from the new cache are the real last frames of every row);
2. of each row's new cache only its last ``encoder_keep_frames`` valid frames are kept (one gather per layer).
   In the steady state (equal windows and caches) nothing is padded: the step runs mask-free like a single
   stream, the new caches are time slices, and when the same streams step together again their batch caches
   are used as they are;
3. the decoder: tokens are right-padded (the decoder's FSMN is causal over tokens in the streaming models, so
   padding never reaches a real token), each layer's FSMN context is the stream's last ``kernel_size - 1``
   token vectors, and the cross-attention cache is left-padded and compacted like the encoder's. A decoder
   with a non-causal FSMN runs once per stream instead.

In float32 a batch gives the tokens of each stream alone (tested); with dynamic int8 they may differ slightly,
as activation scales are per batch. The fast paths (packed weights, bf16, int8) are conversions of the
network itself (:mod:`..optimize`); this engine runs whatever the network holds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..chunking import ChunkConfig
from ..decoder import DecoderLayerState, DecoderState
from ..encoder import LayerCache
from ..engine import ChunkInput, Encoded
from ..layers import lengths_to_mask
from ..predictor import TimestampCifPredictor
from ..seaco import biased_token_ids

if TYPE_CHECKING:
    from ..model import Paraformer

logger = logging.getLogger(__name__)


@dataclass
class _KV:
    """Per-layer keys/values (1, heads, length, d_k) of one stream; ``length`` is the same in every layer.

    ``shared``: the rows are views of one batch tensor per layer; ``group`` and ``row``: after a uniform step,
    the batch caches they are views of (reused as they are when the same streams step together again) and this
    stream's row in them.
    """

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    group: Optional[list[LayerCache]] = None
    row: int = 0
    shared: bool = False

    @property
    def length(self) -> int:
        return self.keys[0].size(2) if self.keys else 0

    def detach_from_batch(self) -> None:
        """Copy the rows out, so that an idle stream does not pin a whole batch tensor."""
        if self.shared:
            self.keys = [t.clone() for t in self.keys]
            self.values = [t.clone() for t in self.values]
            self.group, self.shared = None, False


@dataclass
class _DecoderCache:
    """One stream's decoder state: FSMN context per memory layer (1, kernel - 1, size) and the cross-attention
    look-back; ``state`` instead when the decoder runs per stream (non-causal FSMN)."""

    fsmn_context: Optional[list[torch.Tensor]] = None
    cross: _KV = field(default_factory=_KV)
    state: Optional[DecoderState] = None
    shared: bool = False  # fsmn_context rows are views of a batch tensor

    def detach_from_batch(self) -> None:
        if self.shared:
            self.fsmn_context = [t.clone() for t in self.fsmn_context]
            self.shared = False
        self.cross.detach_from_batch()


def _left_pad_cat(tensors: Sequence[Optional[torch.Tensor]], length: int, dim: int, like: torch.Tensor
                  ) -> torch.Tensor:
    """Concatenate (1, ...) tensors on the batch axis, left-padding axis ``dim`` to ``length`` with zeros."""
    rows = []
    for tensor in tensors:
        if tensor is None or tensor.size(dim) == 0:
            shape = list(like.shape)
            shape[0], shape[dim] = 1, length
            rows.append(like.new_zeros(shape))
        elif tensor.size(dim) < length:
            pad = [0, 0] * (tensor.dim() - 1 - dim) + [length - tensor.size(dim), 0]
            rows.append(nn.functional.pad(tensor, pad))
        else:
            rows.append(tensor)
    return torch.cat(rows, dim=0)


def _right_aligned_valid(lengths: Sequence[int], width: int, device: torch.device) -> torch.Tensor:
    """(batch, width) mask with each row's last ``lengths[row]`` positions valid."""
    lengths_t = torch.tensor(list(lengths), device=device)
    return torch.arange(width, device=device)[None, :] >= (width - lengths_t)[:, None]


def _keep_last_valid(valid: torch.Tensor, keep: int) -> tuple[torch.Tensor, list[int]]:
    """Gather index (batch, width) taking each row's last ``keep`` (-1: all) valid positions, right-aligned.

    Returns the index and the number kept per row; unused slots point at position 0.
    """
    from_end = valid.flip(1).long().cumsum(1).flip(1)  # 1 on each row's last valid position, 2 before ...
    counts = valid.sum(1)
    kept = counts.clamp(max=keep) if keep > 0 else counts
    width = int(kept.max()) if valid.size(0) else 0
    selected = valid & (from_end <= kept[:, None])
    rows, positions = torch.nonzero(selected, as_tuple=True)
    index = torch.zeros(valid.size(0), width, dtype=torch.long, device=valid.device)
    index[rows, width - from_end[rows, positions]] = positions
    return index, kept.tolist()


def _gather_time(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather (batch, heads, time, d_k) along time with a (batch, width) index."""
    batch, heads, _, d_k = tensor.shape
    return tensor.gather(2, index[:, None, :, None].expand(batch, heads, index.size(1), d_k))


def _split_rows(tensor: torch.Tensor, kept: Sequence[int]) -> list[torch.Tensor]:
    """Rows of a right-aligned (batch, heads, width, d_k) tensor, each cut to its ``kept`` last positions."""
    width = tensor.size(2)
    rows = tensor.split(1, dim=0)
    return [row if count == width else row[:, :, width - count:] for row, count in zip(rows, kept)]


def _padded_layer_cache(cached: Sequence[_KV], number: int, width: int, valid: Optional[torch.Tensor]
                        ) -> LayerCache:
    """Layer ``number`` of the streams' caches as one left-padded batch."""
    like = next(kv.keys[number] for kv in cached if kv.length)
    return LayerCache(_left_pad_cat([kv.keys[number] if kv.length else None for kv in cached], width, 2, like),
                      _left_pad_cat([kv.values[number] if kv.length else None for kv in cached], width, 2, like),
                      valid)


def _stream_caches(keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], kept: Optional[Sequence[int]],
                   group: Optional[list[LayerCache]] = None) -> list[_KV]:
    """Per-stream caches from per-layer batch keys/values (right-aligned; ``kept``: valid frames per row)."""
    batch = keys[0].size(0)
    caches = [_KV(group=group, row=row, shared=True) for row in range(batch)]
    for key, value in zip(keys, values):
        key_rows = key.split(1) if kept is None else _split_rows(key, kept)
        value_rows = value.split(1) if kept is None else _split_rows(value, kept)
        for kv, key_row, value_row in zip(caches, key_rows, value_rows):
            kv.keys.append(key_row)
            kv.values.append(value_row)
    return caches


class TorchEngine:
    """Runs a :class:`~..model.Paraformer` (float32, bf16, int8 or packed: whatever it holds) for the algorithms."""

    def __init__(self, model: "Paraformer"):
        self.model = model
        # right padding 0 = causal FSMN over tokens (sanm_shfit 5 in the streaming models): batchable
        self.batch_decoder = all(layer.self_attn is not None and layer.self_attn.padding[1] == 0
                                 for layer in model.decoder.memory_layers)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, np.float32)).to(self.model.device, self.model.dtype)

    def _frame_weights(self, hidden: torch.Tensor) -> torch.Tensor:
        predictor = self.model.predictor
        return predictor.frame_weights(hidden.to(predictor.dtype))  # CIF weights in the predictor's float32

    @staticmethod
    def _numpy(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().float().cpu().numpy()

    # ----------------------------------------------------------------------------------------- offline
    @torch.inference_mode()
    def encode(self, features: Sequence[np.ndarray]) -> list[Encoded]:
        lengths = torch.tensor([len(f) for f in features], dtype=torch.long, device=self.model.device)
        padded = nn.utils.rnn.pad_sequence([self._tensor(f) for f in features], batch_first=True)
        hidden, _ = self.model.encoder(padded, lengths)
        valid = lengths_to_mask(lengths, hidden.size(1))
        # zero the padding first: the predictor's conv would see it beside a row's last frame, and a batch would
        # decode differently from each utterance alone (FunASR has that quirk)
        zeroed = hidden * valid[:, :, None].to(hidden.dtype)
        alphas = self._frame_weights(zeroed) * valid
        hidden_np, alphas_np = self._numpy(hidden), self._numpy(alphas)
        stamps, up = None, 0
        predictor = self.model.predictor
        if isinstance(predictor, TimestampCifPredictor):  # BiCif / SeACo: the upsampled timestamp weights
            up = predictor.upsample_times
            stamps = predictor.timestamp_weights(zeroed.to(predictor.dtype)) * valid.repeat_interleave(up, dim=1)
            stamps = self._numpy(stamps)
        return [Encoded(hidden_np[row, :length], alphas_np[row, :length], hidden[row, :length],
                        None if stamps is None else stamps[row, :length * up])
                for row, length in enumerate(lengths.tolist())]

    @torch.inference_mode()
    def decode(self, encoded: Sequence[Encoded], embeddings: Sequence[np.ndarray],
               hotwords: Optional[Sequence[Sequence[int]]] = None) -> list[list[int]]:
        device = self.model.device
        memory = nn.utils.rnn.pad_sequence([e.memory for e in encoded], batch_first=True)
        memory_lengths = torch.tensor([e.memory.size(0) for e in encoded], device=device)
        tokens = nn.utils.rnn.pad_sequence([self._tensor(e) for e in embeddings], batch_first=True)
        counts = [len(e) for e in embeddings]
        if hotwords is not None:
            return biased_token_ids(self.model, memory, memory_lengths, tokens, counts, hotwords)
        scores = self.model.decoder(memory, memory_lengths, tokens, torch.tensor(counts, device=device))
        if self.model.config.seaco is not None:  # FunASR's SeACo picks from log-probabilities (ties may differ)
            scores = torch.log_softmax(scores, dim=-1)
        best = scores.argmax(-1)
        return [row[:count] for row, count in zip(best.tolist(), counts)]

    # --------------------------------------------------------------------------------------- streaming
    def _embed_window(self, chunk: ChunkInput) -> torch.Tensor:
        """(1, frames, dim) embedded window; rows before frame 0 (a stream's initial overlap) are zeros."""
        x = self.model.encoder.embed(self._tensor(chunk.features)[None], chunk.start)
        if chunk.start < 0:
            x[:, : min(-chunk.start, x.size(1))] = 0.0
        return x

    @torch.inference_mode()
    def encode_chunks(self, chunks: Sequence[ChunkInput], caches: Sequence[Optional[_KV]], config: ChunkConfig
                      ) -> tuple[list[Encoded], list[_KV]]:
        windows = [self._embed_window(chunk) for chunk in chunks]
        lengths = [w.size(1) for w in windows]
        width = max(lengths)
        x = _left_pad_cat(windows, width, 1, windows[0])
        window_valid = _right_aligned_valid(lengths, width, x.device)
        valid = None if min(lengths) == width else window_valid
        cached = [kv if kv is not None else _KV() for kv in caches]
        keep, look_ahead = config.encoder_keep_frames, config.look_ahead
        cache_lengths = [kv.length for kv in cached]
        cache_width = max(cache_lengths)
        layers = self.model.encoder.layers
        if keep == 0:  # no look-back: nothing cached
            for layer in layers:
                x, _ = layer(x, valid)
            new_caches = [_KV() for _ in chunks]
        elif valid is None and min(cache_lengths) == cache_width:
            x, new_caches = self._encode_uniform(x, cached, config)
        else:
            cache_valid = _right_aligned_valid(cache_lengths, cache_width, x.device)
            # kept in each row's new cache: old cache + window minus its look-ahead, the last `keep` valid frames
            index, kept = _keep_last_valid(torch.cat([cache_valid, window_valid[:, : width - look_ahead]], 1), keep)
            keys, values = [], []
            for number, layer in enumerate(layers):
                cache = _padded_layer_cache(cached, number, cache_width, cache_valid) if cache_width else None
                x, full = layer(x, valid, cache=cache, cache_drop_last=look_ahead, cache_keep=-1)
                keys.append(_gather_time(full.key, index))
                values.append(_gather_time(full.value, index))
            new_caches = _stream_caches(keys, values, kept)
        encoded = self.model.encoder.after_norm(x)
        return self._encoded_windows(encoded, lengths), new_caches

    def _encode_uniform(self, x: torch.Tensor, cached: list[_KV], config: ChunkConfig
                        ) -> tuple[torch.Tensor, list[_KV]]:
        """The steady state, every row with the same window and cache length: no padding, hence no masks, and
        each layer's new cache is a time slice of the batch, as for a single stream. When the same streams
        stepped together last time, their batch caches are used as they are instead of re-concatenated."""
        group = cached[0].group
        reuse = (group is not None and len(cached) == group[0].key.size(0)
                 and all(kv.group is group and kv.row == row for row, kv in enumerate(cached)))
        new_group = []
        for number, layer in enumerate(self.model.encoder.layers):
            cache = None
            if reuse:
                cache = group[number]
            elif cached[0].length:
                cache = LayerCache(torch.cat([kv.keys[number] for kv in cached]),
                                   torch.cat([kv.values[number] for kv in cached]), None)
            x, new_cache = layer(x, None, cache=cache, cache_drop_last=config.look_ahead,
                                 cache_keep=config.encoder_keep_frames)
            new_group.append(new_cache)
        caches = _stream_caches([c.key for c in new_group], [c.value for c in new_group], None, new_group)
        return x, caches

    def _encoded_windows(self, encoded: torch.Tensor, lengths: list[int]) -> list[Encoded]:
        """Each row's own frames (right-aligned), with the predictor's weights over that window alone."""
        width = encoded.size(1)
        if min(lengths) == width:
            alphas = self._numpy(self._frame_weights(encoded))
            hidden = self._numpy(encoded)
            return [Encoded(hidden[row], alphas[row], encoded[row:row + 1]) for row in range(len(lengths))]
        outputs = []
        for row, length in enumerate(lengths):
            window = encoded[row:row + 1, width - length:]
            outputs.append(Encoded(self._numpy(window[0]), self._numpy(self._frame_weights(window)[0]), window))
        return outputs

    @torch.inference_mode()
    def decode_chunks(self, encoded: Sequence[Encoded], embeddings: Sequence[np.ndarray],
                      caches: Sequence[Optional[_DecoderCache]], config: ChunkConfig
                      ) -> tuple[list[list[int]], list[_DecoderCache]]:
        caches = [cache if cache is not None else _DecoderCache() for cache in caches]
        keep = config.decoder_keep_frames
        if self.batch_decoder:
            return self._decode_batched(encoded, embeddings, caches, keep), caches
        ids = []
        for output, tokens, cache in zip(encoded, embeddings, caches):
            cache.state = cache.state or DecoderState()
            logits = self.model.decoder.forward_chunk(output.memory, self._tensor(tokens)[None], cache.state, keep)
            ids.append(logits[0].argmax(-1).tolist())
        return ids, caches

    def _decode_batched(self, encoded: Sequence[Encoded], embeddings: Sequence[np.ndarray],
                        caches: list[_DecoderCache], keep: int) -> list[list[int]]:
        """One decoder pass for all streams; updates ``caches`` in place and returns the best ids per stream."""
        decoder = self.model.decoder
        memory_lengths = [e.memory.size(1) for e in encoded]
        memory = _left_pad_cat([e.memory for e in encoded], max(memory_lengths), 1, encoded[0].memory)
        device = memory.device
        counts = [len(e) for e in embeddings]
        tokens = nn.utils.rnn.pad_sequence([self._tensor(e) for e in embeddings], batch_first=True)
        memory_valid = _right_aligned_valid(memory_lengths, memory.size(1), device)
        cached = [cache.cross for cache in caches]
        cache_lengths = [kv.length for kv in cached] if keep else [0] * len(caches)
        cache_width = max(cache_lengths)
        key_valid = torch.cat([_right_aligned_valid(cache_lengths, cache_width, device), memory_valid], dim=1)
        mask = None if bool(key_valid.all()) else key_valid[:, None, :]
        index, kept = _keep_last_valid(key_valid, keep) if keep else (None, [])
        kernel = decoder.memory_layers[0].self_attn.kernel_size
        # the next FSMN context of each stream: its last kernel - 1 token vectors (zeros before the first token)
        token_index = torch.tensor(counts, device=device)[:, None] + torch.arange(kernel - 1, device=device)
        contexts, cross_keys, cross_values = [], [], []
        x = tokens
        for number, layer in enumerate(decoder.memory_layers):
            context = torch.cat([c.fsmn_context[number] if c.fsmn_context is not None
                                 else tokens.new_zeros(1, kernel - 1, tokens.size(2)) for c in caches], dim=0)
            # TokenFSMN drops the oldest cached frame first: prepend one that is dropped
            state = DecoderLayerState(fsmn=nn.functional.pad(context, (0, 0, 1, 0)))
            if keep and cache_width:
                padded = _padded_layer_cache(cached, number, cache_width, None)
                state.cross = (padded.key, padded.value)
            x = layer(x, None, memory, mask, state, -1 if keep else 0)
            padded_tokens = state.fsmn  # (batch, kernel - 1 + tokens, size): context then the new token vectors
            contexts.append(padded_tokens.gather(1, token_index[:, :, None].expand(-1, -1, padded_tokens.size(2))))
            if keep:
                cross_keys.append(_gather_time(state.cross[0], index))
                cross_values.append(_gather_time(state.cross[1], index))
        for layer in decoder.decoders3:
            x = layer(x, None, None, None)
        best = decoder.output_layer(decoder.after_norm(x)).argmax(-1)
        rows = [list(context.split(1)) for context in contexts]
        new_cross = _stream_caches(cross_keys, cross_values, kept) if keep else [_KV() for _ in caches]
        for row, (cache, cross) in enumerate(zip(caches, new_cross)):
            cache.fsmn_context = [layer_rows[row] for layer_rows in rows]
            cache.cross, cache.shared = cross, True
        return [row[:count] for row, count in zip(best.tolist(), counts)]

    def release(self, caches: Sequence[object]) -> None:
        for cache in caches:
            cache.detach_from_batch()
