"""Load and save the PyTorch weights of a model dir (files found by :mod:`.model_dir`), memory-mapped if asked.

Weights are loaded with ``weights_only=True`` and strictly: every missing or unexpected key and every
shape mismatch is reported in one error naming the file.
"""
from __future__ import annotations

import ctypes
import json
import logging
import mmap as mmap_module
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import torch

from .errors import ParaformerError
from .hotwords import read_seg_dict
from .model import Paraformer
from .model_dir import CONFIGURATION_TEMPLATE, ModelDirError, atomic_write, find_model_files, read_model_spec

logger = logging.getLogger(__name__)


class CheckpointError(ParaformerError, ValueError):
    """model.pt / model.pb does not fit the architecture in config.yaml."""


def read_state_dict(path: Path, mmap: bool = False) -> tuple[dict[str, torch.Tensor], Optional[CheckpointMap]]:
    """Load tensors from a checkpoint without unpickling code (``weights_only=True``), with the address range
    of their memory map (None when not mapped).

    ``mmap``: map the file instead of reading it (tensors are read lazily, as pages); a file that cannot be
    mapped (torch's legacy non-zip format, a file system without mmap) is read instead.
    """
    state, mapped = None, False
    if mmap:
        try:
            state, mapped = torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
        except Exception as error:  # legacy (non-zip) format, a file system without mmap, a broken file
            logger.debug("%s: cannot be memory-mapped (%s); reading it", path, error)
    try:
        if not mapped:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types (UnpicklingError, RuntimeError, EOFError ...)
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    state = {key[len("module."):] if key.startswith("module.") else key: value for key, value in state.items()}
    return state, CheckpointMap(state.values()) if mapped else None


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_MADV_DONTNEED = 4


def _span(tensors: Iterable[torch.Tensor]) -> tuple[int, int]:
    """[start, end) addresses covering the data of ``tensors`` (all on the CPU, none empty)."""
    bounds = [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in tensors]
    return min(start for start, _ in bounds), max(end for _, end in bounds)


