"""Export a Paraformer (offline or streaming) to ONNX graphs that :class:`~.onnx_engine.OnnxEngine` runs.

The output is a self-contained model directory: ``configuration.json``, ``config.yaml``, ``tokens.json``,
``am.mvn``, the graphs and ``onnx_manifest.json`` (no ``model.pt``)::

    python -m modelscope_paraformer.core.engines.onnx_export MODEL_DIR OUT_DIR [--quantize int8]

Graphs (float32 I/O, dynamic batch and time axes):

- offline: ``encoder.onnx`` (features, lengths) -> (hidden, alphas);
  ``decoder.onnx`` (memory, memory_lengths, embeddings, token_lengths) -> token_ids (argmax inside).
- online: ``encoder_chunk.onnx`` (features, start, cache) -> (hidden, alphas, new_kv): embedding (sqrt(D) scale,
  sinusoidal positions ``start + row + 1``, rows before frame 0 zeroed) inside, encoder self-attention over the
  look-back cache plus the window, FSMN within the window; ``decoder_chunk.onnx`` (memory, embeddings,
  fsmn_cache, cross_cache) -> (token_ids, fsmn_out, cross_kv). The caches are kept by the engine, batch-first
  with all layers along axis 1 (cache (B, L*2*H, Tc, dk); new_kv is cache + window, (B, L*2*H, Tc+T, dk); see
  the manifest's "assumes").

Besides standard ONNX the graphs use one onnxruntime contrib op, com.microsoft.MultiHeadAttention (CPU kernel).

Exporter: the legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``). The wrappers below have no
data-dependent control flow, so tracing is exact; it exports full-depth Paraformer-large in seconds and honours
``dynamic_axes`` directly. The dynamo exporter (torch >= 2.9's default) needs ``dynamic_shapes`` for every input,
is several times slower on a 50-layer stack and, per FunASR's experience, its ``dynamic_axes`` path fails.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..checkpoint import load_model
from ..config import read_yaml
from ..errors import ParaformerError
from ..frontend import cmvn_text
from ..model import Paraformer
from ..model_dir import CONFIGURATION_TEMPLATE, find_model_files

logger = logging.getLogger(__name__)

MANIFEST = "onnx_manifest.json"
FORMAT = "modelscope-paraformer-onnx"
VERSION = 1
OFFLINE_GRAPHS = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
STREAMING_GRAPHS = {"encoder_chunk": "encoder_chunk.onnx", "decoder_chunk": "decoder_chunk.onnx"}
QUANTIZE_MODES = (None, "int8")
# chosen by measurement (benchmarks/onnx_options.py, 2 threads, Paraformer-large shapes): see _quantize
INT8_METHOD = "dynamic"


class ExportError(ParaformerError, ValueError):
    """The model cannot be exported to the graphs the ONNX engine runs."""


# ---------------------------------------------------------------------------------------------------- helpers
# The graphs are written for onnxruntime's CPU kernels (measured on 2 cores, Paraformer-large, 600 ms chunks;
# benchmarks/onnx_graphs.py): most of a streaming call's time beyond the weight-bound MatMuls was dispatch of
# ~2700 small ops (head reshapes/transposes, per-layer cache Gather/Concat/Unsqueeze, bias Adds that do not fuse
# into Gemm on 3-D inputs, FSMN layout changes). So: activations are 2-D (B*T, D), where MatMul+Add fuse into
# Gemm (and Gemm+Relu into FusedGemm; in int8 the bias joins DynamicQuantizeMatMul); attention is one
# com.microsoft.MultiHeadAttention (heads, scale, softmax, cache concatenation inside); the FSMN is one depthwise
# Conv2d with the "+ x" folded into its centre tap (and, streaming, linear_out's bias into its bias); the caches
# are laid out (B, layers*2*H, T, dk) so that one Split with constant sizes cuts them per layer and one Concat
# makes the outputs. About 17 ops per encoder layer instead of ~50. (com.microsoft.SkipLayerNormalization was
# tried for residual Add + LayerNorm: on 2-D input it is slower than Add + LayerNormalization, 22 vs 9 us.)
def _optional(g):
    node = g.op("prim::Constant")
    node.setType(torch._C.OptionalType.ofTensor())
    return node


class _MultiHeadAttention(torch.autograd.Function):
    """onnxruntime's com.microsoft.MultiHeadAttention (CPU): query (B,S,D), key/value (B,L,D), optional
    key_padding_mask (B,P+L) int32 (1 valid), optional past key/value (B,H,P,dk) -> out (B,S,D) and, with a past,
    present key/value (B,H,P+L,dk). ``forward`` is the same computation in torch (for tracing and the check)."""

    @staticmethod
    def forward(ctx, query, key, value, mask, past_key, past_value, heads: int):
        batch, steps, size = query.shape
        d_k = size // heads
        q, k, v = (_heads(t, heads, d_k) for t in (query, key, value))
        if past_key is not None:
            k, v = torch.cat([past_key, k], dim=2), torch.cat([past_value, v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d_k))
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, None, :] == 0, -10000.0)
        out = _merge(torch.matmul(torch.softmax(scores, dim=-1), v), size)
        return (out, k, v) if past_key is not None else out

    @staticmethod
    def symbolic(g, query, key, value, mask, past_key, past_value, heads):
        none = _optional(g)
        inputs = [query, key, value, none, mask if mask is not None else none, none]
        if past_key is None:
            out = g.op("com.microsoft::MultiHeadAttention", *inputs, num_heads_i=heads, outputs=1)
            out.setType(query.type())
            return out
        outs = g.op("com.microsoft::MultiHeadAttention", *inputs, past_key, past_value, num_heads_i=heads,
                    outputs=3)
        outs[0].setType(query.type())
        for present, past in zip(outs[1:], (past_key, past_value)):  # (B, H, P+L, dk): the time axis grows
            present.setType(past.type().with_sizes([None, heads, None, None]))
        return outs


def _mha(query, key, value, heads, mask=None, past_key=None, past_value=None):
    return _MultiHeadAttention.apply(query, key, value, mask, past_key, past_value, heads)


def _linear(x: torch.Tensor, linear: nn.Linear, bias: bool = True) -> torch.Tensor:
    """2-D x @ W^T (+ b): MatMul (+ Add), which onnxruntime fuses into Gemm (fp32) or DynamicQuantizeMatMul
    (int8; quantize_dynamic quantises MatMul, not Gemm)."""
    out = torch.matmul(x, linear.weight.t())
    return out + linear.bias if bias and linear.bias is not None else out


def _heads(x: torch.Tensor, heads: int, d_k: int) -> torch.Tensor:
    """(B, T, H*dk) -> (B, H, T, dk) with symbolic B, T."""
    return x.reshape(x.shape[0], x.shape[1], heads, d_k).transpose(1, 2)


def _merge(x: torch.Tensor, size: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], size)


def _taps(conv: nn.Module, identity_tap: Optional[int]) -> torch.Tensor:
    """A depthwise Conv1d weight (D, 1, K) as a Conv2d weight (D, 1, 1, K), plus 1 at ``identity_tap`` (the
    FSMN's "+ x" folded into the convolution)."""
    taps = conv.weight.detach()[:, :, None, :].clone()
    if identity_tap is not None:
        taps[:, :, :, identity_tap] += 1.0
    return taps


def _fsmn(x: torch.Tensor, taps: torch.Tensor, padding: tuple[int, int] = (0, 0),
          bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depthwise conv over time of (B, T, D) with (left, right) zero padding, as a Conv2d over the (B, D, 1, T)
    view: onnxruntime's depthwise Conv2d is several times faster than its Conv1d (measured: 21 vs 57 us at
    15 x 512 rows), the two Transposes included."""
    view = x.transpose(1, 2).unsqueeze(2)
    left, right = padding
    if left != right:  # F.pad exports as a dynamic If/Slice/Pad chain: only when the Conv's own pads cannot do
        view, left = nn.functional.pad(view, (left, right, 0, 0)), 0
    out = nn.functional.conv2d(view, taps, bias, 1, (0, left), 1, taps.shape[0])
    return out.squeeze(2).transpose(1, 2)


class _Positions(nn.Module):
    """FunASR's sinusoidal encoding (as layers.sinusoidal_encoding) of float32 positions (B, T) -> (B, T, D)."""

    def __init__(self, depth: int):
        super().__init__()
        log_increment = math.log(10000.0) / (depth / 2 - 1)
        inv = torch.exp(torch.arange(depth // 2, dtype=torch.float32) * -log_increment)  # as the torch code
        self.register_buffer("inv_timescales", inv, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        scaled = positions[:, :, None] * self.inv_timescales[None, None, :]
        return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)


class _EncoderStack(nn.Module):
    """The SAN-M layers and after_norm on 2-D (B*T, D) activations; see the note above the helpers."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.layers = nn.ModuleList(model.encoder.layers)
        self.after_norm = model.encoder.after_norm
        attn = self.layers[0].self_attn
        self.size, self.heads, self.kernel = attn.size, attn.heads, attn.fsmn_block.kernel_size[0]
        self.padding = attn.padding
        self.taps = [_taps(layer.self_attn.fsmn_block, self.padding[0]) for layer in self.layers]

    def forward(self, x, batch, steps, valid=None, mask=None, pasts=None):
        """x (B*T, F) -> (after_norm(x) as (B, T, D), present keys/values or None); ``valid`` (B*T, 1) float and
        ``mask`` (B, T) int32 for padded batches (offline), ``pasts`` the 2L cache pieces (streaming)."""
        size, heads = self.size, self.heads
        layers = self.layers
        presents = []
        for number, layer in enumerate(layers):
            attn = layer.self_attn
            qkv = _linear(layer.norm1(x), attn.linear_q_k_v).reshape(batch, steps, 3 * size)
            query, key, value = qkv.split(size, dim=-1)
            if valid is not None:  # offline, padded batch: FunASR's masking around the FSMN
                value = value * valid.reshape(batch, steps, 1)
                memory = _fsmn(value, self.taps[number], self.padding).reshape(batch * steps, size) * valid
                out_bias = True
            else:  # the linear_out bias joins the convolution's
                memory = _fsmn(value, self.taps[number], self.padding, attn.linear_out.bias)
                memory = memory.reshape(batch * steps, size)
                out_bias = False
            if pasts is not None:
                attended, present_key, present_value = _mha(query, key, value, heads, None, pasts[2 * number],
                                                            pasts[2 * number + 1])
                presents += [present_key, present_value]
            else:
                attended = _mha(query, key, value, heads, mask)
            residual = x + memory if layer.residual else memory
            x = _linear(attended.reshape(batch * steps, size), attn.linear_out, out_bias) + residual
            ff = layer.feed_forward
            x = x + _linear(torch.relu(_linear(layer.norm2(x), ff.w_1)), ff.w_2)
        normed = self.after_norm(x)
        return normed.reshape(batch, steps, size), presents


class _EncoderGraph(nn.Module):
    """What both encoder graphs hold: the layer stack, the predictor and the input embedding."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.stack = _EncoderStack(model)
        self.predictor = model.predictor
        self.positions = _Positions(model.config.input_size)
        self.scale = float(model.encoder.output_size ** 0.5)

    def embed(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """features * sqrt(D) + the sinusoid of position ``frames + 1`` (absolute LFR frame indices (B,T))."""
        return features * self.scale + self.positions((frames + 1).to(torch.float32))


class OfflineEncoderGraph(_EncoderGraph):
    """features (B,T,F), lengths (B,) -> hidden (B,T,D), alphas (B,T)."""

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        batch, steps, feature_dim = features.shape
        arange = torch.arange(steps, dtype=torch.int64)
        valid = arange[None, :] < lengths[:, None]
        x = self.embed(features, arange[None, :].expand(batch, -1)).reshape(batch * steps, feature_dim)
        fvalid = valid.to(torch.float32)
        hidden, _ = self.stack(x, batch, steps, fvalid.reshape(batch * steps, 1), valid.to(torch.int32))
        alphas = self.predictor.frame_weights(hidden * fvalid[:, :, None]) * fvalid
        return hidden, alphas


class _DecoderStack(nn.Module):
    """Decoder memory layers (FSMN + cross-attention) and decoders3 on 2-D (B*N, D) tokens."""

    def __init__(self, model: Paraformer, streaming: bool):
        super().__init__()
        decoder = model.decoder
        self.decoder = decoder
        self.memory_layers = nn.ModuleList(decoder.memory_layers)
        first = self.memory_layers[0]
        self.size = decoder.after_norm.weight.shape[0]
        self.kernel = first.self_attn.kernel_size
        self.padding = first.self_attn.padding
        # streaming: causal context of K-1 inputs, the "+ h" is the last tap; offline: the left padding's
        self.taps = [_taps(layer.self_attn.fsmn_block, self.kernel - 1 if streaming else self.padding[0])
                     for layer in self.memory_layers]

    def forward(self, x, memory, batch, tokens, frames, valid=None, mask=None, fsmn_caches=None, pasts=None):
        size = self.size
        memory2d = memory.reshape(batch * frames, memory.shape[2])
        fsmn_outs, presents = [], []
        cross = 0
        for number, layer in enumerate(self.memory_layers):
            residual = x
            ff = layer.feed_forward
            h = layer.norm2(_linear(ff.norm(torch.relu(_linear(layer.norm1(x), ff.w_1))), ff.w_2, False))
            if valid is not None:
                h = h * valid
            h3 = h.reshape(batch, tokens, size)
            if fsmn_caches is not None:
                padded = torch.cat([fsmn_caches[number], h3], dim=1)
                fsmn_outs.append(padded)
                out = _fsmn(padded, self.taps[number])
            else:
                out = _fsmn(h3, self.taps[number], self.padding)
            out = out.reshape(batch * tokens, size)
            x = residual + (out * valid if valid is not None else out)
            attn = layer.src_attn
            if attn is None:
                continue
            query = _linear(layer.norm3(x), attn.linear_q).reshape(batch, tokens, size)
            key, value = _linear(memory2d, attn.linear_k_v).reshape(batch, frames, 2 * size).split(size, dim=-1)
            if pasts is not None:
                attended, present_key, present_value = _mha(query, key, value, attn.heads, None, pasts[2 * cross],
                                                            pasts[2 * cross + 1])
                presents += [present_key, present_value]
            else:
                attended = _mha(query, key, value, attn.heads, mask)
            cross += 1
            x = x + _linear(attended.reshape(batch * tokens, size), attn.linear_out)
        for layer in self.decoder.decoders3:
            ff = layer.feed_forward
            x = _linear(ff.norm(torch.relu(_linear(layer.norm1(x), ff.w_1))), ff.w_2, False)
        logits = _linear(self.decoder.after_norm(x), self.decoder.output_layer)
        return torch.argmax(logits.reshape(batch, tokens, -1), dim=-1), fsmn_outs, presents


class OfflineDecoderGraph(nn.Module):
    """memory (B,T,D), memory_lengths (B,), embeddings (B,N,D), token_lengths (B,) -> token_ids (B,N) int64."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.stack = _DecoderStack(model, streaming=False)

    def forward(self, memory, memory_lengths, embeddings, token_lengths):
        batch, tokens, size = embeddings.shape
        frames = memory.shape[1]
        valid = torch.arange(tokens, dtype=torch.int64)[None, :] < token_lengths[:, None]
        memory_valid = torch.arange(frames, dtype=torch.int64)[None, :] < memory_lengths[:, None]
        fvalid = valid.to(torch.float32).reshape(batch * tokens, 1)
        ids, _, _ = self.stack(embeddings.reshape(batch * tokens, size), memory, batch, tokens, frames, fvalid,
                               memory_valid.to(torch.int32))
        return ids


class EncoderChunkGraph(_EncoderGraph):
    """features (B,T,F) raw window, start (B,) int64, cache (B, L*2*H, Tc, dk) -> hidden, alphas,
    new_kv (B, L*2*H, Tc+T, dk) (the cache followed by this window's keys/values, per layer k then v)."""

    def forward(self, features: torch.Tensor, start: torch.Tensor, cache: torch.Tensor):
        batch, steps, feature_dim = features.shape
        absolute = start[:, None] + torch.arange(steps, dtype=torch.int64)[None, :]
        x = self.embed(features, absolute)
        x = x * (absolute >= 0).to(torch.float32)[:, :, None]  # the initial zero overlap
        pasts = cache.split(self.stack.heads, dim=1)
        hidden, presents = self.stack(x.reshape(batch * steps, feature_dim), batch, steps, pasts=pasts)
        alphas = self.predictor.frame_weights(hidden)
        return hidden, alphas, torch.cat(presents, dim=1)


class DecoderChunkGraph(nn.Module):
    """memory (B,Tm,D), embeddings (B,N,D), fsmn_cache (B, Lm*(K-1), D), cross_cache (B, La*2*H, Tc, dk)
    -> token_ids (B,N), fsmn_out (B, Lm*(K-1+N), D), cross_kv (B, La*2*H, Tc+Tm, dk)."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.stack = _DecoderStack(model, streaming=True)

    def forward(self, memory, embeddings, fsmn_cache, cross_cache):
        batch, tokens, size = embeddings.shape
        fsmn_caches = fsmn_cache.split(self.stack.kernel - 1, dim=1)
        pasts = cross_cache.split(self.stack.memory_layers[0].src_attn.heads, dim=1)
        ids, fsmn_outs, presents = self.stack(embeddings.reshape(batch * tokens, size), memory, batch, tokens,
                                              memory.shape[1], fsmn_caches=fsmn_caches, pasts=pasts)
        return ids, torch.cat(fsmn_outs, dim=1), torch.cat(presents, dim=1)


# ---------------------------------------------------------------------------------------------------- export
def _check_exportable(model: Paraformer) -> None:
    if model.config.variant != "paraformer":
        raise ExportError(f"{model.config.raw.get('model')} cannot be exported to ONNX by this package (its "
                          "timestamp head and hotword branch have no graphs here): run it on the torch engine "
                          "(load_model / load_for_inference without engine='onnx')")
    if getattr(model, "inference_only", False):
        raise ExportError("this model was prepared by optimize_for_inference (packed or quantised weights); "
                          "export the model as loaded by load_model")
    if model.dtype != torch.float32:
        raise ExportError(f"export needs a float32 model, got {model.dtype}")
    if model.streaming:
        decoder = model.decoder
        if decoder.decoders2 is not None:
            raise ExportError("streaming export: this decoder has decoders2 layers (num_blocks > att_layer_num), "
                              "whose FSMN is not causal (sanm_shfit 0); the chunked decoder cannot run them")
        for layer in decoder.memory_layers:
            if layer.self_attn is None or layer.src_attn is None:
                raise ExportError("streaming export: every decoder layer needs FSMN and cross-attention")
            if layer.self_attn.padding[1] != 0:
                raise ExportError(f"streaming export: the decoder FSMN must be causal (right padding 0, as "
                                  f"sanm_shfit {layer.self_attn.kernel_size // 2} gives), got padding "
                                  f"{layer.self_attn.padding}; decoder_conf.sanm_shfit is wrong for streaming")


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic_axes: dict, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings / the legacy exporter's deprecation notice
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False,
                          custom_opsets={"com.microsoft": 1})


def _export_graphs(model: Paraformer, out: Path, opset: int) -> dict[str, str]:
    enc, dec = model.config.encoder, model.decoder
    dim, feat = enc.output_size, model.config.input_size
    heads = enc.attention_heads
    d_k = dim // heads
    if model.streaming:
        layers = len(model.encoder.layers)
        t, b, tc = 7, 2, 3
        _export(EncoderChunkGraph(model).eval(),
                (torch.randn(b, t, feat), torch.tensor([-2, 5]), torch.randn(b, layers * 2 * heads, tc, d_k)),
                out / STREAMING_GRAPHS["encoder_chunk"], ["features", "start", "cache"],
                ["hidden", "alphas", "new_kv"],
                {"features": {0: "B", 1: "T"}, "start": {0: "B"}, "cache": {0: "B", 2: "Tc"},
                 "hidden": {0: "B", 1: "T"}, "alphas": {0: "B", 1: "T"}, "new_kv": {0: "B", 2: "TcT"}}, opset)
        lm = len(dec.memory_layers)
        kernel = dec.memory_layers[0].self_attn.kernel_size
        dheads = dec.memory_layers[0].src_attn.heads
        n = 3
        _export(DecoderChunkGraph(model).eval(),
                (torch.randn(b, t, dim), torch.randn(b, n, dim), torch.randn(b, lm * (kernel - 1), dim),
                 torch.randn(b, lm * 2 * dheads, tc, dim // dheads)),
                out / STREAMING_GRAPHS["decoder_chunk"], ["memory", "embeddings", "fsmn_cache", "cross_cache"],
                ["token_ids", "fsmn_out", "cross_kv"],
                {"memory": {0: "B", 1: "Tm"}, "embeddings": {0: "B", 1: "N"}, "fsmn_cache": {0: "B"},
                 "cross_cache": {0: "B", 2: "Tc"}, "token_ids": {0: "B", 1: "N"}, "fsmn_out": {0: "B", 1: "LKN"},
                 "cross_kv": {0: "B", 2: "TcTm"}}, opset)
        return dict(STREAMING_GRAPHS)
    t, b, n = 9, 2, 4
    _export(OfflineEncoderGraph(model).eval(), (torch.randn(b, t, feat), torch.tensor([t, t - 3])),
            out / OFFLINE_GRAPHS["encoder"], ["features", "lengths"], ["hidden", "alphas"],
            {"features": {0: "B", 1: "T"}, "lengths": {0: "B"}, "hidden": {0: "B", 1: "T"},
             "alphas": {0: "B", 1: "T"}}, opset)
    _export(OfflineDecoderGraph(model).eval(),
            (torch.randn(b, t, dim), torch.tensor([t, t - 3]), torch.randn(b, n, dim), torch.tensor([n, n - 1])),
            out / OFFLINE_GRAPHS["decoder"], ["memory", "memory_lengths", "embeddings", "token_lengths"],
            ["token_ids"], {"memory": {0: "B", 1: "T"}, "memory_lengths": {0: "B"},
                            "embeddings": {0: "B", 1: "N"}, "token_lengths": {0: "B"},
                            "token_ids": {0: "B", 1: "N"}}, opset)
    return dict(OFFLINE_GRAPHS)


def _predictor_nodes(path: Path) -> list[str]:
    """Names of the nodes that compute the CIF weights (kept float32: a shifted fire changes tokens)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    # the legacy exporter names nodes by the innermost module: /cif_conv1d/Conv, /cif_output/MatMul
    return [node.name for node in graph.node if "/cif_conv1d/" in node.name or "/cif_output/" in node.name]


def quantize_graph(path: Path, target: Path, method: str = INT8_METHOD) -> str:
    """Quantise one graph's MatMul weights to int8 (the CIF predictor excluded); returns a description.

    ``dynamic``: quantize_dynamic (per-channel uint8 weights, uint8 activations quantised per call). Not int8
    weights: onnxruntime multiplies uint8 activations by int8 weights with a 16-bit intermediate on CPUs without
    VNNI (AVX2), which saturates: on such a CPU (one of this project's machine kinds) a random Paraformer-large's
    tokens agreed 0.20 with float32 (0.85 with ``reduce_range``), 0.94 with uint8 weights.
    ``nbits``: weight-only MatMulNBits (8 bits, block 128, accuracy level 4: int8 compute).
    """
    exclude = _predictor_nodes(path)
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(target), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QUInt8, nodes_to_exclude=exclude,
                         extra_options={"MatMulConstBOnly": True})
        return "onnxruntime quantize_dynamic: MatMul weights per-channel QUInt8, dynamic uint8 activations; " \
               "CIF predictor float32"
    if method == "nbits":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(path))
        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=128, is_symmetric=True, accuracy_level=4,
                                         nodes_to_exclude=exclude, op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
        return "onnxruntime MatMulNBits weight-only 8-bit (block 128, accuracy level 4); CIF predictor float32"
    raise ValueError(f"unknown int8 method {method!r} (dynamic, nbits)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _assumes(model: Paraformer) -> dict:
    enc, config = model.config.encoder, model.config
    dec = model.decoder
    dim, heads = enc.output_size, enc.attention_heads
    kernel = dec.memory_layers[0].self_attn.kernel_size if dec.memory_layers else 0
    dheads = dec.decoders[0].src_attn.heads if len(dec.decoders) else heads
    info = {
        "feature_dim": config.input_size, "encoder_dim": dim, "heads": heads, "d_k": dim // heads,
        "decoder_heads": dheads, "decoder_d_k": dim // dheads, "vocab_size": config.vocab_size,
        "encoder_layers": len(model.encoder.layers), "decoder_memory_layers": len(dec.memory_layers),
        "decoder_cross_layers": len(dec.decoders), "fsmn_kernel": kernel,
        "encoder_fsmn_padding": list(model.encoder.layers[0].self_attn.padding),
        "decoder_fsmn_padding": list(dec.memory_layers[0].self_attn.padding) if dec.memory_layers else None,
        "predictor_padding": list(model.predictor.padding),
        "cif": {"threshold": model.predictor.threshold, "tail_threshold": model.predictor.tail_threshold},
        "positions": "sinusoidal of positions start+1.., timescale log(1e4)/(D/2-1), x = features*sqrt(D) + pe",
    }
    if model.streaming:
        info.update({
            "encoder_cache": "(B, L*2*H, Tc, dk): per encoder layer its keys' H heads, then its values'; Tc may "
                             "be 0",
            "encoder_new_kv": "(B, L*2*H, Tc+T, dk): the cache followed by this window's keys/values (the "
                              "attended ones); the next cache is a time slice of it, the look-ahead rows left out",
            "encoder_start": "(B,) int64 absolute LFR frame of row 0; rows with start+row < 0 are zero",
            "fsmn_cache": "(B, Lm*(K-1), D): per layer the last K-1 decoder FSMN inputs (zeros at the start)",
            "fsmn_out": "(B, Lm*(K-1+N), D): per layer the context then this call's FSMN inputs; next context = "
                        "rows n..n+K-2 of each layer's K-1+N",
            "cross_cache": "(B, La*2*H, Tc, dk) cross-attention keys/values of earlier windows; Tc may be 0",
            "cross_kv": "(B, La*2*H, Tc+Tm, dk) the cross cache followed by this memory's keys/values",
        })
    return info


def export_onnx(model_dir_or_paraformer: Union[str, os.PathLike, Paraformer], out_dir: Union[str, os.PathLike],
                quantize: Optional[str] = None, opset: int = 17, int8_method: str = INT8_METHOD) -> Path:
    """Export the model to ``out_dir`` (see the module docstring); returns the directory.

    A model directory is the normal input (its files are copied); a :class:`Paraformer` works too when it was
    loaded by ``load_model`` (its config, tokens and am.mvn are then written from the model itself).
    The directory is built next to ``out_dir`` and renamed into place: a failed export leaves nothing that
    looks complete. An existing ``out_dir`` is replaced only if it holds an ONNX export (a manifest).
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not (out / MANIFEST).is_file():
        if not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not an ONNX export: refusing to replace it")
    source_files = None
    if isinstance(model_dir_or_paraformer, Paraformer):
        model = model_dir_or_paraformer
    else:
        source_files = find_model_files(model_dir_or_paraformer)
        model = load_model(model_dir_or_paraformer)
    _check_exportable(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        started = time.perf_counter()
        with torch.no_grad():
            graphs = _export_graphs(model.eval(), work, opset)
        logger.info("exported %s in %.1f s", ", ".join(graphs.values()), time.perf_counter() - started)
        description = None
        if quantize == "int8":
            for filename in graphs.values():
                target = work / (filename + ".int8")
                description = quantize_graph(work / filename, target, int8_method)
                os.replace(target, work / filename)
        _write_side_files(model, source_files, work)
        manifest = {
            "format": FORMAT, "version": VERSION, "opset": opset,
            "precision": "int8" if quantize else "fp32", "quantization": description,
            "streaming": bool(model.streaming),
            "source_checkpoint_sha256": _sha256(source_files.weights) if source_files else None,
            "torch_version": torch.__version__, "graphs": graphs, "assumes": _assumes(model),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        for path in work.iterdir():
            os.chmod(path, 0o644)
        os.chmod(work, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / "x")
            os.replace(work, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return out


def _write_side_files(model: Paraformer, files, work: Path) -> None:
    import yaml

    configuration = copy.deepcopy(CONFIGURATION_TEMPLATE)
    if files is not None and isinstance(files.configuration.get("model"), dict):
        mode = (files.configuration["model"].get("model_config") or {}).get("mode")
    else:
        mode = None
    configuration["model"]["model_config"] = {
        "mode": mode or ("paraformer_streaming" if model.streaming else "paraformer")}
    configuration["file_path_metas"].pop("init_param", None)
    configuration["onnx"] = True
    (work / "configuration.json").write_text(json.dumps(configuration, indent=2, ensure_ascii=False),
                                             encoding="utf-8")
    raw = read_yaml(files.config) if files is not None else dict(model.config.raw)
    raw = dict(raw)
    raw.pop("token_list", None)
    (work / "config.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tokens = model.tokenizer.tokens if model.tokenizer else []
    (work / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    if files is not None and files.cmvn is not None:
        shutil.copyfile(files.cmvn, work / "am.mvn")
    else:  # a Paraformer object: write its CMVN in the hub's Kaldi nnet text layout
        cmvn = getattr(model.frontend, "cmvn", None)
        if cmvn is None:
            raise ExportError("this model has no CMVN (am.mvn); export it from its model directory")
        (work / "am.mvn").write_text(cmvn_text(*cmvn), encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    started = time.perf_counter()
    out = export_onnx(args.model_dir, args.out_dir, args.quantize, args.opset)
    print(f"wrote {out} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
