"""One-call recognition: ``transcribe(model, audio)`` for scripts that do not need ModelScope."""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

from .core.audio import iter_inputs
from .core.loading import load_model
from .core.transcript import Transcript
from .hub import resolve_model_dir


def transcribe(model: Union[Any, str, os.PathLike], audio: Any, *, fs: Optional[int] = None,
               keys: Optional[Sequence[str]] = None, batch_size: int = 8, device: str = "cpu",
               model_revision: Optional[str] = None) -> list[Transcript]:
    """Recognise ``audio`` (path, URL, bytes, array, tensor, list, ``wav.scp``) with ``model``.

    ``model`` is a loaded model (:func:`load_model`) or a local dir / hub id, loaded for this call only: load it
    once with :func:`load_model` when transcribing repeatedly.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(resolve_model_dir(model, model_revision), device)
    utterances = list(iter_inputs(audio, fs=fs, keys=keys))
    return model.transcribe([u.samples for u in utterances], [u.key for u in utterances], batch_size)
