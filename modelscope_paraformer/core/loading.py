"""Loading any model dir on the engine its files call for (PyTorch weights, or exported ONNX graphs).

The engines are imported only when a dir needs them, so that loading an exported dir never imports torch
(a deployment may leave the torch wheel out) and loading a checkpoint never imports onnxruntime.
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Optional, Union

from .model_dir import ModelDirError, ModelFiles, find_model_files

ENGINES = ("torch", "onnx")
# engine -> module with ``load(files, ...)`` and ``load_for_inference(files, ...)``, imported on first use
_ENGINE_MODULES = {"torch": "modelscope_paraformer.core.optimize",
                   "onnx": "modelscope_paraformer.core.engines.onnx_engine"}


def _engine_module(files: ModelFiles, engine: Optional[str]) -> Any:
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    found = "onnx" if files.is_onnx else "torch"
    if engine is not None and engine != found:
        if engine == "onnx":
            raise ModelDirError(f"{files.root} has PyTorch weights, no ONNX graphs: export it first with "
                                f"`python -m modelscope_paraformer export --model {files.root} --out DIR`")
        raise ModelDirError(f"{files.root} is an exported ONNX dir without PyTorch weights: use engine='onnx' "
                            "(or load the source model dir it was exported from)")
    return importlib.import_module(_ENGINE_MODULES[found])


def load_model(model_dir: Union[str, os.PathLike], device: Any = "cpu", dtype: Any = None, mmap: bool = False,
               engine: Optional[str] = None, num_threads: Optional[int] = None) -> Any:
    """Load a local model dir as it is.

    A dir with PyTorch weights gives a :class:`~.model.Paraformer` (``device``, ``dtype``, ``mmap`` as in
    :func:`~.checkpoint.load_model`); an exported dir (``python -m modelscope_paraformer export``) gives a
    :class:`~.recognizer.Recognizer` on onnxruntime with ``num_threads`` intra-op threads. Both transcribe
    (``model.transcribe``) and stream (``StreamingDecoder(model)``) alike. ``engine`` ("torch" | "onnx")
    insists on one.
    """
    files = find_model_files(model_dir)
    return _engine_module(files, engine).load(files, device=device, dtype=dtype, mmap=mmap, num_threads=num_threads)


def load_for_inference(model_dir: Union[str, os.PathLike], device: Any = "cpu", dtype: str = "fp32",
                       quantize: Optional[str] = None, num_threads: Optional[int] = None,
                       engine: Optional[str] = None) -> Any:
    """Load a model dir with the fast paths of its engine: ``dtype`` "fp32" | "bf16", ``quantize`` None | "int8"
    and ``num_threads`` (see :func:`~.optimize.optimize_for_inference`; an exported dir has its precision fixed
    at export, and asking for another one is an error)."""
    files = find_model_files(model_dir)
    return _engine_module(files, engine).load_for_inference(files, device=device, dtype=dtype, quantize=quantize,
                                                            num_threads=num_threads)
