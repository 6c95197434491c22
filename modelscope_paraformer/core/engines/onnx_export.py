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
  fsmn_cache, cross_cache) -> (token_ids, fsmn_out, cross_kv). The caches are kept by the engine.

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

try:  # the model-directory helpers moved from checkpoint.py to model_dir.py
    from ..model_dir import CONFIGURATION_TEMPLATE, find_model_files
except ImportError:  # pragma: no cover - older layout
    from ..checkpoint import CONFIGURATION_TEMPLATE, find_model_files
from ..config import read_yaml
from ..model import Paraformer

logger = logging.getLogger(__name__)

MANIFEST = "onnx_manifest.json"
FORMAT = "modelscope-paraformer-onnx"
VERSION = 1
OFFLINE_GRAPHS = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
STREAMING_GRAPHS = {"encoder_chunk": "encoder_chunk.onnx", "decoder_chunk": "decoder_chunk.onnx"}
QUANTIZE_MODES = (None, "int8")
# chosen by measurement (benchmarks/onnx_options.py, 2 threads, Paraformer-large shapes): see _quantize
INT8_METHOD = "dynamic"


class ExportError(ValueError):
    """The model cannot be exported to the graphs the ONNX engine runs."""


# ---------------------------------------------------------------------------------------------------- helpers
def _heads(x: torch.Tensor, heads: int, d_k: int) -> torch.Tensor:
    """(B, T, H*dk) -> (B, H, T, dk) with symbolic B, T."""
    return x.reshape(x.shape[0], x.shape[1], heads, d_k).transpose(1, 2)


def _merge(x: torch.Tensor, size: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], size)


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: Optional[torch.Tensor]
               ) -> torch.Tensor:
    """Plain softmax attention; ``bias`` additive (0 allowed, -inf masked), broadcast over heads/queries."""
    scores = torch.matmul(query * (1.0 / math.sqrt(query.shape[-1])), key.transpose(-1, -2))
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1), value)


