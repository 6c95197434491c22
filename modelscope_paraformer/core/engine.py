"""The compute seam: the few calls the recognition algorithms make of a network implementation.

The algorithms (offline batching and long audio in :mod:`.recognizer`, the streaming state machine in
:mod:`.session` and :mod:`.scheduler`, integrate-and-fire in :mod:`.cif`) own all state and all decisions in
numpy; an engine owns the tensors and runs the four networks calls below, on a batch. The caches it returns are
opaque to the algorithms: they hand each stream's caches back at its next step, and drop them when the
utterance ends. Implementations: :class:`~.engines.torch_engine.TorchEngine` (PyTorch, with its fast paths) and
:class:`~.engines.onnx_engine.OnnxEngine` (onnxruntime, no torch needed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from .chunking import ChunkConfig


@dataclass
class Encoded:
    """One utterance's (or one streaming window's) encoder output.

    ``hidden`` (frames, dim) float32 is what CIF integrates; ``alphas`` (frames,) float32 are the CIF frame
    weights the predictor gives them (for a window: over the whole window, before any cut); ``memory`` is the
    engine's own form of the same output, which it attends to in :meth:`Engine.decode` (may be ``hidden``).
    ``timestamp_alphas`` (frames * upsample,) float32: the upsampled timestamp weights of BiCif / SeACo models
    (offline only; ``None`` for other models).
    """

    hidden: np.ndarray
    alphas: np.ndarray
    memory: Any = None
    timestamp_alphas: Optional[np.ndarray] = None


@dataclass
class ChunkInput:
    """One streaming window: LFR features (frames, feature_dim), overlap first, then the new frames.

    ``start`` is the absolute LFR frame index of row 0 (positions are ``start + 1 ...``); rows before frame 0
    (negative indices: the initial overlap of a stream) are zeros after embedding, as in FunASR, which starts
    from a zero buffer.
    """

    features: np.ndarray
    start: int


class Engine(Protocol):
    """What an engine implements. Batches are lists, one item per utterance or stream; results keep the order."""

    def encode(self, features: Sequence[np.ndarray]) -> list[Encoded]:
        """Full-context encoding of whole utterances (each (frames, feature_dim), frames >= 1)."""

    def decode(self, encoded: Sequence[Encoded], embeddings: Sequence[np.ndarray],
               hotwords: Optional[Sequence[Sequence[int]]] = None) -> list[list[int]]:
        """Greedy token ids for each utterance's CIF embeddings (tokens, dim), tokens >= 1. ``hotwords`` (token
        ids of each, ending with ``[<s>]``; only passed for models with ``config.supports_hotwords``) bias the
        choice (SeACo)."""

    def encode_chunks(self, chunks: Sequence[ChunkInput], caches: Sequence[Optional[Any]], config: ChunkConfig
                      ) -> tuple[list[Encoded], list[Any]]:
        """Encode one window per stream with its encoder look-back cache (None: the stream's first window);
        return the encoded windows and each stream's new cache."""

    def decode_chunks(self, encoded: Sequence[Encoded], embeddings: Sequence[np.ndarray],
                      caches: Sequence[Optional[Any]], config: ChunkConfig) -> tuple[list[list[int]], list[Any]]:
        """Greedy token ids for the embeddings fired in each stream's window, given the window's encoder output
        and the stream's decoder cache (FSMN context over tokens, cross-attention look-back); new caches."""

    def release(self, caches: Sequence[Any]) -> None:
        """Caches of streams that did not step this time: let them stop sharing memory with a batch (optional)."""
