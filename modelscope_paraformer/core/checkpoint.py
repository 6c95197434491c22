"""Find, validate and load a Paraformer model directory (FunASR 1.x and legacy ModelScope layouts).

1.x: ``config.yaml``, ``model.pt``, ``am.mvn``, ``tokens.json`` (+ ``configuration.json`` whose
``file_path_metas`` may rename them). Legacy (revisions v1.0.x): ``model.pb``, ``tokens.txt`` or a
``token_list`` inside ``config.yaml``, and a configuration.json with ``model.model_config.mode``.
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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import torch

from .config import ConfigError, parse_config, read_yaml
from .frontend import Frontend, load_cmvn
from .model import Paraformer
from .tokenizer import CharTokenizer

logger = logging.getLogger(__name__)


class ModelDirError(FileNotFoundError):
    """A model directory is missing a file or holds an unusable one."""


class CheckpointError(ValueError):
    """model.pt / model.pb does not fit the architecture in config.yaml."""


@dataclass
class ModelFiles:
    """Resolved paths of one model directory."""

    root: Path
    config: Path
    weights: Path
    cmvn: Optional[Path]
    tokens: Optional[Path]
    configuration: dict[str, Any]


def read_configuration(root: Path) -> dict[str, Any]:
    """configuration.json as a dict ({} when absent); malformed JSON is an error."""
    path = root / "configuration.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelDirError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(data, dict):
        raise ModelDirError(f"{path}: expected a JSON object")
    return data


def _meta_path(metas: dict[str, Any], *keys: str) -> Optional[str]:
    value: Any = metas
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, str) else None


def find_model_files(model_dir: Union[str, os.PathLike]) -> ModelFiles:
    """Locate the files of a model directory, preferring names given in configuration.json."""
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        raise ModelDirError(f"model directory not found: {model_dir}")
    configuration = read_configuration(root)
    metas = configuration.get("file_path_metas") or {}
    legacy = configuration.get("model") if isinstance(configuration.get("model"), dict) else {}

    def first_existing(*names: Optional[str]) -> Optional[Path]:
        for name in names:
            if name and (root / name).is_file():
                return root / name
        return None

    config = first_existing(_meta_path(metas, "config"), legacy.get("am_model_config"), "config.yaml")
    if config is None:
        raise ModelDirError(f"{root}: config.yaml not found (the FunASR model configuration)")
    weights = first_existing(_meta_path(metas, "init_param"), legacy.get("am_model_name"), "model.pt", "model.pb")
    if weights is None:
        raise ModelDirError(f"{root}: no weights found (expected model.pt, or model.pb in the legacy layout)")
    cmvn = first_existing(_meta_path(metas, "frontend_conf", "cmvn_file"), legacy.get("mvn_file"), "am.mvn")
    tokens = first_existing(_meta_path(metas, "tokenizer_conf", "token_list"), "tokens.json", "tokens.txt")
    return ModelFiles(root, config, weights, cmvn, tokens, configuration)


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


def load_tokenizer(files: ModelFiles, raw_config: dict[str, Any]) -> CharTokenizer:
    """tokens.json / tokens.txt, else the legacy ``token_list`` inside config.yaml."""
    unk = (raw_config.get("tokenizer_conf") or {}).get("unk_symbol", "<unk>")
    if files.tokens is not None:
        return CharTokenizer.from_file(files.tokens, unk)
    token_list = raw_config.get("token_list")
    if isinstance(token_list, list) and token_list:
        return CharTokenizer([str(token) for token in token_list], unk)
    raise ModelDirError(f"{files.root}: no token list (expected tokens.json or tokens.txt)")


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
    raw = read_yaml(files.config)
    tokenizer = load_tokenizer(files, raw)
    config = parse_config(raw, str(files.config), vocab_size=len(tokenizer))
    if files.cmvn is None:
        raise ModelDirError(f"{files.root}: am.mvn not found (the feature normalisation the model was trained with)")
    frontend = Frontend(config.frontend, load_cmvn(files.cmvn))
    if frontend.output_size != config.input_size:
        raise ConfigError(f"{files.config}: input_size {config.input_size} but frontend_conf gives "
                          f"n_mels * lfr_m = {frontend.output_size}")
    with torch.device("meta"):  # no wasted random init: the checkpoint provides every tensor
        model = Paraformer(config, frontend, tokenizer)
    state, mapped = read_state_dict(files.weights, mmap=mmap)
    if not hasattr(model, "ctc"):
        state = {key: value for key, value in state.items() if not key.startswith("ctc.")}
    check_state_dict(model, state, files.weights)
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device=torch_device(device), dtype=dtype).eval()
    # a device or dtype conversion copies the weights out of the map; otherwise they are still views of it
    model.checkpoint_map = mapped if mapped is not None and mapped.holds(next(model.parameters())) else None
    logger.info("loaded %s Paraformer (%.1fM parameters) from %s", "streaming" if config.streaming else "offline",
                model.parameter_count() / 1e6, files.root)
    return model


def atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same directory and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; model files are meant to be shared
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


CONFIGURATION_TEMPLATE = {
    "framework": "pytorch",
    "task": "auto-speech-recognition",
    "model": {"type": "paraformer"},
    "pipeline": {"type": "paraformer-asr"},
    "preprocessor": {"type": "paraformer-audio"},
    "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                        "tokenizer_conf": {"token_list": "tokens.json"}, "frontend_conf": {"cmvn_file": "am.mvn"}},
}


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
