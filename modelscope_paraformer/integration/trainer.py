"""ModelScope's trainer entry points to :class:`ParaformerTrainer`: ``paraformer-trainer`` and the hub
tutorials' ``Trainers.speech_asr_trainer`` (``speech-asr-trainer``).

The tutorials call ``build_trainer(Trainers.speech_asr_trainer, default_args=dict(model=..., data_dir=ds_dict,
dataset_type=..., work_dir=..., batch_bins=..., max_epoch=..., lr=...))``. modelscope's own class for that name
imports ``funasr.bin.build_trainer``, which FunASR 1.x no longer has, and ``build_from_cfg`` imports that module
before any registry lookup, so registering another class under the name cannot help. Instead, like
:mod:`.routing` for pipelines, ``modelscope.trainers.builder.build_from_cfg`` (the function ``build_trainer``
calls, looked up through the module global at every call) is wrapped: for ``speech-asr-trainer`` with a
Paraformer model it builds ``paraformer-trainer``; for other models it keeps modelscope's trainer where that can
work (FunASR 0.x) and otherwise raises :class:`TrainerRoutingError` naming what to use. This also covers a
``build_trainer`` imported before this package.

The old arguments keep their meaning: ``dataset_type`` "small" (``batch_bins`` in 10 ms fbank frames, the
default) or "large" (``batch_bins`` in milliseconds of audio); ``mate_params`` (extra training options, also
under their old FunASR names); ``model_revision``; ``distributed`` (launch the script with torchrun).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
from typing import Any, Callable, Optional

from modelscope.trainers.base import BaseTrainer
from modelscope.trainers.builder import TRAINERS

from ..core.errors import ParaformerError
from ..training.trainer import ParaformerTrainer, TrainerConfig

logger = logging.getLogger(__name__)
builder = importlib.import_module("modelscope.trainers.builder")  # the module, not the lazy package attribute

TRAINER_NAME = "paraformer-trainer"
ASR_TRAINER = "speech-asr-trainer"  # modelscope.metainfo.Trainers.speech_asr_trainer
IGNORED = {"trust_remote_code", "distributed", "dataset_type", "mate_params", "cfg_file"}
# FunASR 0.x finetune.yaml / mate_params names -> TrainerConfig fields
OLD_NAMES = {"freeze_param": "freeze", "keep_nbest_models": "avg_nbest", "ngpu": None, "num_worker_count": None,
             "dataset_conf": None, "output_dir": None}


class TrainerRoutingError(ParaformerError, ValueError):
    """``speech-asr-trainer`` was asked to train a model this package does not train."""


def _old_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fold ``mate_params`` and ``dataset_type`` into TrainerConfig options (explicit arguments win)."""
    # the old trainer's None (batch_bins=None, lr=None ...) means "the default"
    options = {key: value for key, value in kwargs.items() if value is not None}
    mate = options.pop("mate_params", None) or {}
    if not isinstance(mate, dict):
        raise TypeError(f"mate_params must be a dict of training options, got {type(mate).__name__}")
    fields = {f.name for f in dataclasses.fields(TrainerConfig)}
    for key, value in mate.items():
        if key in ("optim_conf", "scheduler_conf") and isinstance(value, dict):  # FunASR 0.x nesting
            mate_nested = {"lr": value.get("lr"), "warmup_steps": value.get("warmup_steps")}
            for name, nested in mate_nested.items():
                if nested is not None:
                    options.setdefault(name, nested)
            continue
        name = OLD_NAMES.get(key, key)
        if name in fields:
            options.setdefault(name, value)
        else:
            logger.warning("mate_params: %r has no counterpart in paraformer-trainer; ignored", key)
    dataset_type = options.pop("dataset_type", "small") or "small"
    if dataset_type not in ("small", "large"):
        raise ValueError(f"dataset_type must be 'small' or 'large', got {dataset_type!r}")
    if dataset_type == "large" and options.get("batch_bins") is not None:
        # FunASR 0.x: "large" counts batch_bins in milliseconds of audio, "small" in fbank frames (10 ms)
        options["batch_bins"] = max(1, int(options["batch_bins"]) // 10)
    return options


@TRAINERS.register_module(module_name=TRAINER_NAME)
class ParaformerModelScopeTrainer(BaseTrainer):
    """Thin adapter: no configuration file is needed, everything comes from ``default_args``."""

    def __init__(self, model: Optional[str] = None, work_dir: Optional[str] = "./work_dir", data_dir: Any = None,
                 **kwargs: Any):
        # BaseTrainer.__init__ insists on a configuration file; this trainer is configured by arguments only
        if data_dir is None:
            raise ValueError("paraformer-trainer needs data_dir: a Kaldi dir (wav.scp + text), a dir with train/ and "
                             "validation/ subdirs, a jsonl file, ASRDataset.load(...)'s dict or MsDataset splits")
        distributed = kwargs.get("distributed")
        options = _old_options({key: value for key, value in kwargs.items()
                                if key not in IGNORED or key in ("dataset_type", "mate_params")})
        fields = {f.name for f in dataclasses.fields(TrainerConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise TypeError(f"paraformer-trainer: unknown arguments {unknown}; known: {sorted(fields | IGNORED)}")
        if distributed and int(os.environ.get("WORLD_SIZE", "1")) < 2:
            logger.warning("distributed=True but this is a single process: launch the script with "
                           "torchrun --nproc_per_node=N for DDP; training on one process now")
        self.work_dir = work_dir or "./work_dir"
        self.trainer = ParaformerTrainer(TrainerConfig(work_dir=self.work_dir, data_dir=data_dir, model=model,
                                                       **options))

    def train(self, *args: Any, **kwargs: Any):
        """Train; returns the output model directory (loadable by ``pipeline()``)."""
        return self.trainer.train()

    def evaluate(self, checkpoint_path: Optional[str] = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """CER (with S/I/D counts) of the trained model, or of ``checkpoint_path`` (a model dir)."""
        return self.trainer.evaluate(data_dir=kwargs.get("data_dir"), model_dir=checkpoint_path)


def model_kind(model: Any, revision: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """(the local model dir, config.yaml's ``model`` name) of a dir or hub id; (None, None) without a model.

    A hub id is downloaded here (the trainer would download it anyway) so that it is checked once.
    """
    from ..core.config import ConfigError, read_yaml
    from ..core.model_dir import ModelDirError, find_model_files
    from ..hub import resolve_model_dir

    if model is None:
        return None, None
    if not isinstance(model, (str, os.PathLike)):
        raise TrainerRoutingError(f"{ASR_TRAINER}: model must be a model dir or hub id, got {type(model).__name__}")
    local = resolve_model_dir(model, revision)
    try:
        return str(local), read_yaml(find_model_files(local).config).get("model")
    except (ModelDirError, ConfigError):
        return str(local), None


def _funasr_0x() -> bool:
    """True when the installed FunASR still has the 0.x trainer modelscope's class imports."""
    from importlib import metadata

    try:
        return int(metadata.version("funasr").split(".")[0]) < 1
    except (metadata.PackageNotFoundError, ValueError):
        return False


def route(build_from_cfg: Callable) -> Callable:
    """Wrap modelscope's ``build_from_cfg`` so ``speech-asr-trainer`` builds this package's trainer for
    Paraformer models."""
    from ..core.config import OFFLINE_MODELS, STREAMING_MODELS

    @functools.wraps(build_from_cfg)
    def build_paraformer_or_default(cfg, registry, group_key="default", default_args=None):
        if registry is not TRAINERS or not isinstance(cfg, dict) or cfg.get("type") != ASR_TRAINER:
            return build_from_cfg(cfg, registry, group_key=group_key, default_args=default_args)
        args = dict(default_args or {})
        local, kind = model_kind(args.get("model"), args.get("model_revision"))
        if local is None or kind in OFFLINE_MODELS | STREAMING_MODELS:
            if local is not None:
                args["model"] = local  # resolved once: no second hub lookup
            logger.info("%s: %s is a Paraformer, training it with %s", ASR_TRAINER, local, TRAINER_NAME)
            return build_from_cfg(dict(cfg, type=TRAINER_NAME), registry, group_key=group_key, default_args=args)
        if _funasr_0x():
            return build_from_cfg(cfg, registry, group_key=group_key, default_args=default_args)
        raise TrainerRoutingError(
            f"{ASR_TRAINER}: {local} is a {kind or 'non-Paraformer'} model; modelscope_paraformer trains Paraformer "
            f"and Paraformer-streaming models only, and modelscope's own {ASR_TRAINER} needs FunASR 0.x "
            f"(it imports funasr.bin.build_trainer). Fine-tune this model with FunASR 1.x instead: funasr-train "
            f"++model={local} ++train_data_set_list=train.jsonl ++valid_data_set_list=val.jsonl (scp2jsonl "
            f"converts wav.scp + text to jsonl)")

    build_paraformer_or_default.routes_paraformer = True
    return build_paraformer_or_default


if not getattr(builder.build_from_cfg, "routes_paraformer", False):  # a module reload must not wrap twice
    builder.build_from_cfg = route(builder.build_from_cfg)