class CheckpointMap:
    """The address range [start, end) of a memory-mapped checkpoint's tensors.

    It holds one of them: every tensor of the map keeps the whole map alive, so the range cannot be unmapped
    and reused by other memory while this object exists (releasing pages there would zero live data).
    """

    def __init__(self, tensors: Iterable[torch.Tensor]):
        tensors = [t for t in tensors if t.numel()]
        self.start, self.end = _span(tensors) if tensors else (0, 0)
        self._anchor = tensors[0] if tensors else None

    def __repr__(self) -> str:
        return f"CheckpointMap({self.start:#x}-{self.end:#x}, {(self.end - self.start) / 2**20:.0f} MiB)"

    def holds(self, tensor: torch.Tensor) -> bool:
        """True when ``tensor``'s data lies in the map."""
        return tensor.device.type == "cpu" and self.start <= tensor.data_ptr() < self.end

    def release(self, *tensors: torch.Tensor) -> None:
        """Let the kernel drop the resident pages spanned by those of ``tensors`` that lie in the map (Linux;
        elsewhere a no-op). Call it for mapped tensors that are no longer used.

        The pages are clean copies of the file (a private map that nobody wrote to), so they are freed at once
        and would be read again from the file if touched. Without this, every weight read while converting a
        model stays resident until the whole map is closed: int8 quantisation would peak at the float32 size.
        The range is clipped to the map: on ordinary memory MADV_DONTNEED would zero live data.
        """
        inside = [t for t in tensors if t.numel() and self.holds(t)]
        if inside:
            self._release_range(*_span(inside))

    def release_all(self) -> None:
        """Drop every resident page of the map; tensors still in use read theirs again from the file."""
        self._release_range(self.start, self.end)

    def _release_range(self, start: int, end: int) -> None:
        page = mmap_module.PAGESIZE
        first = -(-max(start, self.start) // page) * page  # whole pages only: neighbours may be in use
        last = min(end, self.end) // page * page
        if _LIBC is not None and last > first:
            _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise one :class:`CheckpointError` listing every missing/unexpected key and wrong shape."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(value.shape)}"
             for key, value in expected.items() if key in state and state[key].shape != value.shape]
    if missing or unexpected or wrong:
        lines = [f"{path} does not match the architecture in config.yaml:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                lines.append(f"  {title}: {shown}")
        vocab = "decoder.output_layer.weight"
        if vocab in state and vocab in expected and state[vocab].shape[0] != expected[vocab].shape[0]:
            lines.append(f"  the token list has {expected[vocab].shape[0]} tokens, the checkpoint's output layer "
                         f"{state[vocab].shape[0]}: tokens.json / tokens.txt does not belong to this model")
        raise CheckpointError("\n".join(lines))


def torch_device(device: Union[str, torch.device, None]) -> torch.device:
    """ModelScope device names (``gpu``, ``gpu:1``, ``cuda``) as a torch device; CPU when CUDA is unavailable.

    ``pipeline()`` passes ``gpu`` by default, also on machines without a GPU.
    """
    name = str(device or "cpu").lower()
    if name.startswith("gpu"):
        name = "cuda" + name[3:]
    resolved = torch.device(name)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        logger.info("CUDA is not available: running Paraformer on the CPU")
        return torch.device("cpu")
    return resolved


def load_model(model_dir: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
               dtype: torch.dtype = torch.float32, mmap: bool = False) -> Paraformer:
    """Build a :class:`Paraformer` from a local model directory, ready for inference (eval mode).

    ``device`` takes torch and ModelScope names (``cpu``, ``cuda:0``, ``gpu``); CUDA falls back to the CPU
    when it is unavailable.

    ``mmap=True`` leaves the float32 CPU weights in a read-only map of ``model.pt`` instead of reading them
    (``model.checkpoint_map`` is then set), for :func:`~.optimize.optimize_for_inference` to convert layer
    by layer and copy out of the map: int8 never holds all float32 weights. Use it only with that call.
    """
    files = find_model_files(model_dir)
    if files.weights is None:
        raise ModelDirError(f"{files.root} holds ONNX graphs, not PyTorch weights: load it with "
                            "modelscope_paraformer.load_model (onnxruntime engine)")
    config, frontend, tokenizer = read_model_spec(files)
    with torch.device("meta"):  # no wasted random init: the checkpoint provides every tensor
        model = Paraformer(config, frontend, tokenizer)
    state, mapped = read_state_dict(files.weights, mmap=mmap)
    if not hasattr(model, "ctc"):
        state = {key: value for key, value in state.items() if not key.startswith("ctc.")}
    check_state_dict(model, state, files.weights)
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device=torch_device(device), dtype=dtype).eval()
    if config.supports_hotwords and files.cmvn is not None:  # FunASR looks for seg_dict beside am.mvn
        model.seg_dict = read_seg_dict(files.cmvn.parent / "seg_dict")
    # a device or dtype conversion copies the weights out of the map; otherwise they are still views of it
    model.checkpoint_map = mapped if mapped is not None and mapped.holds(next(model.parameters())) else None
    logger.info("loaded %s (%.1fM parameters) from %s", config.raw.get("model"), model.parameter_count() / 1e6,
                files.root)
    return model


def save_model_dir(model: Paraformer, out_dir: Union[str, os.PathLike], raw_config: dict[str, Any],
                   cmvn_source: Optional[Path] = None, state: Optional[dict[str, torch.Tensor]] = None) -> Path:
    """Write a complete, self-contained model directory that :func:`load_model` and ``pipeline()`` load."""
    import yaml

    if state is None and getattr(model, "inference_only", False):
        raise ValueError("this model was prepared by optimize_for_inference (packed or quantised weights) and "
                         "cannot be saved as a checkpoint; save the model before optimising it")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = state if state is not None else {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(out / "model.pt", lambda tmp: torch.save(state, tmp))
    config = dict(raw_config)
    config.pop("token_list", None)
    config.setdefault("frontend_conf", {})
    atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(
        yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"))
    tokens = model.tokenizer.tokens if model.tokenizer else []
    atomic_write(out / "tokens.json", lambda tmp: Path(tmp).write_text(
        json.dumps(tokens, ensure_ascii=False, indent=0), encoding="utf-8"))
    if cmvn_source is not None and Path(cmvn_source).resolve() != (out / "am.mvn").resolve():
        atomic_write(out / "am.mvn", lambda tmp: shutil.copyfile(cmvn_source, tmp))
    configuration = json.loads(json.dumps(CONFIGURATION_TEMPLATE))
    configuration["model"]["model_config"] = {"mode": "paraformer_streaming" if model.streaming else "paraformer"}
    atomic_write(out / "configuration.json", lambda tmp: Path(tmp).write_text(
        json.dumps(configuration, indent=2, ensure_ascii=False), encoding="utf-8"))
    return out
