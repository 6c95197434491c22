"""Decode any supported audio input to 16 kHz mono float32 in [-1, 1].

Inputs: a path, an http(s) URL, bytes (an audio file's, or headerless 16-bit PCM as FunASR and websocket
clients send), a numpy array or torch tensor (1-D, or (samples, channels)), a Kaldi ``ark:``/``.ark:offset``
specifier (read with kaldiio), and lists and ``wav.scp`` files of those. Every failure becomes an
:class:`AudioError` that names the input.
"""
from __future__ import annotations

import io
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from .errors import ParaformerError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AudioInput = Any  # str | os.PathLike | bytes | np.ndarray | torch.Tensor (torch is not imported here)


class AudioError(ParaformerError, ValueError):
    """Raised for audio that cannot be decoded or is not a waveform."""


@dataclass
class Utterance:
    """One decoded input: its key and 16 kHz mono float32 samples."""

    key: str
    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE  # other rates only from iter_inputs(..., resample_to_16k=False)


def check_rate(sample_rate: Any, name: str = "fs") -> int:
    """A sample rate as a positive int (numeric strings accepted), else :class:`AudioError`."""
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError):
        rate = 0
    if rate <= 0 or rate != float(sample_rate):
        raise AudioError(f"{name} must be a positive sample rate in Hz, got {sample_rate!r}")
    return rate


def as_numpy(audio: Any) -> Any:
    """A torch tensor (any device or float dtype, bfloat16 included) as a numpy array; anything else as is."""
    if hasattr(audio, "detach") and hasattr(audio, "cpu"):  # torch.Tensor without importing torch here
        tensor = audio.detach().cpu()
        return (tensor.float() if str(tensor.dtype) == "torch.bfloat16" else tensor).numpy()
    return audio


def to_float32(samples: np.ndarray, name: str = "array") -> np.ndarray:
    """Scale integer PCM to [-1, 1] float32 and mix (samples, channels) down to mono."""
    samples = np.asarray(samples)
    if samples.dtype.kind in "iu" and samples.dtype.itemsize == 8:
        raise AudioError(f"{name}: {samples.dtype} samples are no PCM format (their full scale would make any "
                         "speech silent); pass int16 / int32 PCM or float in [-1, 1], e.g. samples.astype(np.int16)")
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
        if samples.shape[1] > 8:
            raise AudioError(f"{name}: shape {samples.shape} is not (samples, channels) nor (channels, samples) "
                             "with up to 8 channels; pass one 1-D waveform, or a list of them for a batch")
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D waveform or (samples, channels), got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{name}: waveform contains NaN or infinite values")
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, sample_rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample to ``target`` Hz (librosa's soxr backend); a no-op when rates match."""
    sample_rate = check_rate(sample_rate, "sample rate")
    if sample_rate == target or samples.size == 0:
        return samples
    import librosa  # imported lazily: it costs ~0.5 s and most inputs are already 16 kHz

    return librosa.resample(samples, orig_sr=sample_rate, target_sr=target, res_type="soxr_hq").astype(np.float32)


class StreamResampler:
    """Resample one stream to 16 kHz chunk by chunk with a single soxr state (the same HQ filter as whole
    files get), so that chunk edges leave no trace; the rate must not change until ``last=True``."""

    def __init__(self, sample_rate: int):
        import soxr  # librosa's own resampling backend

        self.sample_rate = check_rate(sample_rate, "sample rate")
        self._stream = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, samples: np.ndarray, sample_rate: int, last: bool = False) -> np.ndarray:
        if sample_rate != self.sample_rate:
            raise AudioError(f"sample rate changed from {self.sample_rate} to {sample_rate} Hz within one stream; "
                             "finish the utterance (is_final=True) before changing it")
        return self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.float32), last=last)


# magic bytes of audio containers: bytes that start so but do not decode are a damaged file, not PCM
_CONTAINER_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM", b"caff", b".snd", b"\x1aE\xdf\xa3")


def _decode_bytes(data: bytes, fs: Optional[int], name: str) -> tuple[np.ndarray, int]:
    """An audio file's bytes, or else headerless 16-bit little-endian PCM at ``fs`` (FunASR's reading of bytes,
    what websocket clients stream)."""
    if not data:
        return np.zeros(0, np.float32), fs or SAMPLE_RATE
    try:
        return _decode_file_bytes(data, name)
    except AudioError:
        if data.startswith(_CONTAINER_MAGIC) or data[4:8] == b"ftyp":
            raise
    if len(data) % 2:
        raise AudioError(f"{name}: {len(data)} bytes are neither an audio file nor 16-bit PCM (odd length)")
    logger.debug("%s: no audio file header, read as 16-bit PCM at %d Hz", name, fs or SAMPLE_RATE)
    return np.frombuffer(data, dtype="<i2"), fs or SAMPLE_RATE


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

    try:
        value = kaldiio.load_mat(spec[4:] if spec.startswith("ark:") else spec)
    except Exception as error:  # kaldiio raises OSError, ValueError, KeyError... for a bad spec or ark
        raise AudioError(f"{spec}: cannot read this Kaldi ark entry ({type(error).__name__}: {error})") from None
    if isinstance(value, tuple):  # wav ark entries come back as (rate, samples)
        sample_rate, samples = value
        return np.asarray(samples), int(sample_rate)
    raise AudioError(f"{spec}: holds a feature matrix, not a waveform")


