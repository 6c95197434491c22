"""Inference speed-ups for a loaded :class:`~.model.Paraformer`: thread control, bfloat16, dynamic int8.

``fp32`` keeps the float32 weights, pre-packed for oneDNN (:class:`PackedLinear`, equal to ``nn.Linear`` up to
float rounding), so its tokens equal those of the unoptimised model. ``bf16`` casts the network to bfloat16
(fast on CPUs with AVX512-BF16/AMX) but keeps the two parts that bfloat16's 8-bit mantissa breaks in float32:
the sinusoidal positions (``sin(position * rate)`` needs more than 8 bits for positions over ~100) and the CIF
predictor (its cumulative weights decide where tokens fire and grow to hundreds). ``int8`` replaces the
encoder's and decoder's ``nn.Linear`` layers (nearly all of the compute) by dynamically quantised ones; the
CIF predictor stays in float32 there too, as a shifted fire changes tokens.

Both reduced modes are approximations: tokens mostly, not always, equal the float32 ones, and with
``int8`` a batch may decode slightly differently from its utterances one at a time (activation scales
are per batch).

Memory: a model loaded with ``load_model(..., mmap=True)`` still has its weights in a read-only map of
``model.pt``; they are copied or converted out of it one layer at a time here, releasing the map's pages as
they go, so the peak is about the size of the converted model (int8 Paraformer-large: ~0.55 GB for the
process instead of 1.36 GB when the float32 checkpoint is read first).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Collection, Optional

import numpy as np
import torch
from torch import nn

from .checkpoint import load_model
from .layers import TimeDepthwiseConv
from .model import Paraformer
from .model_dir import ModelFiles

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
QUANTIZE_MODES = (None, "int8")


def set_threads(num_threads: int) -> None:
    """Use ``num_threads`` intra-op threads (and as many inter-op threads where that is still allowed)."""
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    try:
        torch.set_num_interop_threads(num_threads)
    except RuntimeError:  # only allowed once, before any inter-op work has started in this process
        logger.debug("inter-op threads already fixed at %d", torch.get_num_interop_threads())


class PackedLinear(nn.Module):
    """An inference-only ``nn.Linear`` whose weight oneDNN has reordered once into its own blocked layout.

    ``nn.Linear`` hands the weight to the GEMM in PyTorch's layout, and the GEMM re-packs it at every call: for
    a streaming chunk (15 rows against a 512x2048 weight) that packing costs as much as the product itself.
    Pre-packed, the same products run 1.2-1.9x faster on this class of CPU (AVX-512), in float32 and
    bfloat16, with results equal to ``nn.Linear`` up to float rounding. ``relu=True`` fuses a following ReLU.
    """

    def __init__(self, linear: nn.Linear, relu: bool = False):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        # a plain attribute, not a buffer: module-wide casts/moves cannot handle oneDNN's opaque tensors
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, 16)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()
        self.post_op = "relu" if relu else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, self.post_op, [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, post_op={self.post_op}"


class PackedDepthwiseConv(nn.Module):
    """An inference-only :class:`~.layers.TimeDepthwiseConv` (the FSMN memory) with its weight reordered once
    for oneDNN. The conv itself is tiny (11 taps over a few hundred frames): unpacked, the per-call weight
    reorder and its bookkeeping cost more than the product, ~40 us of the ~90 per call, 66 calls per streaming
    chunk of Paraformer-large. Bit-identical to the unpacked conv."""

    def __init__(self, conv: TimeDepthwiseConv):
        super().__init__()
        weight = conv.weight.detach().unsqueeze(2)  # (channels, 1, 1, kernel): a conv2d over (batch, channels, 1, time)
        self.channels = weight.size(0)
        self.packed_weight = torch.ops.mkldnn._reorder_convolution_weight(weight, [0, 0], [1, 1], [1, 1],
                                                                         self.channels, [1, self.channels, 1, 64])

    def forward(self, x: torch.Tensor, padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
        left, right = padding
        if left != right:
            x, left = nn.functional.pad(x, (0, 0, left, right)), 0
        out = torch.ops.mkldnn._convolution_pointwise(x.transpose(1, 2).unsqueeze(2), self.packed_weight, None,
                                                      [0, left], [1, 1], [1, 1], self.channels, "none", [], "")
        return out.squeeze(2).transpose(1, 2)


PACK_MIN_FLOAT32_WEIGHTS = 300_000


def _worth_packing(linear: nn.Linear) -> bool:
    """bfloat16 always gains (1.25-1.6x from 144x432 to 512x1536, 15 and 150 rows); float32 gains from ~300k
    weights on (512x1536: 1.2x at 15 rows), while below oneDNN's per-call overhead exceeds the saved
    re-packing (512x512: 0.85x at 15 rows; the 144-wide demo model decodes 15 % slower packed)."""
    return linear.weight.dtype != torch.float32 or linear.weight.numel() >= PACK_MIN_FLOAT32_WEIGHTS


def _feed_forward_relu_blocks(model: Paraformer) -> list[nn.Module]:
    """Feed-forward blocks whose ``w_1`` is an ``nn.Linear`` followed by an ``nn.ReLU`` ``activation``: the pairs
    that packing and int8 quantisation fuse."""
    return [module for module in model.modules()
            if isinstance(getattr(module, "activation", None), nn.ReLU)
            and isinstance(getattr(module, "w_1", None), nn.Linear)]


def _encoder_decoder_layers(model: Paraformer, layer_type: type) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, layer) of every layer of exactly ``layer_type`` in the encoder and decoder: the
    layers that packing and quantisation convert (the CIF predictor's stay as they are)."""
    return [(module, name, child) for part in (model.encoder, model.decoder) for module in part.modules()
            for name, child in module.named_children() if type(child) is layer_type]


