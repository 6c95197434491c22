"""Inference speed-ups for a loaded :class:`~.model.Paraformer`: thread control, bfloat16, dynamic int8.

``fp32`` leaves every number as it is (the model is only put in eval mode without gradients), so its
tokens equal those of the unoptimised model. ``bf16`` casts the network to bfloat16 (fast on CPUs with
AVX512-BF16/AMX) but keeps the two parts that bfloat16's 8-bit mantissa breaks in float32: the
sinusoidal positions (``sin(position * rate)`` needs more than 8 bits for positions over ~100) and the CIF
predictor (its cumulative weights decide where tokens fire and grow to hundreds). ``int8`` replaces the
encoder's and decoder's ``nn.Linear`` layers (nearly all of the compute) by dynamically quantised ones;
the CIF predictor stays in float32 there too, as a shifted fire changes tokens.

Both reduced modes are approximations: tokens mostly, not always, equal the float32 ones, and with
``int8`` a batch may decode slightly differently from its utterances one at a time (activation scales
are per batch).
"""
from __future__ import annotations

import logging
import warnings
from typing import Optional

import numpy as np
import torch
from torch import nn

from .model import Paraformer

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


def _feed_forward_relu_blocks(model: Paraformer) -> dict[str, nn.Module]:
    """Feed-forward blocks (by module name) whose ``w_1`` is an ``nn.Linear`` followed by an ``nn.ReLU``
    ``activation``: the pairs that packing and int8 quantisation fuse."""
    return {name: module for name, module in model.named_modules()
            if isinstance(getattr(module, "activation", None), nn.ReLU)
            and isinstance(getattr(module, "w_1", None), nn.Linear)}


def _can_pack(model: Paraformer) -> bool:
    """oneDNN packing needs a CPU build with mkldnn and the model on the CPU; probe it once on a tiny weight."""
    if model.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        PackedLinear(nn.Linear(8, 8).to(model.dtype))(torch.zeros(2, 8, dtype=model.dtype))
    except (RuntimeError, AttributeError) as error:  # op missing in this build, or CPU without the dtype
        logger.info("oneDNN weight packing unavailable (%s); keeping nn.Linear", error)
        return False
    return True


def _pack_linears(model: Paraformer) -> int:
    """Replace the encoder's and decoder's ``nn.Linear`` layers by :class:`PackedLinear`; ReLUs that follow a
    feed-forward layer's ``w_1`` are fused into it. Returns how many layers were packed."""
    if not _can_pack(model):
        return 0
    fused = {id(block) for block in _feed_forward_relu_blocks(model).values()}
    packed = 0
    for part in (model.encoder, model.decoder):
        for module in list(part.modules()):
            for name, child in list(module.named_children()):
                if type(child) is not nn.Linear:
                    continue
                fuse = name == "w_1" and id(module) in fused
                setattr(module, name, PackedLinear(child, relu=fuse))
                if fuse:
                    module.activation = nn.Identity()
                packed += 1
    return packed


def _to_bfloat16(model: Paraformer) -> None:
    """Cast to bfloat16, keeping the CIF predictor in float32: it integrates hundreds of frame weights, and the
    core runs it in the predictor's own dtype (positions are always computed in float32 by the core)."""
    model.to(torch.bfloat16)
    model.predictor.float()


def _quantize_int8(model: Paraformer) -> None:
    # the predictor stays float32: its 512->1 weights decide where tokens fire and cost little
    # torch's x86/fbgemm dynamic int8 kernels: 2-6x faster than float32 Linear on this class of CPU, where a
    # torch._int_mm-based per-row variant measured no faster than float32. torch.ao.quantization warns that it
    # is deprecated (for torchao) but is the dependency-free option that works in every torch >= 2.1.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        quantization = torch.ao.quantization
        # w_1 + ReLU become one quantised LinearReLU: one op less per feed-forward block
        pairs = [[f"{name}.w_1", f"{name}.activation"] for name in _feed_forward_relu_blocks(model)]
        quantization.fuse_modules(model, pairs, inplace=True)
        for name in ("encoder", "decoder"):
            quantization.quantize_dynamic(getattr(model, name), {nn.Linear, torch.ao.nn.intrinsic.LinearReLU},
                                          dtype=torch.qint8, inplace=True)


def optimize_for_inference(model: Paraformer, dtype: str = "fp32", quantize: Optional[str] = None,
                           num_threads: Optional[int] = None, pack: bool = True) -> Paraformer:
    """Prepare ``model`` (in place) for fast CPU inference and return it; for inference only (do not save it).

    ``dtype``: "fp32" (numerics unchanged) or "bf16"; ``quantize``: None or "int8" (dynamic, float32
    activations; not combinable with bf16); ``num_threads``: torch threads for this process; ``pack``: pre-pack
    the float weights for oneDNN (:class:`PackedLinear`; CPU only, ignored with int8).
    """
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
    model.eval().requires_grad_(False)
    if dtype == "bf16":
        _to_bfloat16(model)
    elif model.dtype != torch.float32:  # e.g. loaded with dtype=bfloat16
        model.float()
    if quantize == "int8":
        _quantize_int8(model)
        model.inference_only = True
    elif pack and _pack_linears(model):
        model.inference_only = True  # its state_dict lacks the packed weights: save_model_dir refuses it
    logger.info("model ready for inference: %s%s, %d threads", dtype, " + int8" if quantize else "",
                torch.get_num_threads())
    return model


def warm_up(model: Paraformer, seconds: float = 1.5) -> None:
    """Decode a little noise once, so that one-off kernel selection and allocations are not timed later."""
    noise = np.random.default_rng(0).normal(0.0, 0.01, int(seconds * 16000)).astype(np.float32)
    if model.streaming:
        from .streaming import StreamingDecoder

        StreamingDecoder(model).decode_all(noise)
    else:
        model.transcribe([noise, noise[: len(noise) // 2]], batch_size=2)
