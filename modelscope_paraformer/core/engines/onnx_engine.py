"""An :class:`~..engine.Engine` on onnxruntime CPU sessions: the graphs written by :mod:`.onnx_export`.

No torch here, directly or indirectly: numpy, onnxruntime, the standard library and the torch-free core
modules only (a deployment may leave the torch wheel out).

Caches are per stream and opaque to the algorithms:

- encoder: a float32 array (L*2*H, Tc, dk), the look-back keys/values of every layer (layer-major, keys then
  values, heads within; Tc may be 0);
- decoder: :class:`DecoderCache`, the FSMN context (Lm*(K-1), D) and the cross-attention look-back
  (La*2*H, Tc, dk).

A batch stacks them on a leading batch axis, the layout the graphs take: each graph cuts its cache input into
per-layer pieces with one constant-size Split along axis 1 and returns the caches as one Concat along axis 1
(see :mod:`.onnx_export`).

Streams are grouped into buckets of identical shapes (window frames and cache length), one batched session call
per bucket: no padding, no masks, so a stream decodes the same alone or in any batch.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import onnxruntime as ort

from ..chunking import ChunkConfig
from ..engine import ChunkInput, Encoded
from ..errors import ParaformerError
from ..model_dir import ONNX_MANIFEST as MANIFEST
from ..model_dir import ModelFiles, read_model_spec
from ..recognizer import Recognizer

logger = logging.getLogger(__name__)

FORMAT = "modelscope-paraformer-onnx"


class OnnxModelError(ParaformerError, ValueError):
    """The directory is not a usable ONNX export."""


@dataclass
class DecoderCache:
    """One stream's decoder state: FSMN context (Lm*(K-1), D) and cross-attention look-back (La*2*H, Tc, dk)."""

    fsmn: np.ndarray
    cross: np.ndarray


_global_pool_threads: Optional[int] = None  # size of this process's shared onnxruntime thread pool, once made


def _shared_pool(threads: int) -> bool:
    """Make the process-wide intra-op thread pool of ``threads`` threads on first use; True when sessions use it
    (always, once it exists: onnxruntime then refuses per-session pools). Why: every session otherwise has its
    own pool whose threads spin after a run, and the encoder and decoder sessions of a streaming step, called
    one after the other, then fight over the cores (measured on 2 cores, Paraformer-large, 600 ms chunks: 111 ms
    per chunk with two spinning pools, 63-68 ms with spinning off, 55-56 ms with one shared pool)."""
    global _global_pool_threads
    if _global_pool_threads is None:
        try:
            ort.capi._pybind_state.set_global_thread_pool_sizes(threads, 1)
        except (AttributeError, RuntimeError) as error:  # not in this build, or the environment exists already
            logger.debug("no shared onnxruntime thread pool (%s)", error)
            _global_pool_threads = 0
        else:
            _global_pool_threads = threads
    elif _global_pool_threads and threads != _global_pool_threads:
        logger.warning("onnxruntime sessions of this process share one pool of %d threads; %d asked for is not "
                       "applied (choose num_threads for the first model loaded)", _global_pool_threads, threads)
    return bool(_global_pool_threads)


def session_options(num_threads: Optional[int] = None) -> ort.SessionOptions:
    """The session options, chosen by measurement (benchmarks/onnx_options.py; Paraformer-large, batch 1,
    2 threads, quiet machine): ORT_ENABLE_ALL + memory arena + sequential execution, one inter-op thread.
    Offline encoder at 167 rows: 322 ms (EXTENDED 331, BASIC 352, no fusions 328, arena off 366, parallel
    executor 414); streaming window 15 rows + 40 cached: 44 ms, all variants within 42-46 ms (noise). The graphs
    are a chain, so the parallel executor has nothing to overlap. Threads: one pool shared by all sessions of
    the process (see :func:`_shared_pool`), or where it cannot be made, a pool per session, not spinning."""
    threads = int(num_threads or os.cpu_count() or 1)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = True
    options.log_severity_level = 3
    if _shared_pool(threads):
        options.use_per_session_threads = False
    else:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def read_manifest(model_dir: Union[str, os.PathLike]) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise OnnxModelError(f"{model_dir}: no {MANIFEST} (not an ONNX export; see core/engines/onnx_export.py)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OnnxModelError(f"{path}: malformed JSON ({error})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != 1:
        raise OnnxModelError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
                             f"expected {FORMAT!r} version 1")
    return manifest


def _buckets(keys: Sequence[Any]) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return groups


