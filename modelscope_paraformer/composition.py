"""FunASR's model-card composition arguments (``vad_model``, ``punc_model`` ...) turned into a Transcriber.

``AutoModel(model=ASR, vad_model="fsmn-vad", punc_model="ct-punc")`` and ModelScope's
``pipeline(task, model=ASR, vad_model=..., punc_model=...)`` take the companion models as hub ids (or FunASR's
short names) or local dirs, with ``*_model_revision`` and ``*_kwargs`` beside them; a hub repo may name them in its
configuration.json (``vad_model`` / ``punc_model`` at the top level), which applies unless the caller passes the
argument (``None`` included: that turns it off). What this package does not implement is refused, never
dropped silently. The pipeline, the CLI and the server share this module.
"""
from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

from .core.composite import Transcriber
from .core.errors import ParaformerError
from .core.model_dir import read_configuration
from .hub import resolve_model_dir

logger = logging.getLogger(__name__)

# companion -> (module, loader), imported only when a companion is named
LOADERS = {"vad": ("modelscope_paraformer.core.fsmn_vad", "load_vad"),
           "punc": ("modelscope_paraformer.core.punctuation", "load_punctuator")}
COMPANIONS = tuple(LOADERS)
COMPANION_OPTIONS = {f"{name}_{suffix}" for name in COMPANIONS for suffix in ("model", "model_revision", "kwargs")}
UNSUPPORTED_MODELS = {"spk_model": "speaker diarisation", "lm_model": "language-model rescoring"}
# FunASR's placement options: meaningless for the companions here, which run where the recogniser runs
IGNORED_COMPANION_KWARGS = ("device", "ncpu", "hub", "disable_update", "disable_pbar", "model_revision")


class CompositionError(ParaformerError, ValueError):
    """A composition argument this package cannot honour."""


def companion_arguments(model_dir: Union[str, os.PathLike, None], options: dict[str, Any]) -> dict[str, Any]:
    """Pop the composition arguments out of ``options``; fill in those the model dir's configuration.json names.

    Raises :class:`CompositionError` for companions this package does not implement (``spk_model``...).
    """
    for name, what in UNSUPPORTED_MODELS.items():
        if options.get(name) is not None:
            raise CompositionError(f"{name}={options[name]!r}: {what} is not implemented by modelscope-paraformer; "
                                   f"leave {name} out (or use funasr's AutoModel for it)")
        options.pop(name, None)
        options.pop(f"{name}_revision", None)
    chosen = {key: options.pop(key) for key in list(options) if key in COMPANION_OPTIONS}
    configuration = read_configuration(Path(model_dir)) if model_dir is not None else {}
    for name in COMPANIONS:
        key = f"{name}_model"
        if key not in chosen and configuration.get(key):
            chosen[key] = configuration[key]
            chosen.setdefault(f"{key}_revision", configuration.get(f"{key}_revision"))
            logger.info("%s names %s=%s: using it", model_dir, key, chosen[key])
    return chosen


def load_companions(arguments: dict[str, Any]) -> tuple[Any, Any]:
    """The VAD and the punctuation model that :func:`companion_arguments` named (``None`` where none)."""
    loaded = []
    for name, (module, loader) in LOADERS.items():
        model = arguments.get(f"{name}_model")
        if model is None:
            loaded.append(None)
            continue
        settings = dict(arguments.get(f"{name}_kwargs") or {})
        for key in IGNORED_COMPANION_KWARGS:
            settings.pop(key, None)
        directory = resolve_model_dir(model, arguments.get(f"{name}_model_revision"))
        loaded.append(getattr(importlib.import_module(module), loader)(directory, **settings))
    return loaded[0], loaded[1]


def build_transcriber(recognizer: Any, model_dir: Union[str, os.PathLike, None] = None,
                      options: Optional[dict[str, Any]] = None) -> Transcriber:
    """A :class:`Transcriber` over ``recognizer`` with the companions named in ``options`` (popped from it) or
    in ``model_dir``'s configuration.json."""
    vad, punctuator = load_companions(companion_arguments(model_dir, options if options is not None else {}))
    return Transcriber(recognizer, vad, punctuator)
