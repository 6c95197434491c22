"""Find and validate the files of a model directory (FunASR 1.x, legacy ModelScope, exported ONNX); no torch.

1.x: ``config.yaml``, ``model.pt``, ``am.mvn``, ``tokens.json`` (+ ``configuration.json`` whose
``file_path_metas`` may rename them). Legacy (revisions v1.0.x): ``model.pb``, ``tokens.txt`` or a
``token_list`` inside ``config.yaml``, and a configuration.json with ``model.model_config.mode``. Exported:
the ONNX graphs and ``onnx_manifest.json`` instead of ``model.pt``.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .config import ConfigError, ModelConfig, parse_config, read_yaml
from .errors import ParaformerError
from .frontend import Frontend, load_cmvn
from .tokenizer import CharTokenizer

ONNX_MANIFEST = "onnx_manifest.json"


class ModelDirError(ParaformerError, FileNotFoundError):
    """A model directory is missing a file or holds an unusable one."""


@dataclass
class ModelFiles:
    """Resolved paths of one model directory."""

    root: Path
    config: Path
    weights: Optional[Path]  # None in an exported ONNX dir
    cmvn: Optional[Path]
    tokens: Optional[Path]
    configuration: dict[str, Any]
    onnx_manifest: Optional[Path] = None  # set for a dir written by the ONNX export

    @property
    def is_onnx(self) -> bool:
        return self.onnx_manifest is not None


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
    manifest = first_existing(ONNX_MANIFEST)
    weights = first_existing(_meta_path(metas, "init_param"), legacy.get("am_model_name"), "model.pt", "model.pb")
    if weights is None and manifest is None:
        raise ModelDirError(f"{root}: no weights found (expected model.pt, model.pb in the legacy layout, or the "
                            f"ONNX graphs with {ONNX_MANIFEST} of an exported dir)")
    cmvn = first_existing(_meta_path(metas, "frontend_conf", "cmvn_file"), legacy.get("mvn_file"), "am.mvn")
    tokens = first_existing(_meta_path(metas, "tokenizer_conf", "token_list"), "tokens.json", "tokens.txt")
    return ModelFiles(root, config, weights, cmvn, tokens, configuration, manifest)


def load_tokenizer(files: ModelFiles, raw_config: dict[str, Any]) -> CharTokenizer:
    """tokens.json / tokens.txt, else the legacy ``token_list`` inside config.yaml."""
    unk = (raw_config.get("tokenizer_conf") or {}).get("unk_symbol", "<unk>")
    if files.tokens is not None:
        return CharTokenizer.from_file(files.tokens, unk)
    token_list = raw_config.get("token_list")
    if isinstance(token_list, list) and token_list:
        return CharTokenizer([str(token) for token in token_list], unk)
    raise ModelDirError(f"{files.root}: no token list (expected tokens.json or tokens.txt)")

def read_model_spec(files: ModelFiles) -> tuple[ModelConfig, Frontend, CharTokenizer]:
    """The configuration, frontend (with its CMVN) and tokenizer of a model dir, checked against each other."""
    raw = read_yaml(files.config)
    tokenizer = load_tokenizer(files, raw)
    config = parse_config(raw, str(files.config), vocab_size=len(tokenizer))
    if files.cmvn is None:
        raise ModelDirError(f"{files.root}: am.mvn not found (the feature normalisation the model was trained with)")
    frontend = Frontend(config.frontend, load_cmvn(files.cmvn))
    if frontend.output_size != config.input_size:
        raise ConfigError(f"{files.config}: input_size {config.input_size} but frontend_conf gives "
                          f"n_mels * lfr_m = {frontend.output_size}")
    return config, frontend, tokenizer


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
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