def _can_pack(model: Paraformer) -> bool:
    """oneDNN packing needs a CPU build with mkldnn and the model on the CPU; probe it once on a tiny weight."""
    if model.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        PackedLinear(nn.Linear(8, 8).to(model.dtype))(torch.zeros(2, 8, dtype=model.dtype))
        PackedDepthwiseConv(TimeDepthwiseConv(8, 3).to(model.dtype))(torch.zeros(1, 5, 8, dtype=model.dtype))
    except (RuntimeError, AttributeError) as error:  # op missing in this build, or CPU without the dtype
        logger.info("oneDNN weight packing unavailable (%s); keeping nn.Linear and the FSMN convs", error)
        return False
    return True


def _replace_linears(model: Paraformer, make: Callable[[nn.Linear, bool], nn.Module],
                     wanted: Callable[[nn.Linear], bool] = lambda linear: True) -> int:
    """Replace each ``wanted`` ``nn.Linear`` of the encoder and decoder by ``make(linear, relu)``, where ``relu``
    says that the new module must also apply the feed-forward ReLU that follows it (then dropped). Returns the
    count.

    The weights of a checkpoint-mapped model are released one layer at a time, so that converting never
    holds the old and the new weights of the whole model at once.
    """
    fused = {id(block) for block in _feed_forward_relu_blocks(model)}
    mapped = model.checkpoint_map
    # (parent, name) pairs only: holding the old modules themselves would keep every old weight alive
    slots = [(module, name) for module, name, linear in _encoder_decoder_layers(model, nn.Linear) if wanted(linear)]
    for module, name in slots:
        linear = getattr(module, name)
        fuse = name == "w_1" and id(module) in fused
        setattr(module, name, make(linear, fuse))
        if fuse:
            module.activation = nn.Identity()
        if mapped is not None:
            mapped.release(linear.weight)
    return len(slots)


def _pack_depthwise_convs(model: Paraformer) -> int:
    """Replace the FSMN convs of the encoder and decoder by :class:`PackedDepthwiseConv`; returns the count."""
    slots = [(module, name) for module, name, _ in _encoder_decoder_layers(model, TimeDepthwiseConv)]
    for module, name in slots:
        setattr(module, name, PackedDepthwiseConv(getattr(module, name)))
    return len(slots)


def _dynamic_int8(linear: nn.Linear, relu: bool) -> nn.Module:
    """A dynamically quantised copy of ``linear`` (int8 weights, float32 in and out), with the following ReLU
    fused in when ``relu``."""
    # torch's x86/fbgemm dynamic int8 kernels: 2-6x faster than float32 Linear on this class of CPU, where a
    # torch._int_mm-based per-row variant measured no faster than float32. torch.ao.quantization warns that it
    # is deprecated (for torchao) but is the dependency-free option that works in every torch >= 2.1.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        linear.qconfig = torch.ao.quantization.default_dynamic_qconfig
        source: nn.Module = torch.ao.nn.intrinsic.LinearReLU(linear, nn.ReLU()) if relu else linear
        source.qconfig = linear.qconfig
        target = torch.ao.nn.intrinsic.quantized.dynamic.LinearReLU if relu else torch.ao.nn.quantized.dynamic.Linear
        return target.from_float(source)


def _copy_tensors(model: Paraformer, dtype: Optional[torch.dtype] = None, keep_float32: str = "",
                  skip: Collection[torch.Tensor] = ()) -> None:
    """Cast floating parameters and buffers to ``dtype`` (except those under the ``keep_float32`` prefix) and
    copy every tensor still in the checkpoint map but ``skip`` out of it. One tensor at a time: the map's pages
    are released as they are copied, and once more all together at the end (reading a small tensor maps its
    neighbours' pages too)."""
    mapped = model.checkpoint_map
    named = [*model.named_parameters(), *model.named_buffers()]
    skipped = {id(tensor) for tensor in skip}
    for name, tensor in named:
        old = tensor.data
        keep = not old.is_floating_point() or bool(keep_float32) and name.startswith(keep_float32)
        target = old.dtype if dtype is None or keep else dtype
        in_map = mapped is not None and mapped.holds(old)
        if id(tensor) in skipped or (target == old.dtype and not in_map):
            continue
        tensor.data = old.to(target, copy=True)
        if in_map:
            mapped.release(old)
    if mapped is not None:
        mapped.release_all()
        model.checkpoint_map = mapped if skipped else None


