"""Turn a ``model`` argument into a local model directory: a path is used as is, a hub id is downloaded."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

from .core import ModelDirError

logger = logging.getLogger(__name__)

# FunASR's short model names (its ModelScope name map) for the models this package runs
FUNASR_NAMES = {
    "paraformer": "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
    "paraformer-zh": "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
    "paraformer-zh-streaming": "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online",
    "paraformer-en": "iic/speech_paraformer-large-vad-punc_asr_nat-en-16k-common-vocab10020",
    "fsmn-vad": "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch",
    "ct-punc": "iic/punc_ct-transformer_cn-en-common-vocab471067-large",
    "ct-punc-c": "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch",
}


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``owner/name``; anything else that is missing locally is a mistyped path, not a hub id."""
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or "\\" in model


def resolve_model_dir(model: Union[str, os.PathLike], model_revision: Optional[str] = None) -> Path:
    """Return the local directory of ``model``: an existing directory (never touches the network) or a hub id
    (FunASR's short names such as ``fsmn-vad`` or ``ct-punc`` included).

    A hub id is fetched with ``modelscope.snapshot_download(model, revision=model_revision)`` (modelscope is
    imported only then); a missing path or a failed download raises :class:`ModelDirError`.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    name = FUNASR_NAMES.get(str(model), str(model))
    if _looks_like_path(name):
        raise ModelDirError(f"model directory not found: {name}")
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        raise ModelDirError(f"{name!r} is not a local directory, and modelscope (needed to download it from the "
                            "hub) is not installed: pip install modelscope") from None
    logger.info("%s is not a local directory: downloading it from the ModelScope hub (revision %s)",
                name, model_revision or "default")
    try:
        return Path(snapshot_download(name, revision=model_revision))
    except Exception as error:  # the hub client raises many types (HTTPError, ConnectionError, NotExistError ...)
        raise ModelDirError(f"{name!r} does not exist as a local directory and could not be downloaded from the "
                            f"ModelScope hub (revision {model_revision or 'default'}): "
                            f"{type(error).__name__}: {error}") from error
