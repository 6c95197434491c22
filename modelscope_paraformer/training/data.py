"""Training data: Kaldi dirs / FunASR jsonl / Kaldi ark features, validation, augmentation, length-bucketed batches.

Bad rows (missing audio, empty text, characters outside the vocabulary, unreadable audio) are logged with
their file and line number and skipped: a long run never dies on one bad utterance.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ..core.audio import AudioError, load_audio
from ..core.frontend import Frontend
from ..core.tokenizer import CharTokenizer

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """One training utterance: where its audio (or features) is, its text, and where it was listed."""

    key: str
    source: str
    text: str
    origin: str
    length: int = 0  # approximate length in 10 ms frames, for bucketing


def _read_key_value(path: Path) -> list[tuple[int, str, str]]:
    rows = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if parts:
                rows.append((number, parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return rows


def read_kaldi_dir(data_dir: str | Path) -> list[Sample]:
    """``wav.scp`` (or ``feats.scp``) + ``text``; ``utt2num_frames``/``source_len`` are not required."""
    data_dir = Path(data_dir)
    scp = data_dir / "wav.scp" if (data_dir / "wav.scp").is_file() else data_dir / "feats.scp"
    if not scp.is_file() or not (data_dir / "text").is_file():
        raise FileNotFoundError(f"{data_dir}: expected wav.scp (or feats.scp) and text")
    texts = {key: (number, text) for number, key, text in _read_key_value(data_dir / "text")}
    samples = []
    for number, key, source in _read_key_value(scp):
        if key not in texts:
            logger.warning("%s:%d: %s has no transcript in text; skipped", scp, number, key)
            continue
        text_line, text = texts[key]
        samples.append(Sample(key, source, text, f"{data_dir / 'text'}:{text_line}"))
    return samples


def read_jsonl(path: str | Path) -> list[Sample]:
    """FunASR jsonl rows ``{"key", "source", "target", "source_len"?}``."""
    samples = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                samples.append(Sample(str(row["key"]), str(row["source"]), str(row["target"]), f"{path}:{number}",
                                      int(row.get("source_len") or 0)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                logger.warning("%s:%d: bad jsonl row (%s); skipped", path, number, error)
    return samples


def read_dataset(source: str | Path) -> list[Sample]:
    """A Kaldi data dir, a ``.jsonl`` file, or a dir holding ``data.jsonl``."""
    source = Path(source)
    if source.is_file():
        return read_jsonl(source)
    if (source / "wav.scp").is_file() or (source / "feats.scp").is_file():
        return read_kaldi_dir(source)
    if (source / "data.jsonl").is_file():
        return read_jsonl(source / "data.jsonl")
    raise FileNotFoundError(f"{source}: not a Kaldi data dir (wav.scp + text) or a jsonl file")


def validate(samples: Sequence[Sample], tokenizer: Optional[CharTokenizer]) -> list[Sample]:
    """Drop rows with empty text, unknown characters or a missing audio file, logging each with its line."""
    kept = []
    for sample in samples:
        text = sample.text.replace(" ", "")
        if not text:
            logger.warning("%s: %s has an empty transcript; skipped", sample.origin, sample.key)
            continue
        unknown = tokenizer.unknown_chars(text) if tokenizer is not None else set()
        if unknown:
            logger.warning("%s: %s has characters outside the vocabulary %s; skipped", sample.origin, sample.key,
                           "".join(sorted(unknown)))
            continue
        is_ark = ".ark:" in sample.source or sample.source.startswith("ark:")
        if not is_ark and not sample.source.startswith(("http://", "https://")) and not Path(sample.source).is_file():
            logger.warning("%s: %s: audio file %s not found; skipped", sample.origin, sample.key, sample.source)
            continue
        if not sample.length and not is_ark:
            try:
                import soundfile

                info = soundfile.info(sample.source)
                sample.length = int(info.frames / info.samplerate * 100)
            except Exception:  # unreadable here means unreadable later: report it once, now
                logger.warning("%s: %s: unreadable audio %s; skipped", sample.origin, sample.key, sample.source)
                continue
        kept.append(sample)
    if len(kept) < len(samples):
        logger.warning("kept %d of %d utterances", len(kept), len(samples))
    return kept


def spec_augment(features: torch.Tensor, rng: random.Random, n_mels: int = 80, freq_width: int = 20,
                 time_width: int = 6, time_masks: int = 2) -> torch.Tensor:
    """SpecAugment on LFR features (frames, n_mels * lfr_m): one mel band masked in every stacked frame, plus
    ``time_masks`` runs of LFR frames."""
    features = features.clone()
    frames, dim = features.shape
    stacked = features.view(frames, dim // n_mels, n_mels)
    width = rng.randint(0, freq_width)
    start = rng.randint(0, n_mels - width)
    stacked[:, :, start:start + width] = 0.0
    for _ in range(time_masks):
        width = rng.randint(0, min(time_width, max(frames // 5, 0)))
        start = rng.randint(0, max(frames - width, 0))
        features[start:start + width] = 0.0
    return features


def speed_perturb(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch moves too, like sox speed): resample and keep 16 kHz."""
    if factor == 1.0:
        return samples
    import librosa

    return librosa.resample(samples, orig_sr=int(16000 * factor), target_sr=16000, res_type="soxr_mq")


