"""Fine-tuning and training from scratch, single process or DDP under ``torchrun``.

The result is a complete model directory (configuration.json, config.yaml, model.pt, am.mvn, tokens.json)
that ``load_model`` and ModelScope's ``pipeline()`` load. Checkpoints are written atomically every
``save_interval_steps`` and at each epoch end, so ``kill -9`` loses at most one interval: rerunning the
same command resumes from ``work_dir/checkpoints/last.pt`` at the same batch of the same epoch.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core.checkpoint import load_model, save_model_dir, torch_device
from ..core.chunking import check_chunk_size
from ..core.config import parse_config
from ..core.frontend import Frontend, cmvn_text
from ..core.model import Paraformer
from ..core.model_dir import atomic_write, find_model_files
from ..core.scheduler import StreamingDecoder
from ..core.tokenizer import CharTokenizer
from .data import FeatureDataset, Sample, bucket_batches, iterate_batches, validate
from .export import modern_config
from .lora import DEFAULT_TARGETS, LoraError, apply_lora, freeze, merged_state_dict, trainable_report
from .loss import paraformer_loss
from .metrics import CerReport
from .sources import DataSplits, describe, fingerprint, resolve_data

try:
    import resource  # peak RSS; POSIX only
except ImportError:  # Windows
    resource = None

logger = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """Options of :class:`ParaformerTrainer`; names follow the old ModelScope ASR trainer where they exist."""

    work_dir: str
    data_dir: Any  # a path (Kaldi dir, train/ + validation/ dirs, jsonl), ASRDataset / MsDataset / datasets splits
    model: Optional[str] = None  # base model dir or hub id; None trains ``architecture`` from scratch
    valid_dir: Any = None  # default: data_dir's validation split, else a held-out 2 % of data_dir
    model_revision: Optional[str] = None
    architecture: Optional[dict[str, Any]] = None  # config.yaml mapping for training from scratch
    max_epoch: int = 10
    batch_bins: int = 20000  # max_frames (10 ms) x utterances per batch
    lr: float = 5e-4
    warmup_steps: int = 500
    grad_clip: float = 5.0
    accum_grad: int = 1
    save_interval_steps: int = 200
    avg_nbest: int = 3
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # fp16 / bf16 autocast on GPU; bf16 also on CPU
    num_workers: int = 0
    augment: bool = True
    cache_features: bool = False  # precompute features in memory (no speed perturbation); fast on small CPUs
    sampling_ratio: Optional[float] = None  # None: the model's model_conf.sampling_ratio
    chunk_size: Sequence[int] = (0, 10, 5)
    encoder_chunk_look_back: int = 4
    decoder_chunk_look_back: int = 1
    log_interval: int = 20
    max_steps: Optional[int] = None  # stop early (tests, smoke runs)
    lora_rank: int = 0  # > 0: train rank-r adapters on lora_targets only, merged into the weights on export
    lora_alpha: float = 16.0  # adapter scaling alpha / rank
    lora_dropout: float = 0.05
    lora_targets: Sequence[str] = DEFAULT_TARGETS  # module name patterns (fnmatch) of the Linears to adapt
    freeze: Sequence[str] = ()  # parameter name patterns (fnmatch) kept fixed, e.g. ("encoder.*",)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the options up front (numeric strings accepted), not deep inside the training loop."""
        for name, minimum in (("max_epoch", 1), ("batch_bins", 1), ("accum_grad", 1), ("save_interval_steps", 1),
                              ("log_interval", 1), ("avg_nbest", 0), ("warmup_steps", 0), ("num_workers", 0),
                              ("encoder_chunk_look_back", -1), ("decoder_chunk_look_back", -1)):
            setattr(self, name, _number(name, getattr(self, name), int, minimum))
        if self.max_steps is not None:
            self.max_steps = _number("max_steps", self.max_steps, int, 1)
        for name in ("lr", "grad_clip"):
            setattr(self, name, _number(name, getattr(self, name), float, 0.0))
            if getattr(self, name) == 0.0:
                raise ValueError(f"{name} must be > 0")
        self.lora_rank = _number("lora_rank", self.lora_rank, int, 0)
        self.lora_alpha = _number("lora_alpha", self.lora_alpha, float, 0.0)
        self.lora_dropout = _number("lora_dropout", self.lora_dropout, float, 0.0)
        if self.lora_alpha == 0.0 or self.lora_dropout >= 1.0:
            raise ValueError(f"lora_alpha must be > 0 and lora_dropout < 1, got {self.lora_alpha}, {self.lora_dropout}")
        self.lora_targets, self.freeze = _patterns("lora_targets", self.lora_targets), _patterns("freeze", self.freeze)
        if self.lora_rank and not self.lora_targets:
            raise ValueError("lora_targets is empty: name the Linear modules to adapt, e.g. '*.self_attn.linear_out'")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {self.precision!r}")
        self.chunk_size = check_chunk_size(self.chunk_size, self.encoder_chunk_look_back, self.decoder_chunk_look_back)

    def run_settings(self) -> dict[str, Any]:
        """What a checkpoint in ``work_dir`` must agree with to be resumed (not: epochs, logging, device)."""
        keys = ("model_revision", "architecture", "batch_bins", "lr", "accum_grad", "warmup_steps", "seed", "chunk_size")
        paths = {key: describe(getattr(self, key)) for key in ("data_dir", "valid_dir", "model")}
        # only when used, so that work dirs of runs from before these options still resume
        tuning = {"lora": [self.lora_rank, self.lora_alpha, self.lora_dropout, list(self.lora_targets)]
                  if self.lora_rank else None, "freeze": list(self.freeze) or None}
        return _jsonable({**paths, **{key: getattr(self, key) for key in keys},
                          **{key: value for key, value in tuning.items() if value is not None}})

    def summary(self) -> dict[str, Any]:
        """The options as JSON-friendly values (data objects by description, not copied), for training.json."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(data_dir=describe(self.data_dir), valid_dir=describe(self.valid_dir))
        return _jsonable(values)


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    """Name patterns from a sequence or a comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be name patterns (strings), got {value!r}")
    return tuple(item.strip() for item in value if item.strip())


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    """``value`` as ``kind`` (int or float) and >= ``minimum``, else a ValueError naming the option."""
    try:
        number = kind(value)
        valid = not isinstance(value, bool) and float(number) == float(value)
    except (TypeError, ValueError):
        valid = False
    if not valid or number < minimum:
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {expected} >= {minimum}, got {value!r}")
    return number


