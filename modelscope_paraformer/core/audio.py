"""Decode any supported audio input to 16 kHz mono float32 in [-1, 1].

Inputs: a path, an http(s) URL, raw bytes of an audio file, a numpy array or torch tensor (1-D, or
(samples, channels)), a Kaldi ``ark:``/``.ark:offset`` specifier (read with kaldiio), and lists and
``wav.scp`` files of those. Every failure becomes an :class:`AudioError` that names the input.
"""
from __future__ import annotations

import io
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AudioInput = Any  # str | os.PathLike | bytes | np.ndarray | torch.Tensor (torch is not imported here)


class AudioError(ValueError):
    """Raised for audio that cannot be decoded or is not a waveform."""


@dataclass
class Utterance:
    """One decoded input: its key and 16 kHz mono float32 samples."""

    key: str
    samples: np.ndarray


def to_float32(samples: np.ndarray, name: str = "array") -> np.ndarray:
    """Scale integer PCM to [-1, 1] float32 and mix (samples, channels) down to mono."""
    samples = np.asarray(samples)
    if samples.dtype.kind in "iu":
        if samples.dtype == np.uint8:  # 8-bit PCM is unsigned with 128 as silence
            samples = (samples.astype(np.float32) - 128.0) / 128.0
        else:
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    elif samples.dtype.kind == "f":
        samples = samples.astype(np.float32, copy=False)
    elif samples.dtype == np.bool_ or samples.dtype.kind in "OSUV":
        raise AudioError(f"{name}: dtype {samples.dtype} is not audio")
    if samples.ndim == 2:
        # (samples, channels) is the soundfile convention; accept (channels, samples) when obvious.
        if samples.shape[0] < samples.shape[1] and samples.shape[0] <= 8:
            samples = samples.T
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D waveform or (samples, channels), got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{name}: waveform contains NaN or infinite values")
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, sample_rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample to ``target`` Hz (librosa's soxr backend); a no-op when rates match."""
    if sample_rate == target or samples.size == 0:
        return samples
    if sample_rate <= 0:
        raise AudioError(f"invalid sample rate {sample_rate}")
    import librosa  # imported lazily: it costs ~0.5 s and most inputs are already 16 kHz

    return librosa.resample(samples, orig_sr=sample_rate, target_sr=target, res_type="soxr_hq").astype(np.float32)


def _decode_file_bytes(data: Union[bytes, str, os.PathLike], name: str) -> tuple[np.ndarray, int]:
    import soundfile

    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    try:
        samples, sample_rate = soundfile.read(source, dtype="float32", always_2d=False)
    except Exception as soundfile_error:  # soundfile raises several types; fall back to librosa (mp3, m4a, ...)
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():  # librosa warns on its audioread fallback path; we report instead
                warnings.simplefilter("ignore")
                samples, sample_rate = librosa.load(io.BytesIO(data) if isinstance(data, bytes) else str(data),
                                                    sr=None, mono=False)
            samples = samples.T if samples.ndim == 2 else samples
        except Exception:
            raise AudioError(f"{name}: not a readable audio file ({soundfile_error})") from None
    return samples, int(sample_rate)


def _read_kaldi(spec: str) -> tuple[np.ndarray, int]:
    import kaldiio

    value = kaldiio.load_mat(spec[4:] if spec.startswith("ark:") else spec)
    if isinstance(value, tuple):  # wav ark entries come back as (rate, samples)
        sample_rate, samples = value
        return np.asarray(samples), int(sample_rate)
    raise AudioError(f"{spec}: holds a feature matrix, not a waveform")


def load_audio(audio: AudioInput, fs: int | None = None, name: str | None = None) -> np.ndarray:
    """Return 16 kHz mono float32 samples for one input.

    ``fs`` is the sample rate of a raw array or tensor (default 16000); files carry their own.
    """
    name = name or (str(audio) if isinstance(audio, (str, os.PathLike)) else type(audio).__name__)
    if hasattr(audio, "detach") and hasattr(audio, "cpu"):  # torch.Tensor without importing torch here
        audio = audio.detach().cpu().numpy()
    if isinstance(audio, np.ndarray):
        return resample(to_float32(audio, name), fs or SAMPLE_RATE)
    if isinstance(audio, (bytes, bytearray)):
        if len(audio) == 0:
            raise AudioError("empty bytes input")
        samples, sample_rate = _decode_file_bytes(bytes(audio), name)
    elif isinstance(audio, (str, os.PathLike)):
        spec = str(audio)
        if spec.startswith(("http://", "https://")):
            with urllib.request.urlopen(spec, timeout=60) as response:  # noqa: S310 (explicit user URL)
                samples, sample_rate = _decode_file_bytes(response.read(), spec)
        elif spec.startswith("ark:") or (".ark:" in spec and not os.path.exists(spec)):
            samples, sample_rate = _read_kaldi(spec)
        else:
            path = Path(spec).expanduser()
            if not path.is_file():
                raise AudioError(f"audio file not found: {spec}")
            if path.stat().st_size == 0:
                raise AudioError(f"{spec}: file is empty")
            samples, sample_rate = _decode_file_bytes(path, spec)
    else:
        raise AudioError(f"unsupported audio input of type {type(audio).__name__}")
    return resample(to_float32(samples, name), sample_rate)


def read_scp(path: Union[str, os.PathLike]) -> list[tuple[str, str]]:
    """Read a Kaldi ``wav.scp`` (``key path`` per line); blank lines are skipped."""
    entries = []
    with open(path, encoding="utf-8") as scp:
        for line_number, line in enumerate(scp, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise AudioError(f"{path}:{line_number}: expected 'key path', got {line!r}")
            entries.append((parts[0], parts[1]))
    return entries


def _is_scp(spec: Any) -> bool:
    return isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".scp") and not str(spec).startswith("ark:")


def iter_inputs(audio: Any, fs: int | None = None, keys: Sequence[str] | None = None) -> Iterator[Utterance]:
    """Yield :class:`Utterance` for one input, a list of inputs, or a ``wav.scp`` file."""
    if _is_scp(audio):
        for key, spec in read_scp(audio):
            yield Utterance(key, load_audio(spec, name=f"{key} ({spec})"))
        return
    items = list(audio) if isinstance(audio, (list, tuple)) else [audio]
    for index, item in enumerate(items):
        if keys is not None:
            key = keys[index]
        elif isinstance(item, (str, os.PathLike)) and not str(item).startswith("ark:"):
            key = Path(str(item)).stem or f"utt{index}"
        else:
            key = f"utt{index}" if len(items) > 1 else "utt"
        yield Utterance(key, load_audio(item, fs=fs))
