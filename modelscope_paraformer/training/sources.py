"""Turn every form of ``data_dir`` the ModelScope / Hugging Face ecosystem hands over into training samples.

Accepted forms:

* ``ASRDataset.load(...)``'s dict ``{"train": [{"Audio:FILE", "Text:LABEL"}, ...], "validation": [...],
  "raw_data_dir": dir}``: with ``raw_data_dir`` holding Kaldi subdirs those are read by utterance key (ASRDataset
  pairs wav.scp and text by line position, which mislabels files whose lines are not in the same order);
* a mapping of splits (``MsDataset.load`` of a hub dataset, a ``datasets.DatasetDict``, a plain dict) whose
  values are lists of row dicts, ``datasets.Dataset`` / ``MsDataset`` objects, or paths;
* one split given directly (a list of rows, a ``datasets.Dataset``, an ``MsDataset``);
* a directory with ``train/`` and ``validation/`` (or ``dev/``) Kaldi subdirs, or ``train.jsonl`` beside
  ``validation.jsonl`` / ``dev.jsonl`` / ``val.jsonl``;
* a flat Kaldi dir (``wav.scp`` + ``text``), a FunASR ``.jsonl``, a dir holding ``data.jsonl``.

Rows carry audio as a path (``Audio:FILE``, ``audio``, ``path`` ...), a Hugging Face audio dict
(``{"path", "array", "sampling_rate"}`` or ``{"path", "bytes"}``) or a decoder object; decoded audio is written
once as 16 kHz wav files under ``work_dir/data`` so that training, resuming and DDP ranks read files like any
other. Bad rows are logged with the split and row number and skipped.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from ..core.errors import ParaformerError
from ..core.model_dir import atomic_write
from .data import Sample, read_dataset

logger = logging.getLogger(__name__)

TRAIN_SPLITS = ("train", "training")
VALID_SPLITS = ("validation", "dev", "valid", "val")
AUDIO_COLUMNS = ("Audio:FILE", "audio", "audio_filepath", "audio_path", "path", "wav", "file", "source")
TEXT_COLUMNS = ("Text:LABEL", "text", "sentence", "transcription", "transcript", "normalized_text", "target",
                "label")
KEY_COLUMNS = ("key", "id", "utt", "utt_id", "audio_id", "segment_id")


class DataSourceError(ParaformerError, ValueError):
    """``data_dir`` (or ``valid_dir``) is in no form the trainer reads."""


@dataclass
class DataSplits:
    """Training samples, validation samples (None: hold some out) and how they were found (for the log)."""

    train: list[Sample]
    valid: Optional[list[Sample]]
    description: str


def resolve_data(data: Any, valid: Any = None, work_dir: Optional[Path] = None) -> DataSplits:
    """Read ``data`` (any form above) and, if given, ``valid`` (any single-split form, or a split mapping)."""
    splits = _read_any(data, "data_dir", work_dir)
    if valid is not None:
        extra = _read_any(valid, "valid_dir", work_dir)
        splits = DataSplits(splits.train, extra.valid if extra.valid is not None else extra.train,
                            f"{splits.description}; validation: {extra.description}")
    return splits


def describe(value: Any) -> Optional[str]:
    """A short, JSON-friendly stand-in for a data argument (paths as absolute paths, objects by type and size)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return str(Path(value).resolve()) if Path(value).exists() else str(value)
    if isinstance(value, Mapping):
        raw = value.get("raw_data_dir")
        parts = [f"{name}: {_size(split)}" for name, split in value.items() if name != "raw_data_dir"]
        return f"{type(value).__name__}({', '.join(parts)}{f', raw_data_dir: {raw}' if raw else ''})"
    return f"{type(value).__name__}({_size(value)})"


