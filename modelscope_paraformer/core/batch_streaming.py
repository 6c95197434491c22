"""Batched streaming: many independent streams, one encoder (and one decoder) forward per step.

Each stream keeps the state a :class:`~.streaming.StreamingDecoder` keeps (it *is* one, used as a state
holder: audio buffer, incremental frontend, overlap frames, CIF remainder, tokens, timestamps). A step
takes one stride (or the final flush) from every stream that has one and

1. embeds each stream's window (its own positions and overlap), left-pads the windows to one batch and
   marks the padding invalid; each stream's encoder key/value cache is left-padded the same way, so
   a stream's real frames always end the row: the FSMN sees zeros where a lone stream sees its zero
   padding, attention ignores the padding, and the look-ahead frames dropped from the new cache are
   the real last frames of every row;
2. runs the encoder layers once on the batch, then keeps of each row's new cache only its last
   ``look_back`` valid frames (one gather per layer, with an index computed once per step). In the steady
   state (all windows and caches of equal length) nothing is padded: the step runs mask-free like a single
   stream, the new caches are time slices, and when the same streams step again their batch caches are
   used as they are (:meth:`BatchedStreamer._encode_uniform`);
3. runs the CIF per stream (cheap: it carries a per-stream remainder);
4. runs the decoder once for the streams that fired tokens: tokens are right-padded (the decoder's FSMN
   is causal over tokens in the streaming models, so padding never reaches a real token), each layer's
   FSMN context is the last ``kernel_size - 1`` token vectors of the stream, and the cross-attention
   cache is left-padded and compacted like the encoder's. A decoder with a non-causal FSMN falls back
   to one :meth:`ParaformerDecoder.forward_chunk` per stream.

In float32 the tokens equal those of one :class:`StreamingDecoder` per stream (tested); with dynamic
int8 they may differ slightly, as activation scales are per batch. Not thread-safe: one scheduler
thread calls :meth:`feed` and :meth:`step`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Hashable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .decoder import DecoderLayerState
from .encoder import LayerCache
from .model import Transcript
from .streaming import (DEFAULT_CHUNK_SIZE, ChunkSizeError, StreamingDecoder, Window, check_chunk_size,
                        decoder_keep_frames, encoder_keep_frames)

logger = logging.getLogger(__name__)


@dataclass
class _KV:
    """Per-layer keys/values (1, heads, length, d_k) of one stream; ``length`` is the same in every layer."""

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.keys[0].size(2) if self.keys else 0


@dataclass
class _Stream:
    """One stream: a StreamingDecoder as state holder plus the batched encoder/decoder caches."""

    state: StreamingDecoder
    final_pending: bool = False
    encoder_kv: _KV = field(default_factory=_KV)
    cross_kv: _KV = field(default_factory=_KV)
    fsmn_context: Optional[list[torch.Tensor]] = None  # per decoder memory layer: (1, kernel - 1, size)
    shares_batch: bool = False  # caches are views of a batch tensor: copied out when the stream idles
    served: int = 0  # steps served, for fairness when a step is capped
    result: Optional[Transcript] = None  # the last finished utterance


@dataclass
class _Work:
    """What one stream contributes to a step."""

    stream_id: Hashable
    stream: _Stream
    step: Window  # the stream's own window (see StreamingDecoder.take_window)

    @property
    def window(self) -> torch.Tensor:
        return self.step.frames

    @property
    def is_final(self) -> bool:
        return self.step.is_final


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


def _append_rows(kvs: Sequence[_KV], keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    """Append one layer's per-stream keys/values (one row each) to each stream's cache."""
    for kv, key, value in zip(kvs, keys, values):
        kv.keys.append(key)
        kv.values.append(value)


def _split_rows(tensor: torch.Tensor, kept: Sequence[int]) -> list[torch.Tensor]:
    """Rows of a right-aligned (batch, heads, width, d_k) tensor, each cut to its ``kept`` last positions."""
    width = tensor.size(2)
    rows = tensor.split(1, dim=0)
    return [row if count == width else row[:, :, width - count:] for row, count in zip(rows, kept)]


class BatchedStreamer:
    """Schedules many streams on one model: :meth:`feed` audio per stream, call :meth:`step` repeatedly.

    ``max_batch`` caps the streams per step (the least recently served go first).
    """

    def __init__(self, model, chunk_size: Sequence[int] = DEFAULT_CHUNK_SIZE, encoder_chunk_look_back: int = 4,
                 decoder_chunk_look_back: int = 1, max_batch: Optional[int] = None):
        if not model.streaming:
            raise ChunkSizeError("this model has no chunked encoder (it is an offline Paraformer); "
                                 "batched streaming needs an online model")
        self.model = model
        self.chunk_size = check_chunk_size(chunk_size, encoder_chunk_look_back, decoder_chunk_look_back)
        self.encoder_look_back = int(encoder_chunk_look_back)
        self.decoder_look_back = int(decoder_chunk_look_back)
        self.max_batch = max_batch
        self.streams: dict[Hashable, _Stream] = {}
        # the last uniform step's per-stream caches and the batch caches they are views of (see _encode_uniform)
        self._encoder_group: Optional[tuple[list[_KV], list[LayerCache]]] = None
        stride = self.chunk_size[1]
        self.encoder_keep = encoder_keep_frames(self.encoder_look_back, stride)
        self.decoder_keep = decoder_keep_frames(self.decoder_look_back, stride)
        memory_layers = model.decoder.memory_layers
        # right padding 0 = causal FSMN over tokens (sanm_shift 5 in the streaming models): batchable
        self.batch_decoder = all(layer.self_attn is not None and layer.self_attn.padding[1] == 0
                                 for layer in memory_layers)
        if not self.batch_decoder:
            logger.info("decoder FSMN is not causal: the decoder runs once per stream")

    # ----------------------------------------------------------------------------------------- streams
    def open(self, stream_id: Hashable, key: Optional[str] = None) -> None:
        """Start a stream; ``key`` names its transcripts (default: the id)."""
        if stream_id in self.streams:
            raise KeyError(f"stream {stream_id!r} is already open")
        state = StreamingDecoder(self.model, self.chunk_size, self.encoder_look_back, self.decoder_look_back,
                                 key=str(stream_id) if key is None else key)
        self.streams[stream_id] = _Stream(state)

    def feed(self, stream_id: Hashable, samples: np.ndarray, is_final: bool = False) -> None:
        """Queue 16 kHz float32 samples; ``is_final`` ends the utterance (flushed by the next steps)."""
        stream = self._get(stream_id)
        if stream.final_pending:
            raise ValueError(f"stream {stream_id!r}: its final audio is not decoded yet; call step() first")
        samples = np.array(samples, dtype=np.float32).reshape(-1)  # a copy: the caller may reuse its array
        state = stream.state
        state.buffer = np.concatenate([state.buffer, samples]) if state.buffer.size else samples
        stream.final_pending = bool(is_final)

    def close(self, stream_id: Hashable) -> Optional[Transcript]:
        """Forget a stream; returns its last finished Transcript (None if none finished)."""
        self._encoder_group = None  # may hold the stream's caches
        return self.streams.pop(stream_id).result

    def result(self, stream_id: Hashable) -> Optional[Transcript]:
        """The Transcript of the stream's last finished utterance, or None."""
        return self._get(stream_id).result

    def text(self, stream_id: Hashable) -> str:
        """Text of the utterance in progress."""
        return self._get(stream_id).state.text

    def pending(self) -> list[Hashable]:
        """Streams that have a full stride or a final flush waiting."""
        return [sid for sid, stream in self.streams.items() if self._has_work(stream)]

    def _get(self, stream_id: Hashable) -> _Stream:
        try:
            return self.streams[stream_id]
        except KeyError:
            raise KeyError(f"stream {stream_id!r} is not open") from None

    def _has_work(self, stream: _Stream) -> bool:
        return stream.final_pending or len(stream.state.buffer) >= stream.state.stride_samples

    # -------------------------------------------------------------------------------------------- step
    @torch.inference_mode()
    def step(self) -> dict[Hashable, list[int]]:
        """Advance every stream with work by one stride; return the new token ids of each stream served."""
        ready = [(sid, stream) for sid, stream in self.streams.items() if self._has_work(stream)]
        ready.sort(key=lambda item: item[1].served)
        if self.max_batch:
            ready = ready[: self.max_batch]
        results: dict[Hashable, list[int]] = {}
        works, finishing = [], []
        for sid, stream in ready:
            stream.served += 1
            results[sid] = []
            work, last = self._prepare(sid, stream)
            if work is not None:
                works.append(work)
            if last:
                finishing.append(stream)
        if works:
            encoded, lengths = self._encode(works)
            fired = self._predict(works, encoded, lengths)
            if fired:
                self._decode(fired, encoded, lengths, results)
        for stream in finishing:
            self._finish_utterance(stream)
        self._release_idle({sid for sid, _ in ready})
        return results

    def run_until_idle(self) -> dict[Hashable, list[int]]:
        """Step until no stream has work; return all new token ids per stream."""
        collected: dict[Hashable, list[int]] = {}
        while any(self._has_work(stream) for stream in self.streams.values()):
            for sid, ids in self.step().items():
                collected.setdefault(sid, []).extend(ids)
        return collected

    def _prepare(self, sid: Hashable, stream: _Stream) -> tuple[Optional[_Work], bool]:
        """The stream's next window, built exactly as StreamingDecoder builds it; and whether it is final."""
        window, last = stream.state.take_window(stream.final_pending)
        return (_Work(sid, stream, window) if window is not None else None), last

    def _encode(self, works: list[_Work]) -> tuple[torch.Tensor, list[int]]:
        """One encoder pass over the left-padded windows; updates every stream's encoder cache."""
        lengths = [work.window.size(1) for work in works]
        width = max(lengths)
        x = _left_pad_cat([work.window for work in works], width, 1, works[0].window)
        window_valid = _right_aligned_valid(lengths, width, x.device)
        valid = None if min(lengths) == width else window_valid
        layers = self.model.encoder.layers
        keep = self.encoder_keep
        if keep == 0:  # no look-back: nothing cached
            for layer in layers:
                x, _ = layer(x, valid)
            return self.model.encoder.after_norm(x), lengths
        look_ahead = self.chunk_size[2]
        cached = [work.stream.encoder_kv for work in works]
        cache_lengths = [kv.length for kv in cached]
        cache_width = max(cache_lengths)
        if valid is None and min(cache_lengths) == cache_width:
            return self._encode_uniform(works, x, cached), lengths
        cache_valid = _right_aligned_valid(cache_lengths, cache_width, x.device)
        # positions kept in each row's new cache: old cache + window minus its look-ahead, last `keep` valid
        index, kept = _keep_last_valid(torch.cat([cache_valid, window_valid[:, : width - look_ahead]], dim=1), keep)
        new_kv = [_KV() for _ in works]
        for number, layer in enumerate(layers):
            cache = None
            if cache_width:
                like = next(kv.keys[number] for kv in cached if kv.length)
                cache = LayerCache(_left_pad_cat([kv.keys[number] if kv.length else None for kv in cached],
                                                 cache_width, 2, like),
                                   _left_pad_cat([kv.values[number] if kv.length else None for kv in cached],
                                                 cache_width, 2, like),
                                   cache_valid)
            x, full = layer(x, valid, cache=cache, cache_drop_last=look_ahead, cache_keep=-1)
            _append_rows(new_kv, _split_rows(_gather_time(full.key, index), kept),
                         _split_rows(_gather_time(full.value, index), kept))
        self._assign_encoder_caches(works, new_kv)
        return self.model.encoder.after_norm(x), lengths

    def _encode_uniform(self, works: list[_Work], x: torch.Tensor, cached: list[_KV]) -> torch.Tensor:
        """The steady state, every row with the same window and cache length: no padding, hence no masks, and
        each layer's new cache is a time slice of the batch, as for a single stream. When the same streams
        stepped together last time, their batch caches are used as they are instead of re-concatenated."""
        previous = self._encoder_group
        reuse = (previous is not None and len(previous[0]) == len(cached)
                 and all(mine is theirs for mine, theirs in zip(cached, previous[0])))
        new_caches = []
        for number, layer in enumerate(self.model.encoder.layers):
            cache = None
            if reuse:
                cache = previous[1][number]
            elif cached[0].length:
                cache = LayerCache(torch.cat([kv.keys[number] for kv in cached]),
                                   torch.cat([kv.values[number] for kv in cached]), None)
            x, new_cache = layer(x, None, cache=cache, cache_drop_last=self.chunk_size[2],
                                 cache_keep=self.encoder_keep)
            new_caches.append(new_cache)
        new_kv = [_KV() for _ in works]
        for cache in new_caches:
            _append_rows(new_kv, cache.key.split(1), cache.value.split(1))
        self._assign_encoder_caches(works, new_kv)
        self._encoder_group = (new_kv, new_caches)
        return self.model.encoder.after_norm(x)

    @staticmethod
    def _assign_encoder_caches(works: list[_Work], caches: list[_KV]) -> None:
        """Give each stream its new encoder cache (views of this step's batch tensors)."""
        for work, kv in zip(works, caches):
            work.stream.encoder_kv = kv
            work.stream.shares_batch = True

    def _predict(self, works: list[_Work], encoded: torch.Tensor, lengths: list[int]
                 ) -> list[tuple[int, _Work, torch.Tensor, list[int]]]:
        """CIF per stream; returns (row, work, embeddings, fire frames) of the streams that fired tokens."""
        left, stride, _ = self.chunk_size
        width = encoded.size(1)
        fired = []
        for row, (work, length) in enumerate(zip(works, lengths)):
            state = work.stream.state
            window = encoded[row:row + 1, width - length:]
            end = length if work.is_final else left + stride
            cif, state.cif_state = self.model.predictor.forward_chunk(window, state.cif_state, work.is_final,
                                                                       left, end)
            count = int(cif.token_counts[0])
            if count >= 1:
                fired.append((row, work, cif.embeddings[:, :count], cif.fire_frames[0][:count]))
        return fired

    def _decode(self, fired: list[tuple[int, _Work, torch.Tensor, list[int]]], encoded: torch.Tensor,
                lengths: list[int], results: dict[Hashable, list[int]]) -> None:
        """Decoder over the streams that fired, then token and timestamp bookkeeping per stream."""
        if self.batch_decoder:
            best = self._decode_batched(fired, encoded, lengths)
        else:
            width = encoded.size(1)
            best = []
            for row, work, embeddings, _ in fired:
                memory = encoded[row:row + 1, width - lengths[row]:]
                logits = self.model.decoder.forward_chunk(memory, embeddings, work.stream.state.decoder_state,
                                                          self.decoder_keep)
                best.append(logits[0].argmax(-1).tolist())
        for (_, work, _, fires), token_ids in zip(fired, best):
            results[work.stream_id] = self._record(work, token_ids, fires)

    def _decode_batched(self, fired: list[tuple[int, _Work, torch.Tensor, list[int]]], encoded: torch.Tensor,
                        lengths: list[int]) -> list[list[int]]:
        """One decoder pass for all streams that fired; returns the best token ids per stream."""
        decoder = self.model.decoder
        rows = torch.tensor([row for row, *_ in fired], device=encoded.device)
        memory = encoded.index_select(0, rows)
        memory_lengths = [lengths[row] for row, *_ in fired]
        counts = [embeddings.size(1) for _, _, embeddings, _ in fired]
        tokens = nn.utils.rnn.pad_sequence([embeddings[0] for _, _, embeddings, _ in fired], batch_first=True)
        streams = [work.stream for _, work, _, _ in fired]
        memory_valid = _right_aligned_valid(memory_lengths, memory.size(1), memory.device)
        keep = self.decoder_keep
        cached = [stream.cross_kv for stream in streams]
        cache_lengths = [kv.length for kv in cached] if keep else [0] * len(streams)
        cache_width = max(cache_lengths)
        key_valid = torch.cat([_right_aligned_valid(cache_lengths, cache_width, memory.device), memory_valid], dim=1)
        mask = None if bool(key_valid.all()) else key_valid[:, None, :]
        index, kept = _keep_last_valid(key_valid, keep) if keep else (None, [])
        kernel = decoder.memory_layers[0].self_attn.kernel_size
        # FSMN context per stream: the last kernel-1 token vectors (zeros before the first token)
        contexts = [stream.fsmn_context for stream in streams]
        token_index = torch.tensor(counts, device=memory.device)[:, None] + torch.arange(kernel - 1,
                                                                                         device=memory.device)
        new_contexts: list[list[torch.Tensor]] = [[] for _ in streams]
        new_cross = [_KV() for _ in streams]
        x = tokens
        for number, layer in enumerate(decoder.memory_layers):
            context = torch.cat([ctx[number] if ctx is not None else tokens.new_zeros(1, kernel - 1, tokens.size(2))
                                 for ctx in contexts], dim=0)
            # TokenFSMN drops the oldest cached frame first: prepend one that is dropped
            state = DecoderLayerState(fsmn=nn.functional.pad(context, (0, 0, 1, 0)))
            if keep and cache_width:
                like = next(kv.keys[number] for kv in cached if kv.length)
                state.cross = (_left_pad_cat([kv.keys[number] if kv.length else None for kv in cached],
                                             cache_width, 2, like),
                               _left_pad_cat([kv.values[number] if kv.length else None for kv in cached],
                                             cache_width, 2, like))
            x = layer(x, None, memory, mask, state, -1 if keep else 0)
            padded = state.fsmn  # (batch, kernel - 1 + tokens, size): context then the new token vectors
            context = padded.gather(1, token_index[:, :, None].expand(-1, -1, padded.size(2)))
            for ctx_list, row in zip(new_contexts, context.split(1, dim=0)):
                ctx_list.append(row)
            if keep:
                keys, values = state.cross
                _append_rows(new_cross, _split_rows(_gather_time(keys, index), kept),
                             _split_rows(_gather_time(values, index), kept))
        for layer in decoder.decoders3:
            x = layer(x, None, None, None)
        best = decoder.output_layer(decoder.after_norm(x)).argmax(-1)
        for stream, ctx_list, kv in zip(streams, new_contexts, new_cross):
            stream.fsmn_context = ctx_list
            stream.cross_kv = kv
            stream.shares_batch = True
        return [row[:count] for row, count in zip(best.tolist(), counts)]

    def _record(self, work: _Work, token_ids: list[int], fires: list[int]) -> list[int]:
        return work.stream.state.record(token_ids, fires, work.step)

    def _finish_utterance(self, stream: _Stream) -> None:
        """Store the finished Transcript and reset the stream for its next utterance."""
        state = stream.state
        state.finish_utterance()
        stream.result = state.result
        stream.final_pending = False
        stream.encoder_kv, stream.cross_kv, stream.fsmn_context = _KV(), _KV(), None
        stream.shares_batch = False

    def _release_idle(self, served: set) -> None:
        """Copy out the caches of streams not served this step, so they do not pin whole batch tensors."""
        for sid, stream in self.streams.items():
            if sid in served or not stream.shares_batch:
                continue
            for kv in (stream.encoder_kv, stream.cross_kv):
                kv.keys = [t.clone() for t in kv.keys]
                kv.values = [t.clone() for t in kv.values]
            if stream.fsmn_context is not None:
                stream.fsmn_context = [t.clone() for t in stream.fsmn_context]
            stream.shares_batch = False