class FeatureDataset(torch.utils.data.Dataset):
    """Samples -> (LFR features, token ids); audio augmentation per item, deterministic per (seed, epoch, index)."""

    def __init__(self, samples: Sequence[Sample], frontend: Frontend, tokenizer: CharTokenizer,
                 augment: bool = False, seed: int = 0, speeds: Sequence[float] = (0.9, 1.0, 1.1)):
        self.samples = list(samples)
        self.frontend = frontend
        self.tokenizer = tokenizer
        self.augment = augment
        self.seed = seed
        self.speeds = tuple(speeds)
        self.epoch = 0
        self.cache: Optional[list[Optional[torch.Tensor]]] = None

    def precompute(self) -> None:
        """Compute every utterance's features once and keep them (fp16) in memory.

        Trades speed perturbation for speed: on a small CPU box feature extraction and resampling would
        otherwise cost as much as the model. SpecAugment still varies per epoch.
        """
        from tqdm import tqdm

        self.cache = []
        for sample in tqdm(self.samples, desc="features", leave=False):
            try:
                self.cache.append(self.features(sample, None).half())
            except (AudioError, OSError, ValueError) as error:
                logger.warning("%s: %s: %s; skipped", sample.origin, sample.key, error)
                self.cache.append(None)

    def __len__(self) -> int:
        return len(self.samples)

    def features(self, sample: Sample, rng: Optional[random.Random]) -> torch.Tensor:
        """LFR + CMVN features; Kaldi ark fbank (80-dim) is stacked here, 560-dim arks are used as they are."""
        if ".ark:" in sample.source or sample.source.startswith("ark:"):
            import kaldiio

            # np.array copies: kaldiio may hand back a read-only memory map
            matrix = np.array(kaldiio.load_mat(sample.source.removeprefix("ark:")), dtype=np.float32)
            if matrix.ndim == 2 and matrix.shape[1] == self.frontend.output_size:
                return torch.from_numpy(matrix)
            if matrix.ndim == 2 and matrix.shape[1] == self.frontend.config.n_mels:
                outputs = -(-len(matrix) // self.frontend.config.lfr_n)
                return torch.from_numpy(self.frontend.normalize(self.frontend.lfr(self.frontend.left_pad(matrix),
                                                                                  outputs)))
            raise AudioError(f"{sample.source}: feature matrix of shape {matrix.shape} fits neither fbank nor LFR")
        samples = load_audio(sample.source)
        if rng is not None and self.speeds:
            samples = speed_perturb(samples, rng.choice(self.speeds))
        return torch.from_numpy(self.frontend(samples))

    def __getitem__(self, index: int) -> Optional[tuple[torch.Tensor, torch.Tensor, str]]:
        sample = self.samples[index]
        rng = random.Random(hash((self.seed, self.epoch, index))) if self.augment else None
        if self.cache is not None:
            features = self.cache[index].float() if self.cache[index] is not None else None
            if features is None:
                return None
        else:
            try:
                features = self.features(sample, rng)
            except (AudioError, OSError, ValueError) as error:
                logger.warning("%s: %s: %s; skipped", sample.origin, sample.key, error)
                return None
        if len(features) == 0:
            logger.warning("%s: %s: audio shorter than one frame; skipped", sample.origin, sample.key)
            return None
        if rng is not None:
            features = spec_augment(features, rng, self.frontend.config.n_mels)
        ids = torch.tensor(self.tokenizer.encode(sample.text), dtype=torch.long)
        return features, ids, sample.key


def collate(items: Sequence[Optional[tuple[torch.Tensor, torch.Tensor, str]]]):
    """Pad a batch; items that failed to load (None) are dropped."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    features = torch.nn.utils.rnn.pad_sequence([item[0] for item in items], batch_first=True)
    lengths = torch.tensor([len(item[0]) for item in items], dtype=torch.long)
    return features, lengths, [item[1] for item in items], [item[2] for item in items]


def bucket_batches(lengths: Sequence[int], batch_bins: int, seed: int, epoch: int, shuffle: bool = True
                   ) -> list[list[int]]:
    """Group indices of similar length so that ``max_length * batch_size <= batch_bins`` (10 ms frames)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current, longest = [], [], 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        if current and longest_if_added * (len(current) + 1) > batch_bins:
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    if shuffle:
        random.Random(seed * 100003 + epoch).shuffle(batches)
    return batches


def iterate_batches(dataset: FeatureDataset, batches: list[list[int]], num_workers: int = 0) -> Iterator:
    """Load batches (in worker processes when ``num_workers`` > 0), keeping their order."""
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                         num_workers=num_workers, persistent_workers=False)
    yield from loader
