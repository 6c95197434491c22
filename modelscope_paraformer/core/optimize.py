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

from .layers import sinusoidal_encoding
from .model import Paraformer
from .predictor import CifOutput, CifPredictor, CifState

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


class Float32Predictor(nn.Module):
    """Runs a :class:`CifPredictor` in float32 inside a reduced-precision model, casting at its borders."""

    def __init__(self, predictor: CifPredictor):
        super().__init__()
        self.inner = predictor.float()

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # threshold, tail_threshold, ...: those of the wrapped predictor
            inner = self.__dict__.get("_modules", {}).get("inner")
            if inner is None:
                raise
            return getattr(inner, name)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor,
                target_lengths: Optional[torch.Tensor] = None) -> CifOutput:
        out = self.inner(hidden.float(), lengths, target_lengths)
        return CifOutput(out.embeddings.to(hidden.dtype), out.token_counts, out.alphas, out.fire_frames)

    def forward_chunk(self, window: torch.Tensor, state: CifState, is_final: bool, start: int, end: int
                      ) -> tuple[CifOutput, CifState]:
        # the carried remainder stays float32 from the first chunk on
        state = CifState(state.weight.float(), state.hidden.float())
        out, state = self.inner.forward_chunk(window.float(), state, is_final, start, end)
        return CifOutput(out.embeddings.to(window.dtype), out.token_counts, out.alphas, out.fire_frames), state


def _float32_positions(encoder: nn.Module):
    """An ``embed`` for ``encoder`` that adds float32 positions, rounding once to the features' dtype."""
    scale = encoder.output_size ** 0.5

    def embed(features: torch.Tensor, start: int = 0) -> torch.Tensor:
        positions = sinusoidal_encoding(start, features.size(1), features.size(2), torch.float32, features.device)
        return (features.float() * scale + positions).to(features.dtype)

    return embed


def _to_bfloat16(model: Paraformer) -> None:
    model.to(torch.bfloat16)
    model.predictor = Float32Predictor(model.predictor)
    model.encoder.embed = _float32_positions(model.encoder)  # instance attribute: used by forward and streaming


def _quantize_int8(model: Paraformer) -> None:
    # torch's x86/fbgemm dynamic int8 kernels: 2-6x faster than float32 Linear on this class of CPU, where a
    # torch._int_mm-based per-row variant measured no faster than float32. torch.ao.quantization warns that it
    # is deprecated (for torchao) but is the dependency-free option that works in every torch >= 2.1.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        for name in ("encoder", "decoder"):
            torch.ao.quantization.quantize_dynamic(getattr(model, name), {nn.Linear}, dtype=torch.qint8,
                                                   inplace=True)
    if not isinstance(model.predictor, Float32Predictor):
        model.predictor = Float32Predictor(model.predictor)  # already float32: marks it as kept


def optimize_for_inference(model: Paraformer, dtype: str = "fp32", quantize: Optional[str] = None,
                           num_threads: Optional[int] = None) -> Paraformer:
    """Prepare ``model`` (in place) for fast CPU inference and return it.

    ``dtype``: "fp32" (numerics unchanged) or "bf16"; ``quantize``: None or "int8" (dynamic, float32
    activations; not combinable with bf16); ``num_threads``: torch threads for this process.
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
    if dtype == "bf16" and model.dtype != torch.bfloat16:
        _to_bfloat16(model)
    if quantize == "int8":
        _quantize_int8(model)
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