class OnnxEngine:
    """The four network calls of the recognition algorithms on onnxruntime (CPU)."""

    def __init__(self, model_dir: Union[str, os.PathLike], manifest: Optional[dict] = None,
                 num_threads: Optional[int] = None, options: Optional[ort.SessionOptions] = None):
        self.model_dir = Path(model_dir)
        self.manifest = manifest if manifest is not None else read_manifest(model_dir)
        self.streaming = bool(self.manifest["streaming"])
        assumes = self.manifest["assumes"]
        self.feature_dim = int(assumes["feature_dim"])
        self.dim = int(assumes["encoder_dim"])
        self.heads, self.d_k = int(assumes["heads"]), int(assumes["d_k"])
        self.decoder_heads, self.decoder_d_k = int(assumes["decoder_heads"]), int(assumes["decoder_d_k"])
        self.encoder_layers = int(assumes["encoder_layers"])
        self.memory_layers = int(assumes["decoder_memory_layers"])
        self.cross_layers = int(assumes["decoder_cross_layers"])
        self.kernel = int(assumes["fsmn_kernel"])
        options = options or session_options(num_threads)
        self.sessions: dict[str, ort.InferenceSession] = {}
        for name, filename in self.manifest["graphs"].items():
            path = self.model_dir / filename
            if not path.is_file():
                raise OnnxModelError(f"{self.model_dir}: {filename} is missing")
            self.sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        if "encoder_chunk" in self.sessions and len(self.sessions["encoder_chunk"].get_inputs()[2].shape) != 4:
            raise OnnxModelError(f"{self.model_dir}: an export with the old (L, 2, B, H, Tc, dk) cache layout; "
                                 "export the model again")

    def _session(self, name: str) -> ort.InferenceSession:
        if name not in self.sessions:
            kind = "an offline" if self.streaming else "a streaming"
            raise OnnxModelError(f"{self.model_dir}: no {name} graph: this call needs {kind} model's export")
        return self.sessions[name]

    # ------------------------------------------------------------------------------------------------ offline
    def encode(self, features: Sequence[np.ndarray]) -> list[Encoded]:
        if not features:
            return []
        lengths = np.array([len(f) for f in features], np.int64)
        batch = np.zeros((len(features), int(lengths.max()), self.feature_dim), np.float32)
        for row, f in enumerate(features):
            batch[row, :len(f)] = f
        hidden, alphas = self._session("encoder").run(None, {"features": batch, "lengths": lengths})
        return [Encoded(hidden[row, :n], alphas[row, :n], hidden[row, :n]) for row, n in enumerate(lengths)]

    def decode(self, encoded: Sequence[Encoded], embeddings: Sequence[np.ndarray]) -> list[list[int]]:
        if not encoded:
            return []
        memories = [np.asarray(e.memory if e.memory is not None else e.hidden, np.float32) for e in encoded]
        memory_lengths = np.array([len(m) for m in memories], np.int64)
        token_lengths = np.array([len(e) for e in embeddings], np.int64)
        memory = np.zeros((len(memories), int(memory_lengths.max()), self.dim), np.float32)
        tokens = np.zeros((len(memories), max(1, int(token_lengths.max())), self.dim), np.float32)
        for row, (m, e) in enumerate(zip(memories, embeddings)):
            memory[row, :len(m)] = m
            tokens[row, :len(e)] = e
        ids = self._session("decoder").run(None, {"memory": memory, "memory_lengths": memory_lengths,
                                                  "embeddings": tokens, "token_lengths": token_lengths})[0]
        return [ids[row, :n].tolist() for row, n in enumerate(token_lengths)]

    # ---------------------------------------------------------------------------------------------- streaming
    def _empty_encoder_cache(self) -> np.ndarray:
        return np.zeros((self.encoder_layers * 2 * self.heads, 0, self.d_k), np.float32)

    def encode_chunks(self, chunks: Sequence[ChunkInput], caches: Sequence[Optional[Any]], config: ChunkConfig
                      ) -> tuple[list[Encoded], list[Any]]:
        session = self._session("encoder_chunk")
        caches = [self._empty_encoder_cache() if c is None else c for c in caches]
        results: list[Optional[Encoded]] = [None] * len(chunks)
        new_caches: list[Any] = [None] * len(chunks)
        keep = config.encoder_keep_frames
        look_ahead = config.look_ahead
        for (frames, cached), rows in _buckets([(len(c.features), caches[i].shape[1])
                                                for i, c in enumerate(chunks)]).items():
            features = np.stack([np.asarray(chunks[i].features, np.float32) for i in rows])
            start = np.array([chunks[i].start for i in rows], np.int64)
            cache = caches[rows[0]][None] if len(rows) == 1 else np.stack([caches[i] for i in rows])
            # new_kv (B, L*2*H, Tc+T, dk): the cache followed by this window's keys/values
            hidden, alphas, new_kv = session.run(None, {"features": features, "start": start, "cache": cache})
            for b, i in enumerate(rows):
                results[i] = Encoded(hidden[b], alphas[b], hidden[b])
                if keep == 0:
                    new_caches[i] = self._empty_encoder_cache()
                    continue
                # as SANMAttention: old cache + window, minus the look-ahead rows, the last ``keep`` frames
                total = cached + frames
                until = max(0, total - look_ahead)
                first = max(0, until - keep) if keep > 0 else 0
                new_caches[i] = np.ascontiguousarray(new_kv[b, :, first:until])
        return results, new_caches  # type: ignore[return-value]

    def _empty_decoder_cache(self) -> DecoderCache:
        return DecoderCache(np.zeros((self.memory_layers * (self.kernel - 1), self.dim), np.float32),
                            np.zeros((self.cross_layers * 2 * self.decoder_heads, 0, self.decoder_d_k), np.float32))

    def decode_chunks(self, encoded: Sequence[Encoded], embeddings: Sequence[np.ndarray],
                      caches: Sequence[Optional[Any]], config: ChunkConfig) -> tuple[list[list[int]], list[Any]]:
        session = self._session("decoder_chunk")
        caches = [self._empty_decoder_cache() if c is None else c for c in caches]
        ids: list[list[int]] = [[] for _ in encoded]
        new_caches: list[Any] = list(caches)  # a stream that fired nothing keeps its state (as the torch path)
        keep = config.decoder_keep_frames
        memories = [np.asarray(e.memory if e.memory is not None else e.hidden, np.float32) for e in encoded]
        todo = [i for i in range(len(encoded)) if len(embeddings[i])]
        for (frames, cached), group in _buckets([(len(memories[i]), caches[i].cross.shape[1]) for i in todo]).items():
            rows = [todo[j] for j in group]
            counts = [len(embeddings[i]) for i in rows]
            tokens = np.zeros((len(rows), max(counts), self.dim), np.float32)
            for b, i in enumerate(rows):
                tokens[b, :counts[b]] = embeddings[i]
            token_ids, fsmn_out, cross_kv = session.run(None, {
                "memory": np.stack([memories[i] for i in rows]), "embeddings": tokens,
                "fsmn_cache": np.stack([caches[i].fsmn for i in rows]),
                "cross_cache": np.stack([caches[i].cross for i in rows])})
            # fsmn_out (B, Lm*(K-1+N), D): per layer the context then this call's FSMN inputs;
            # cross_kv (B, La*2*H, Tc+Tm, dk): the look-back followed by this memory's keys/values
            fsmn_out = fsmn_out.reshape(len(rows), self.memory_layers, -1, self.dim)
            for b, i in enumerate(rows):
                n = counts[b]
                ids[i] = token_ids[b, :n].tolist()
                fsmn = np.ascontiguousarray(fsmn_out[b, :, n:n + self.kernel - 1]).reshape(-1, self.dim)
                if keep > 0:
                    cross = np.ascontiguousarray(cross_kv[b, :, -keep:])
                else:
                    cross = caches[i].cross
                new_caches[i] = DecoderCache(fsmn, cross)
        return ids, new_caches

    def release(self, caches: Sequence[Any]) -> None:
        """Nothing to do: every cache is its own contiguous numpy array (copied out of the batch outputs), so no
        stream's cache keeps a batch's buffers alive."""