def fingerprint(samples: Iterable[Sample]) -> str:
    """SHA-256 over keys, audio sources and texts: identifies in-memory data across runs (for resuming)."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(f"{sample.key}\t{sample.source}\t{sample.text}\n".encode())
    return digest.hexdigest()[:16]


def _size(split: Any) -> str:
    try:
        return f"{len(split)} rows"
    except TypeError:
        return "rows"


def _read_any(data: Any, name: str, work_dir: Optional[Path]) -> DataSplits:
    if isinstance(data, (str, os.PathLike)):
        return _read_path(Path(data), name)
    if isinstance(data, Mapping) or _is_split_dict(data):
        return _read_mapping(data, name, work_dir)
    if _is_rows(data):
        return DataSplits(read_rows(data, name, work_dir), None, f"{name} ({describe(data)})")
    raise DataSourceError(f"{name}: cannot read a {type(data).__name__}; pass a Kaldi dir (wav.scp + text), a dir "
                          "with train/ and validation/ Kaldi subdirs, a .jsonl file, ASRDataset.load(...)'s dict, "
                          "MsDataset / datasets splits, or a list of {'audio': path, 'text': ...} rows")


def _is_split_dict(data: Any) -> bool:
    """``datasets.DatasetDict`` and similar: keys() and item access, but not a Mapping subclass."""
    return hasattr(data, "keys") and hasattr(data, "__getitem__") and not _is_rows(data)


def _is_rows(data: Any) -> bool:
    """A sequence or iterable of row dicts: a list, a ``datasets.Dataset``, an ``MsDataset``."""
    if isinstance(data, (str, bytes, Mapping)):
        return False
    return hasattr(data, "to_hf_dataset") or hasattr(data, "column_names") or isinstance(data, (list, tuple))


def _split_dirs(root: Path) -> tuple[Optional[Path], Optional[Path]]:
    """``train`` and ``validation``/``dev`` children of ``root`` holding data (Kaldi dir, data.jsonl, x.jsonl)."""
    def find(names: tuple[str, ...]) -> Optional[Path]:
        for split in names:
            for candidate in (root / split, root / f"{split}.jsonl"):
                if candidate.is_file() or (candidate / "wav.scp").is_file() or (candidate / "feats.scp").is_file() \
                        or (candidate / "data.jsonl").is_file():
                    return candidate
        return None

    return find(TRAIN_SPLITS), find(VALID_SPLITS)


def _read_path(root: Path, name: str) -> DataSplits:
    if root.is_dir():
        train_dir, valid_dir = _split_dirs(root)
        if train_dir is not None:
            valid = read_dataset(valid_dir) if valid_dir is not None else None
            where = f"{train_dir}" + (f" and {valid_dir}" if valid_dir is not None else "")
            return DataSplits(read_dataset(train_dir), valid, where)
    try:
        return DataSplits(read_dataset(root), None, str(root))
    except FileNotFoundError:
        raise DataSourceError(f"{name} {root}: not a Kaldi data dir (wav.scp + text), a .jsonl file, a dir holding "
                              "data.jsonl, nor a dir with train/ and validation/ (or dev/) subdirs of those") from None


def _read_mapping(data: Any, name: str, work_dir: Optional[Path]) -> DataSplits:
    keys = list(data.keys())
    raw = data.get("raw_data_dir") if hasattr(data, "get") else None
    if raw and Path(raw).is_dir():
        train_dir, valid_dir = _split_dirs(Path(raw))
        if train_dir is not None:
            # the files themselves: audio and text paired by key, and errors point to their lines
            logger.info("%s: reading the data dirs under raw_data_dir %s", name, raw)
            return DataSplits(read_dataset(train_dir), read_dataset(valid_dir) if valid_dir else None,
                              f"{train_dir}" + (f" and {valid_dir}" if valid_dir else ""))
    train_name = next((key for key in TRAIN_SPLITS if key in keys), None)
    if train_name is None:
        raise DataSourceError(f"{name}: no 'train' split among {keys}; name the training split 'train' (and the "
                              "validation split 'validation' or 'dev')")
    valid_name = next((key for key in VALID_SPLITS if key in keys), None)
    train = _read_split(data[train_name], f"{name}[{train_name!r}]", work_dir)
    valid = _read_split(data[valid_name], f"{name}[{valid_name!r}]", work_dir) if valid_name else None
    return DataSplits(train, valid, f"{name} splits {train_name!r}" + (f" and {valid_name!r}" if valid_name else ""))


def _read_split(split: Any, where: str, work_dir: Optional[Path]) -> list[Sample]:
    if isinstance(split, (str, os.PathLike)):
        return read_dataset(split)
    if not _is_rows(split):
        raise DataSourceError(f"{where}: expected rows (a list of dicts, a datasets.Dataset or an MsDataset) or a "
                              f"path, got {type(split).__name__}")
    return read_rows(split, where, work_dir)


def _plain_rows(rows: Any) -> Iterable[Mapping[str, Any]]:
    """Rows as dicts; an audio column of Hugging Face ``Audio`` type is read undecoded (path + bytes), which
    needs no audio decoder library and no time."""
    if hasattr(rows, "to_hf_dataset"):  # MsDataset
        try:
            rows = rows.to_hf_dataset()
        except Exception:  # a torch-style MsDataset without an HF dataset inside: iterate it as it is
            logger.debug("MsDataset without an HF dataset: iterating it", exc_info=True)
    features = getattr(rows, "features", None)
    if features is not None and hasattr(rows, "cast_column"):
        for column, feature in dict(features).items():
            if type(feature).__name__ == "Audio" and getattr(feature, "decode", False):
                try:
                    rows = rows.cast_column(column, type(feature)(decode=False))
                except Exception:
                    logger.debug("cannot read %s undecoded", column, exc_info=True)
    return rows


def _column(row: Mapping[str, Any], names: tuple[str, ...]) -> Optional[str]:
    return next((name for name in names if name in row and row[name] is not None), None)


def read_rows(rows: Any, where: str, work_dir: Optional[Path]) -> list[Sample]:
    """Row dicts with an audio and a text column -> samples; rows without either are reported and skipped."""
    samples, seen = [], set()
    for index, row in enumerate(_plain_rows(rows)):
        origin = f"{where}[{index}]"
        if not isinstance(row, Mapping):
            logger.warning("%s: not a row dict (%s); skipped", origin, type(row).__name__)
            continue
        audio_column, text_column = _column(row, AUDIO_COLUMNS), _column(row, TEXT_COLUMNS)
        if audio_column is None or text_column is None:
            logger.warning("%s: no %s column among %s; skipped", origin, "audio" if audio_column is None else "text",
                           sorted(row))
            continue
        key_column = _column(row, KEY_COLUMNS)
        try:
            source, stem = _audio_source(row[audio_column], origin, index, work_dir)
        except (OSError, ValueError, TypeError) as error:
            logger.warning("%s: unusable audio (%s); skipped", origin, error)
            continue
        key = str(row[key_column]) if key_column else stem
        if key in seen:  # keys must be unique: bucketing, the held-out split and reports go by key
            key = f"{key}-{index}"
        seen.add(key)
        samples.append(Sample(key, source, str(row[text_column]).strip(), origin))
    return samples


def _audio_source(audio: Any, origin: str, index: int, work_dir: Optional[Path]) -> tuple[str, str]:
    """A file path for ``audio`` (written under ``work_dir/data`` when it comes decoded) and a key stem."""
    if isinstance(audio, (str, os.PathLike)):
        return str(audio), Path(str(audio)).stem or f"utt{index}"
    if isinstance(audio, Mapping):
        path = audio.get("path")
        if path and Path(path).is_file() and audio.get("array") is None and not audio.get("bytes"):
            return str(path), Path(path).stem
        stem = Path(path).stem if path else f"utt{index}"
        if audio.get("array") is not None:
            rate = audio.get("sampling_rate") or audio.get("sample_rate")
            if not rate:
                raise ValueError("a decoded array without sampling_rate")
            return _write_wav(np.asarray(audio["array"], dtype=np.float32), int(rate), origin, work_dir), stem
        if audio.get("bytes"):
            return _write_wav(audio["bytes"], None, origin, work_dir), stem
        if path:
            return str(path), stem
        raise ValueError("an audio dict with neither path, array nor bytes")
    if hasattr(audio, "get_all_samples"):  # torchcodec AudioDecoder (datasets >= 4 decodes Audio columns with it)
        decoded = audio.get_all_samples()
        samples = decoded.data.mean(0).numpy() if decoded.data.ndim == 2 else decoded.data.numpy()
        return _write_wav(samples.astype(np.float32), int(decoded.sample_rate), origin, work_dir), f"utt{index}"
    if isinstance(audio, (np.ndarray, bytes, bytearray)):
        raise ValueError(f"a bare {type(audio).__name__} has no sample rate; pass {{'array': ..., "
                         "'sampling_rate': ...}")
    raise TypeError(f"audio of type {type(audio).__name__}")


def _write_wav(audio: Any, rate: Optional[int], origin: str, work_dir: Optional[Path]) -> str:
    """16 kHz wav of decoded samples (or of an audio file's bytes), named by content, written once."""
    import soundfile

    from ..core.audio import load_audio

    if work_dir is None:
        raise ValueError("decoded audio needs a work_dir to be written to")
    samples = load_audio(bytes(audio) if isinstance(audio, (bytes, bytearray)) else audio, fs=rate, name=origin)
    digest = hashlib.sha1(samples.tobytes()).hexdigest()[:20]
    path = Path(work_dir) / "data" / f"{digest}.wav"
    if not path.is_file():  # same content, same name: a resumed run or another DDP rank reuses it
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, 16000, format="WAV", subtype="FLOAT")  # lossless: the array as given
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return str(path)