def optimize_for_inference(model: Paraformer, dtype: str = "fp32", quantize: Optional[str] = None,
                           num_threads: Optional[int] = None, pack: bool = True) -> Paraformer:
    """Prepare ``model`` (in place) for fast CPU inference and return it; for inference only (do not save it).

    ``dtype``: "fp32" (numerics unchanged) or "bf16"; ``quantize``: None or "int8" (dynamic, float32
    activations; not combinable with bf16); ``num_threads``: torch threads for this process; ``pack``: pre-pack
    weights for oneDNN (:class:`PackedLinear`, :class:`PackedDepthwiseConv`; CPU only; with int8 the convs only).
    """
    if not isinstance(model, Paraformer):
        raise TypeError(f"optimize_for_inference converts a PyTorch Paraformer, got {type(model).__name__}; an "
                        "exported ONNX dir has its precision fixed at export (python -m modelscope_paraformer export "
                        "--quantize int8)")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if quantize and dtype != "fp32":
        raise ValueError("int8 quantisation works on a float32 model; use dtype='fp32' with quantize='int8'")
    if model.device.type != "cpu" and quantize:
        raise ValueError("dynamic int8 quantisation runs on the CPU only")
    if num_threads is not None:
        set_threads(num_threads)
    if model.optimized_for is not None:  # packed or quantised layers cannot be converted again
        if model.optimized_for != (dtype, quantize, pack):
            raise ValueError(f"this model is already optimised as {model.optimized_for} (dtype, quantize, pack); "
                             f"load it again to optimise it as {(dtype, quantize, pack)}")
        return model
    model.eval().requires_grad_(False)
    if dtype == "bf16":
        # bfloat16's 8-bit mantissa would shift where the CIF predictor fires: it stays float32 (its
        # cumulative weights grow to hundreds), and the core computes positions in float32 anyway
        _copy_tensors(model, torch.bfloat16, keep_float32="predictor.")
    elif model.dtype != torch.float32:  # e.g. loaded with dtype=bfloat16
        model.float()
    elif model.checkpoint_map is not None:
        # everything but the Linear weights out of the map now: those are converted (and released) one by one
        _copy_tensors(model, skip=[linear.weight for _, _, linear in _encoder_decoder_layers(model, nn.Linear)])
    can_pack, converted = pack and _can_pack(model), 0
    if quantize == "int8":  # the predictor stays float32 here too: its 512->1 weights decide where tokens fire
        converted += _replace_linears(model, _dynamic_int8)
    elif can_pack:
        converted += _replace_linears(model, PackedLinear, _worth_packing)
    if can_pack:  # the FSMN convs keep the activations' dtype (float32 with int8) and gain at every size
        converted += _pack_depthwise_convs(model)
    model.inference_only = converted > 0  # its state_dict lacks converted weights: save_model_dir refuses it
    if model.checkpoint_map is not None:
        _copy_tensors(model)  # the rest of the weights, out of the map: nothing refers to model.pt any more
    model.optimized_for = (dtype, quantize, pack)
    logger.info("model ready for inference: %s%s, %d threads", dtype, " + int8" if quantize else "",
                torch.get_num_threads())
    return model


def warm_up(model: Paraformer, seconds: float = 1.5) -> None:
    """Decode a little noise once, so that one-off kernel selection and allocations are not timed later."""
    noise = np.random.default_rng(0).normal(0.0, 0.01, int(seconds * 16000)).astype(np.float32)
    model.transcribe([noise, noise[: len(noise) // 2]], batch_size=2)


def load(files: ModelFiles, device: Any = "cpu", dtype: Optional[torch.dtype] = None, mmap: bool = False,
         num_threads: Optional[int] = None) -> Paraformer:
    """The torch engine's loader for :func:`~.loading.load_model`."""
    if num_threads is not None:
        set_threads(num_threads)
    return load_model(files.root, device, dtype or torch.float32, mmap=mmap)


def load_for_inference(files: ModelFiles, device: Any = "cpu", dtype: str = "fp32", quantize: Optional[str] = None,
                       num_threads: Optional[int] = None) -> Paraformer:
    """The torch engine's loader for :func:`~.loading.load_for_inference`: mapped, so that the conversion reads
    the checkpoint layer by layer (int8 never holds all float32 weights)."""
    return optimize_for_inference(load_model(files.root, device, mmap=True), dtype, quantize, num_threads)