def decode_audio(audio: AudioInput, fs: Optional[int] = None, name: Optional[str] = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples of one input at its own sample rate, and that rate.

    ``fs`` is the sample rate of a raw array, tensor or headerless PCM (default 16000); files carry their own.
    """
    name = name or (str(audio) if isinstance(audio, (str, os.PathLike)) else type(audio).__name__)
    fs = None if fs is None else check_rate(fs)
    audio = as_numpy(audio)
    if isinstance(audio, np.ndarray):
        return to_float32(audio, name), fs or SAMPLE_RATE
    if isinstance(audio, (bytes, bytearray, memoryview)):
        samples, sample_rate = _decode_bytes(bytes(audio), fs, name)
    elif isinstance(audio, (str, os.PathLike)):
        spec = str(audio)
        if spec.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(spec, timeout=60) as response:  # noqa: S310 (explicit user URL)
                    data = response.read()
            except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
                raise AudioError(f"{spec}: cannot download ({error})") from None
            samples, sample_rate = _decode_bytes(data, fs, spec)
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
    return to_float32(samples, name), sample_rate


def load_audio(audio: AudioInput, fs: Optional[int] = None, name: Optional[str] = None) -> np.ndarray:
    """Return 16 kHz mono float32 samples for one input (see :func:`decode_audio`)."""
    return resample(*decode_audio(audio, fs, name))


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


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".wma", ".aiff", ".aif", ".pcm")


def _directory_entries(directory: Path) -> list[tuple[str, Path]]:
    """Every audio file below ``directory`` (sorted), keyed by its path relative to it without the suffix."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise AudioError(f"{directory}: no audio files in this directory (looked for {', '.join(AUDIO_SUFFIXES)})")
    return [(path.relative_to(directory).with_suffix("").as_posix(), path) for path in files]


def list_inputs(audio: Any, keys: Optional[Sequence[str]] = None) -> list[tuple[str, Any]]:
    """(key, input) pairs, nothing decoded yet: ``wav.scp`` files expand to their entries and directories to
    every audio file in them (as the pre-1.x pipeline's ``audio_in=<dir>``), each under its own key."""
    items = list(audio) if isinstance(audio, (list, tuple)) else [audio]
    if keys is not None and len(keys) != len(items):
        raise AudioError(f"got {len(keys)} key(s) for {len(items)} input(s): give one key per input")
    entries: list[tuple[str, Any]] = []
    for index, item in enumerate(items):
        if _is_scp(item):  # its entries, under their own keys
            entries += read_scp(item)
        elif isinstance(item, (str, os.PathLike)) and os.path.isdir(item):
            entries += _directory_entries(Path(item))
        elif keys is not None:
            entries.append((keys[index], item))
        elif isinstance(item, (str, os.PathLike)) and not str(item).startswith("ark:"):
            entries.append((Path(str(item)).stem or f"utt{index}", item))
        else:
            entries.append((f"utt{index}" if len(items) > 1 else "utt", item))
    return entries


def read_utterance(key: str, item: Any, fs: Optional[int] = None, resample_to_16k: bool = True) -> Utterance:
    """Decode one input of :func:`list_inputs` (at 16 kHz, or at its own rate without ``resample_to_16k``)."""
    # entries of a wav.scp or a directory are named by key and path in errors; a plain file by its path
    path_input = isinstance(item, (str, os.PathLike))
    name = f"{key} ({item})" if path_input and Path(str(item)).stem != key else None
    samples, rate = decode_audio(item, fs, name)
    if resample_to_16k:
        return Utterance(key, resample(samples, rate), SAMPLE_RATE)
    return Utterance(key, samples, rate)


def iter_inputs(audio: Any, fs: Optional[int] = None, keys: Optional[Sequence[str]] = None,
                resample_to_16k: bool = True) -> Iterator[Utterance]:
    """Yield :class:`Utterance` for one input or a list of inputs (``wav.scp`` files and directories among them
    expand to their entries); at 16 kHz, or at each input's own rate without ``resample_to_16k`` (a stream
    resamples statefully itself)."""
    for key, item in list_inputs(audio, keys):
        yield read_utterance(key, item, fs, resample_to_16k)