def build_vocabulary(samples: Sequence[Sample]) -> CharTokenizer:
    """``<blank> <s> </s>`` + the training characters (sorted) + ``<unk>``, FunASR's token order."""
    chars = sorted({char for sample in samples for char in sample.text.replace(" ", "")})
    return CharTokenizer(["<blank>", "<s>", "</s>", *chars, "<unk>"])


def estimate_cmvn(frontend: Frontend, samples: Sequence[Sample], limit: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Global mean/std of un-normalised LFR features over up to ``limit`` utterances -> (shift, scale)."""
    from ..core.audio import load_audio

    plain = Frontend(frontend.config, None)
    total, squares, count = None, None, 0
    for sample in samples[:limit]:
        features = plain(load_audio(sample.source)).astype(np.float64)
        total = features.sum(0) if total is None else total + features.sum(0)
        squares = (features ** 2).sum(0) if squares is None else squares + (features ** 2).sum(0)
        count += len(features)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-8))
    return (-mean).astype(np.float32), (1.0 / std).astype(np.float32)


class LossModule(nn.Module):
    """Wraps the model so that DistributedDataParallel sees the loss computation as its forward."""

    def __init__(self, model: Paraformer, config: TrainerConfig):
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, features, lengths, targets):
        c = self.config
        return paraformer_loss(self.model, features, lengths, targets, c.sampling_ratio, tuple(c.chunk_size),
                               c.encoder_chunk_look_back, c.decoder_chunk_look_back)


def warmup_lr(step: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` then inverse square-root decay (Noam shape, peak-parameterised)."""
    step = max(step, 1)
    return peak * min(step / max(warmup, 1), math.sqrt(max(warmup, 1) / step))


class ParaformerTrainer:
    """Train or fine-tune a Paraformer; ``train()`` returns the output model dir, ``evaluate()`` the CER."""

    def __init__(self, config: TrainerConfig):
        self.config = config
        self.work_dir = Path(config.work_dir)
        self.checkpoint_dir = self.work_dir / "checkpoints"
        try:  # before the model loads: an unusable work_dir should fail at once
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.checkpoint_dir, os.W_OK):
                raise PermissionError(f"{self.checkpoint_dir} is not writable")
        except OSError as error:
            raise ValueError(f"work_dir {self.work_dir} cannot be used: {error}") from None
        self.rank, self.world_size = self._init_distributed()
        self.device = self._pick_device(config.device)
        self._random_seed(config.seed)
        self.model, self.cmvn_path = self._build_model()
        self._adapt(self.model)
        self.model.to(self.device)

    # ----- setup -------------------------------------------------------------------------------------
    def _init_distributed(self) -> tuple[int, int]:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)

    def _pick_device(self, device: str) -> torch.device:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        resolved = torch_device(device)  # an explicit "cuda" / "gpu" falls back to the CPU when CUDA is unavailable
        if resolved.type == "cuda" and self.world_size > 1:
            resolved = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
            torch.cuda.set_device(resolved)
        return resolved

    @staticmethod
    def _random_seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _build_model(self) -> tuple[Paraformer, Path]:
        """The base model (or a fresh one from ``architecture``) and the am.mvn it normalises with."""
        c = self.config
        self.data: DataSplits = resolve_data(c.data_dir, c.valid_dir, self.work_dir)
        self.train_samples = self.data.train
        logger.info("training data: %s (%d rows%s)", self.data.description, len(self.data.train),
                    f", {len(self.data.valid)} validation rows" if self.data.valid is not None else "")
        if c.model is not None:
            from ..hub import resolve_model_dir

            model_dir = resolve_model_dir(c.model, c.model_revision)
            model = load_model(model_dir)  # keeps the base vocabulary
            cmvn_path = find_model_files(model_dir).cmvn
            if model.config.variant != "paraformer":  # their extra parts have losses of their own, not ported
                logger.warning("%s is a %s Paraformer: fine-tuning trains its encoder, CIF predictor and decoder; "
                               "its timestamp predictor%s stay as loaded", model_dir, model.config.variant,
                               " and hotword parts" if model.config.variant == "seaco" else "")
        else:
            if not c.architecture:
                raise ValueError("training from scratch needs `architecture` (a config.yaml mapping) or `model`")
            raw = copy.deepcopy(c.architecture)
            tokenizer = build_vocabulary(validate(self.train_samples, None))
            config = parse_config(raw, "architecture", vocab_size=len(tokenizer))
            cmvn_path = self.work_dir / "am.mvn"
            if self.rank == 0 and not cmvn_path.is_file():
                text = cmvn_text(*estimate_cmvn(Frontend(config.frontend), self.train_samples))
                atomic_write(cmvn_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
            self._barrier()
            from ..core.frontend import load_cmvn

            model = Paraformer(config, Frontend(config.frontend, load_cmvn(cmvn_path)), tokenizer)
        self.tokenizer = model.tokenizer
        return model, cmvn_path

    def _adapt(self, model: Paraformer) -> None:
        """LoRA adapters and frozen parameters as configured; logs what trains."""
        c = self.config
        if c.lora_rank:
            chosen = apply_lora(model, c.lora_rank, c.lora_alpha, c.lora_targets, c.lora_dropout)
            logger.info("LoRA rank %d, alpha %g on %d Linear modules (%s)", c.lora_rank, c.lora_alpha, len(chosen),
                        ", ".join(c.lora_targets))
        if c.freeze:
            logger.info("frozen: %d parameter tensors matching %s", len(freeze(model, c.freeze)), list(c.freeze))
        self.trainable = trainable_report(model)
        if not self.trainable.trainable:
            raise LoraError(f"nothing left to train: freeze {list(c.freeze)} covers every parameter")
        logger.info("%s", self.trainable)

    def run_settings(self) -> dict[str, Any]:
        """The config's run settings, with in-memory data (row lists, datasets) identified by its content."""
        settings = self.config.run_settings()
        for key, value, samples in (("data_dir", self.config.data_dir, self.data.train),
                                    ("valid_dir", self.config.valid_dir, self.data.valid)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                everything = list(samples or []) + (list(self.data.valid or []) if key == "data_dir" else [])
                settings[key] = f"rows sha256:{fingerprint(everything)}"
        return settings

    def _barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def split_datasets(self) -> tuple[list[Sample], list[Sample]]:
        """Usable training and validation samples (a held-out 2 % of the training data without ``valid_dir``)."""
        c = self.config
        samples = validate(self.train_samples, self.tokenizer)
        if self.data.valid is not None:
            train, valid = samples, validate(self.data.valid, self.tokenizer)
        else:
            shuffled = sorted(samples, key=lambda s: s.key)
            random.Random(c.seed).shuffle(shuffled)
            held_out = max(1, len(shuffled) // 50)
            train, valid = shuffled[held_out:], shuffled[:held_out]
            if self.rank == 0:
                logger.warning("no validation split in %s: holding out %d of %d utterances for validation (pass "
                               "valid_dir, or a 'validation' split, to choose them)", self.data.description,
                               held_out, len(samples))
        for name, kept, source in (("training", train, c.data_dir), ("validation", valid, c.valid_dir or c.data_dir)):
            if not kept:
                raise ValueError(f"no usable {name} utterances in {source} ({len(samples)} of "
                                 f"{len(self.train_samples)} training rows usable; the warnings above say why rows "
                                 "were dropped; without valid_dir at least 2 are needed, one is held out)")
        return train, valid

    # ----- checkpoints -------------------------------------------------------------------------------
    def _save_state(self, path: Path, state: dict[str, Any]) -> None:
        if self.rank == 0:
            atomic_write(path, lambda tmp: torch.save(state, tmp))

    def _load_resume_state(self) -> Optional[dict[str, Any]]:
        """``last.pt`` of an earlier run of these settings in ``work_dir``; a different run is refused."""
        path = self.checkpoint_dir / "last.pt"
        if self.rank == 0:
            for stale in self.checkpoint_dir.glob(".*.pt.*"):  # temporaries of a save that was killed
                stale.unlink(missing_ok=True)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged last.pt must not end the run: start over, keep it aside
            damaged = path.with_name("last.pt.damaged")
            if self.rank == 0:
                path.replace(damaged)
            logger.warning("cannot resume from %s (%s; moved to %s); starting from the beginning", path, error, damaged)
            return None
        before, now = state.get("settings"), self.run_settings()
        if before is not None and before != now:
            changed = ", ".join(f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in {**before, **now}
                                if before.get(key) != now.get(key))
            raise ValueError(f"{self.work_dir} holds a run with other settings ({changed}); use a new work_dir, "
                             f"or delete {self.checkpoint_dir} to start over")
        return state

    # ----- training ----------------------------------------------------------------------------------
    def _autocast(self):
        precision = self.config.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def train(self) -> Path:
        """Run the epochs (resuming if a checkpoint exists); returns the output model directory."""
        c = self.config
        train_samples, valid_samples = self.split_datasets()
        frontend = self.model.frontend
        train_set = FeatureDataset(train_samples, frontend, self.tokenizer, augment=c.augment, seed=c.seed)
        valid_set = FeatureDataset(valid_samples, frontend, self.tokenizer, augment=False)
        lengths = [sample.length or 300 for sample in train_samples]
        module = LossModule(self.model, c)
        wrapped = nn.parallel.DistributedDataParallel(module) if self.world_size > 1 else module
        trainable = [p for p in self.model.parameters() if p.requires_grad]  # LoRA / freeze leave the rest
        optimizer = torch.optim.Adam(trainable, lr=c.lr, betas=(0.9, 0.98), eps=1e-9)
        scaler = torch.amp.GradScaler(enabled=c.precision == "fp16" and self.device.type == "cuda")
        step, start_epoch, skip_batches, scores = 0, 1, 0, {}
        resume = self._load_resume_state()
        if resume is not None:
            try:
                self.model.load_state_dict(resume["model"])
                optimizer.load_state_dict(resume["optimizer"])
            except (RuntimeError, KeyError, ValueError) as error:
                raise ValueError(f"{self.checkpoint_dir / 'last.pt'} does not fit this model (another base model "
                                 f"or architecture?); use a new work_dir: {str(error)[:300]}") from None
            step, start_epoch, skip_batches = resume["step"], resume["epoch"], resume["batches_done"]
            scores = resume.get("scores", {})
            if start_epoch > c.max_epoch:
                logger.warning("%s already holds all %d epochs: exporting its model again, no training (raise "
                               "max_epoch to train on)", self.work_dir, c.max_epoch)
            else:
                logger.warning("resuming at epoch %d, batch %d (step %d) from %s", start_epoch, skip_batches, step,
                               self.checkpoint_dir / "last.pt")
        if c.cache_features and start_epoch <= c.max_epoch:
            train_set.precompute()
            valid_set.precompute()
        for epoch in range(start_epoch, c.max_epoch + 1):
            train_set.epoch = epoch
            batches = bucket_batches(lengths, c.batch_bins, c.seed, epoch)
            usable = len(batches) // self.world_size * self.world_size  # equal work on every rank
            batches = batches[self.rank:usable:self.world_size] if self.world_size > 1 else batches
            self.model.train()
            progress = tqdm(total=len(batches), initial=skip_batches, desc=f"epoch {epoch}",
                            disable=self.rank != 0 or not c.extra.get("progress", True), dynamic_ncols=True)
            running, started, stepped = [], time.time(), 0
            optimizer.zero_grad(set_to_none=True)  # a partial accumulation group of the last epoch is dropped
            for index, batch in enumerate(iterate_batches(train_set, batches[skip_batches:], c.num_workers),
                                          start=skip_batches):
                if batch is None:
                    continue
                features, feature_lengths, targets, _ = batch
                with self._autocast():
                    out = wrapped(features.to(self.device), feature_lengths.to(self.device),
                                  [t.to(self.device) for t in targets])
                scaler.scale(out.loss / c.accum_grad).backward()
                if (index + 1) % c.accum_grad == 0:
                    step += 1
                    for group in optimizer.param_groups:
                        group["lr"] = warmup_lr(step, c.lr, c.warmup_steps)
                    scaler.unscale_(optimizer)
                    norm = nn.utils.clip_grad_norm_(trainable, c.grad_clip)
                    if torch.isfinite(norm):
                        scaler.step(optimizer)
                    else:
                        logger.warning("step %d: non-finite gradient norm; update skipped", step)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                running.append((out.loss.item(), out.accuracy))
                stepped += 1
                progress.update(1)
                if step and step % c.log_interval == 0 and running:
                    loss, acc = np.mean([r[0] for r in running]), np.mean([r[1] for r in running])
                    progress.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                    logger.info("epoch %d step %d loss %.4f acc %.3f", epoch, step, loss, acc)
                    running = []
                if step and step % c.save_interval_steps == 0 and (index + 1) % c.accum_grad == 0:
                    self._save_state(self.checkpoint_dir / "last.pt", self._state(optimizer, step, epoch, index + 1,
                                                                                  scores))
                if c.max_steps and step >= c.max_steps:
                    break
            progress.close()
            skip_batches = 0
            self._record_resources(stepped, time.time() - started)  # before validation and saving add theirs
            valid_loss = self._valid_loss(valid_set)
            scores[str(epoch)] = valid_loss
            logger.info("epoch %d done in %.0f s, valid loss %.4f", epoch, time.time() - started, valid_loss)
            # epoch checkpoints hold merged weights (the base keys): averaging A and B apart would not
            # average the updates B @ A
            self._save_state(self.checkpoint_dir / f"epoch_{epoch}.pt", {"model": merged_state_dict(self.model)})
            self._save_state(self.checkpoint_dir / "last.pt", self._state(optimizer, step, epoch + 1, 0, scores))
            self._barrier()
            if c.max_steps and step >= c.max_steps:
                break
        return self._export(scores)

    def _record_resources(self, batches: int, seconds: float) -> None:
        """Peak memory (process RSS; CUDA allocations on a GPU) and time per batch so far, logged and kept
        for training.json: what sizing a run on a small instance needs."""
        record = {"trainable_parameters": self.trainable.trainable,
                  "total_parameters": self.trainable.total - self.trainable.adapters}
        if resource is not None:
            record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB
        if batches:
            record["seconds_per_batch"] = round(seconds / batches, 3)
        if self.device.type == "cuda":
            record["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        self.resources = {**getattr(self, "resources", {}), **record}
        logger.info("resources: %s", ", ".join(f"{k} {v}" for k, v in self.resources.items()))

    def _cpu_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def _state(self, optimizer, step: int, epoch: int, batches_done: int, scores: dict) -> dict[str, Any]:
        return {"model": self._cpu_state(), "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch,
                "batches_done": batches_done, "scores": dict(scores), "settings": self.run_settings()}

    @torch.no_grad()
    def _valid_loss(self, valid_set: FeatureDataset) -> float:
        self.model.eval()
        lengths = [sample.length or 300 for sample in valid_set.samples]
        total, weight, loss_module = 0.0, 0, LossModule(self.model, self.config)
        for batch in iterate_batches(valid_set, bucket_batches(lengths, self.config.batch_bins, 0, 0, False)):
            if batch is None:
                continue
            features, feature_lengths, targets, _ = batch
            out = loss_module(features.to(self.device), feature_lengths.to(self.device),
                              [t.to(self.device) for t in targets])
            total += out.loss.item() * len(targets)
            weight += len(targets)
        self.model.train()
        return total / max(weight, 1)

    def _export(self, scores: dict[str, float]) -> Path:
        """Average the ``avg_nbest`` epochs with the lowest validation loss into ``work_dir/model``."""
        out = self.work_dir / "model"
        if self.rank == 0:
            best = sorted(scores, key=lambda epoch: scores[epoch])[: max(1, self.config.avg_nbest)]
            paths = [self.checkpoint_dir / f"epoch_{epoch}.pt" for epoch in best]
            states = [state for state in map(self._read_epoch, paths) if state is not None]
            if not states:
                averaged = merged_state_dict(self.model)
            else:
                averaged = {key: (sum(s[key].double() for s in states) / len(states)).to(states[0][key].dtype)
                            if states[0][key].is_floating_point() else states[0][key] for key in states[0]}
            logger.info("averaging epochs %s into %s", ", ".join(best), out)
            save_model_dir(self.model, out, modern_config(self.model.config.raw, self.model.config), self.cmvn_path,
                           averaged)
            atomic_write(out / "training.json", lambda tmp: Path(tmp).write_text(json.dumps(
                {"averaged_epochs": best, "valid_loss": scores, "data": self.data.description,
                 "resources": getattr(self, "resources", {}), "config": self.config.summary()},
                indent=2, ensure_ascii=False)))
        self._barrier()
        return out

    @staticmethod
    def _read_epoch(path: Path) -> Optional[dict[str, torch.Tensor]]:
        """An epoch checkpoint's weights; None (with a warning) if it is missing or unreadable."""
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)["model"]
        except Exception as error:  # damaged by a crash or a full disk: average the others
            logger.warning("skipping %s in the average: cannot read it (%s)", path, error)
            return None

    # ----- evaluation --------------------------------------------------------------------------------
    def evaluate(self, data_dir: Optional[str] = None, model_dir: Optional[str] = None,
                 chunk_size: Sequence[int] = (0, 10, 5)) -> dict[str, Any]:
        """CER of ``model_dir`` (default: the trained output, else the current weights) on ``data_dir`` (any
        form ``data_dir`` takes; its validation split when it has one). Default data: the training data's
        validation split, else all of ``data_dir``."""
        directory = model_dir or (self.work_dir / "model" if (self.work_dir / "model" / "model.pt").is_file() else None)
        model = load_model(directory) if directory else self.model.eval()
        splits = resolve_data(data_dir, None, self.work_dir) if data_dir is not None else self.data
        samples = validate(splits.valid if splits.valid is not None else splits.train, None)
        return evaluate_model(model, samples, chunk_size).as_dict()


def evaluate_model(model: Any, samples: Sequence[Sample], chunk_size: Optional[Sequence[int]] = (0, 10, 5),
                   batch_size: int = 16) -> CerReport:
    """Decode ``samples``, score them and time the decoding (``report.rtf``).

    Streaming models decode chunk by chunk with ``chunk_size``; ``None`` gives every model whole files
    through :meth:`Paraformer.transcribe` (for an online model that is its default chunking).
    """
    from ..core.audio import load_audio

    report = CerReport()
    for start in tqdm(range(0, len(samples), batch_size), desc="decoding", leave=False):
        batch = samples[start:start + batch_size]
        audio = [load_audio(sample.source) for sample in batch]
        began = time.perf_counter()
        if model.streaming and chunk_size is not None:
            results = [StreamingDecoder(model, chunk_size).decode_all(a, s.key) for a, s in zip(audio, batch)]
        else:
            results = model.transcribe(audio, [s.key for s in batch], batch_size=batch_size)
        report.compute_seconds += time.perf_counter() - began
        report.audio_seconds += sum(len(a) for a in audio) / 16000
        for sample, result in zip(batch, results):
            report.add(sample.key, sample.text, result.text)
    return report


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