def _mask_bias(valid: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> (B, 1, 1, T) float additive bias (0 / -inf)."""
    zero = torch.zeros((), dtype=torch.float32)
    return torch.where(valid, zero, torch.tensor(float("-inf")))[:, None, None, :]


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


def _encoder_layer(layer, x: torch.Tensor, valid: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                   cache_k: Optional[torch.Tensor] = None, cache_v: Optional[torch.Tensor] = None):
    """One SAN-M encoder layer (EncoderLayer + SANMAttention), optionally over a look-back cache; returns the
    output and this window's keys/values (B, H, T, dk)."""
    attn = layer.self_attn
    size, heads = attn.size, attn.heads
    d_k = size // heads
    qkv = attn.linear_q_k_v(layer.norm1(x))
    query, key, value = qkv[..., :size], qkv[..., size:2 * size], qkv[..., 2 * size:]
    memory = attn.fsmn(value, valid)
    query, key, value = (_heads(t, heads, d_k) for t in (query, key, value))
    all_key, all_value = key, value
    if cache_k is not None:
        all_key, all_value = torch.cat([cache_k, key], dim=2), torch.cat([cache_v, value], dim=2)
    attended = _attention(query, all_key, all_value, bias)
    attended = attn.linear_out(_merge(attended, size)) + memory
    x = x + attended if layer.residual else attended
    return x + layer.feed_forward(layer.norm2(x)), key, value


class OfflineEncoderGraph(nn.Module):
    """features (B,T,F), lengths (B,) -> hidden (B,T,D), alphas (B,T)."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.encoder = model.encoder
        self.predictor = model.predictor
        self.positions = _Positions(model.config.input_size)
        self.scale = float(model.encoder.output_size ** 0.5)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        steps = torch.arange(features.shape[1], dtype=torch.int64)
        valid = steps[None, :] < lengths[:, None]
        positions = (steps + 1).to(torch.float32)[None, :].expand(features.shape[0], -1)
        x = features * self.scale + self.positions(positions)
        bias = _mask_bias(valid)
        fvalid = valid.to(torch.float32)
        for layer in self.encoder.layers:
            x, _, _ = _encoder_layer(layer, x, fvalid, bias)
        hidden = self.encoder.after_norm(x)
        alphas = self.predictor.frame_weights(hidden * fvalid[:, :, None]) * fvalid
        return hidden, alphas


def _cross_attend(attn, x: torch.Tensor, memory: torch.Tensor, bias: Optional[torch.Tensor],
                  cache_k: Optional[torch.Tensor] = None, cache_v: Optional[torch.Tensor] = None):
    size, heads = attn.size, attn.heads
    d_k = size // heads
    query = _heads(attn.linear_q(x), heads, d_k)
    kv = attn.linear_k_v(memory)
    key, value = _heads(kv[..., :size], heads, d_k), _heads(kv[..., size:], heads, d_k)
    all_key, all_value = key, value
    if cache_k is not None:
        all_key, all_value = torch.cat([cache_k, key], dim=2), torch.cat([cache_v, value], dim=2)
    return attn.linear_out(_merge(_attention(query, all_key, all_value, bias), size)), key, value


class OfflineDecoderGraph(nn.Module):
    """memory (B,T,D), memory_lengths (B,), embeddings (B,N,D), token_lengths (B,) -> token_ids (B,N) int64."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, memory, memory_lengths, embeddings, token_lengths):
        decoder = self.decoder
        valid = torch.arange(embeddings.shape[1], dtype=torch.int64)[None, :] < token_lengths[:, None]
        memory_valid = torch.arange(memory.shape[1], dtype=torch.int64)[None, :] < memory_lengths[:, None]
        bias = _mask_bias(memory_valid)
        fvalid = valid.to(torch.float32)[:, :, None]
        x = embeddings
        for layer in [*decoder.memory_layers, *decoder.decoders3]:
            residual = x
            x = layer.feed_forward(layer.norm1(x))
            if layer.self_attn is not None:
                fsmn = layer.self_attn
                h = layer.norm2(x) * fvalid
                out = fsmn.fsmn_block(h, fsmn.padding) + h
                x = residual + out * fvalid
            if layer.src_attn is not None:
                attended, _, _ = _cross_attend(layer.src_attn, layer.norm3(x), memory, bias)
                x = x + attended
        logits = decoder.output_layer(decoder.after_norm(x))
        return torch.argmax(logits, dim=-1)


class EncoderChunkGraph(nn.Module):
    """features (B,T,F) raw window, start (B,) int64, cache (L,2,B,H,Tc,dk) -> hidden, alphas, new_kv."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.encoder = model.encoder
        self.predictor = model.predictor
        self.positions = _Positions(model.config.input_size)
        self.scale = float(model.encoder.output_size ** 0.5)

    def forward(self, features: torch.Tensor, start: torch.Tensor, cache: torch.Tensor):
        absolute = start[:, None] + torch.arange(features.shape[1], dtype=torch.int64)[None, :]
        x = features * self.scale + self.positions((absolute + 1).to(torch.float32))
        x = x * (absolute >= 0).to(torch.float32)[:, :, None]  # the initial zero overlap
        keys_values = []
        for index, layer in enumerate(self.encoder.layers):
            x, key, value = _encoder_layer(layer, x, None, None, cache[index, 0], cache[index, 1])
            keys_values.append(torch.stack([key, value]))
        hidden = self.encoder.after_norm(x)
        alphas = self.predictor.frame_weights(hidden)
        return hidden, alphas, torch.stack(keys_values)


class DecoderChunkGraph(nn.Module):
    """memory (B,Tm,D), embeddings (B,N,D), fsmn_cache (Lm,B,K-1,D), cross_cache (La,2,B,H,Tc,dk)
    -> token_ids (B,N), fsmn_out (Lm,B,K-1+N,D), cross_kv (La,2,B,H,Tm,dk)."""

    def __init__(self, model: Paraformer):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, memory, embeddings, fsmn_cache, cross_cache):
        decoder = self.decoder
        x = embeddings
        fsmn_outs, cross_kvs = [], []
        cross_index = 0
        for index, layer in enumerate(decoder.memory_layers):
            residual = x
            x = layer.feed_forward(layer.norm1(x))
            h = layer.norm2(x)
            padded = torch.cat([fsmn_cache[index], h], dim=1)  # causal: context, then this call's inputs
            fsmn_outs.append(padded)
            x = residual + (layer.self_attn.fsmn_block(padded) + h)
            if layer.src_attn is not None:
                attended, key, value = _cross_attend(layer.src_attn, layer.norm3(x), memory, None,
                                                     cross_cache[cross_index, 0], cross_cache[cross_index, 1])
                cross_kvs.append(torch.stack([key, value]))
                cross_index += 1
                x = x + attended
        for layer in decoder.decoders3:
            x = layer.feed_forward(layer.norm1(x))
        logits = decoder.output_layer(decoder.after_norm(x))
        return torch.argmax(logits, dim=-1), torch.stack(fsmn_outs), torch.stack(cross_kvs)


# ---------------------------------------------------------------------------------------------------- export
def _check_exportable(model: Paraformer) -> None:
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
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)


def _export_graphs(model: Paraformer, out: Path, opset: int) -> dict[str, str]:
    enc, dec = model.config.encoder, model.decoder
    dim, feat = enc.output_size, model.config.input_size
    heads = enc.attention_heads
    d_k = dim // heads
    if model.streaming:
        layers = len(model.encoder.layers)
        t, b, tc = 7, 2, 3
        _export(EncoderChunkGraph(model).eval(),
                (torch.randn(b, t, feat), torch.tensor([-2, 5]), torch.randn(layers, 2, b, heads, tc, d_k)),
                out / STREAMING_GRAPHS["encoder_chunk"], ["features", "start", "cache"],
                ["hidden", "alphas", "new_kv"],
                {"features": {0: "B", 1: "T"}, "start": {0: "B"}, "cache": {2: "B", 4: "Tc"},
                 "hidden": {0: "B", 1: "T"}, "alphas": {0: "B", 1: "T"}, "new_kv": {2: "B", 4: "T"}}, opset)
        lm = len(dec.memory_layers)
        kernel = dec.memory_layers[0].self_attn.kernel_size
        dheads = dec.memory_layers[0].src_attn.heads
        n = 3
        _export(DecoderChunkGraph(model).eval(),
                (torch.randn(b, t, dim), torch.randn(b, n, dim), torch.randn(lm, b, kernel - 1, dim),
                 torch.randn(lm, 2, b, dheads, tc, dim // dheads)),
                out / STREAMING_GRAPHS["decoder_chunk"], ["memory", "embeddings", "fsmn_cache", "cross_cache"],
                ["token_ids", "fsmn_out", "cross_kv"],
                {"memory": {0: "B", 1: "Tm"}, "embeddings": {0: "B", 1: "N"}, "fsmn_cache": {1: "B"},
                 "cross_cache": {2: "B", 4: "Tc"}, "token_ids": {0: "B", 1: "N"}, "fsmn_out": {1: "B", 2: "KN"},
                 "cross_kv": {2: "B", 4: "Tm"}}, opset)
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

    ``dynamic``: quantize_dynamic (per-channel QInt8 weights, int8 activations quantised per call).
    ``nbits``: weight-only MatMulNBits (8 bits, block 128, accuracy level 4: int8 compute).
    """
    exclude = _predictor_nodes(path)
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(target), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                         extra_options={"MatMulConstBOnly": True})
        return "onnxruntime quantize_dynamic: MatMul weights per-channel QInt8, dynamic int8 activations; " \
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
            "encoder_cache": "(L, 2, B, H, Tc, dk): keys [.., 0], values [.., 1] per encoder layer; Tc may be 0",
            "encoder_new_kv": "(L, 2, B, H, T, dk): this window's keys/values; append all but the look-ahead rows",
            "encoder_start": "(B,) int64 absolute LFR frame of row 0; rows with start+row < 0 are zero",
            "fsmn_cache": "(Lm, B, K-1, D): the last K-1 decoder FSMN inputs of the stream (zeros at the start)",
            "fsmn_out": "(Lm, B, K-1+N, D): context then this call's FSMN inputs; next context = rows n..n+K-2",
            "cross_cache": "(La, 2, B, H, Tc, dk) cross-attention keys/values of earlier windows; Tc may be 0",
            "cross_kv": "(La, 2, B, H, Tm, dk) this memory's cross-attention keys/values",
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
        shift, scale = (" ".join(f"{v:.9g}" for v in vector.reshape(-1)) for vector in cmvn)
        size = cmvn[0].size
        (work / "am.mvn").write_text(
            f"<Nnet>\n<Splice> {size} {size}\n[ 0 ]\n<AddShift> {size} {size}\n<LearnRateCoef> 0 [ {shift} ]\n"
            f"<Rescale> {size} {size}\n<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n", encoding="utf-8")


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