def load(files: ModelFiles, device: Any = "cpu", dtype: Any = None, mmap: bool = False,
         num_threads: Optional[int] = None) -> Recognizer:
    """The onnxruntime engine's loader for :func:`~..loading.load_model`: a :class:`Recognizer` of the dir."""
    if str(device).lower() not in ("cpu", "gpu", "cuda") and not str(device).lower().startswith(("cuda", "gpu")):
        raise ValueError(f"unknown device {device!r}")
    if str(device).lower() != "cpu":
        logger.info("the onnxruntime engine runs on the CPU (asked for %s)", device)
    if dtype is not None and str(dtype).removeprefix("torch.") not in ("fp32", "float32", "float"):
        raise OnnxModelError(f"{files.root} is an ONNX export with fixed precision: dtype {dtype!r} cannot apply")
    config, frontend, tokenizer = read_model_spec(files)
    if config.variant != "paraformer":
        raise OnnxModelError(f"{files.root}: {config.raw.get('model')} has no ONNX engine here (its timestamp head "
                             "and hotword branch are not exported): load its PyTorch model dir instead")
    engine = OnnxEngine(files.root, read_manifest(files.root), num_threads)
    if engine.streaming != config.streaming:
        raise OnnxModelError(f"{files.root}: config.yaml and {MANIFEST} disagree on streaming")
    return Recognizer(engine, config, frontend, tokenizer)


def load_for_inference(files: ModelFiles, device: Any = "cpu", dtype: str = "fp32", quantize: Optional[str] = None,
                       num_threads: Optional[int] = None) -> Recognizer:
    """The onnxruntime engine's loader for :func:`~..loading.load_for_inference`: the precision was fixed at
    export, so ``dtype`` must be fp32 and ``quantize`` None or the export's own."""
    precision = read_manifest(files.root)["precision"]
    if dtype not in (None, "fp32"):
        raise OnnxModelError(f"{files.root} is an ONNX export ({precision}): dtype {dtype!r} cannot apply; export "
                             "again for another precision")
    if quantize is not None and quantize != precision:
        raise OnnxModelError(f"{files.root} is an ONNX export in {precision}, not {quantize}: export the source "
                             f"model with --quantize {quantize}")
    return load(files, device, num_threads=num_threads)

