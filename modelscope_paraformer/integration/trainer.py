"""``build_trainer("paraformer-trainer", default_args=...)``: ModelScope's entry to :class:`ParaformerTrainer`.

Accepts the old ModelScope ASR trainer's arguments (model, work_dir, data_dir, model_revision, batch_bins,
max_epoch, lr, distributed, dataset_type, mate_params) plus any :class:`TrainerConfig` field.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional

from modelscope.trainers.base import BaseTrainer
from modelscope.trainers.builder import TRAINERS

from ..training.trainer import ParaformerTrainer, TrainerConfig

logger = logging.getLogger(__name__)

IGNORED = {"trust_remote_code", "distributed", "dataset_type", "mate_params", "cfg_file"}


@TRAINERS.register_module(module_name="paraformer-trainer")
class ParaformerModelScopeTrainer(BaseTrainer):
    """Thin adapter: no configuration file is needed, everything comes from ``default_args``."""

    def __init__(self, model: Optional[str] = None, work_dir: str = "./work_dir", data_dir: Optional[str] = None,
                 **kwargs: Any):
        # BaseTrainer.__init__ insists on a configuration file; this trainer is configured by arguments only
        if data_dir is None:
            raise ValueError("paraformer-trainer needs data_dir (a Kaldi dir with wav.scp + text, or a jsonl file)")
        fields = {f.name for f in dataclasses.fields(TrainerConfig)}
        options = {key: value for key, value in kwargs.items() if key in fields}
        unknown = sorted(set(kwargs) - fields - IGNORED)
        if unknown:
            raise TypeError(f"paraformer-trainer: unknown arguments {unknown}; known: {sorted(fields)}")
        if kwargs.get("distributed"):
            logger.info("distributed training: launch this script with torchrun --nproc_per_node=N")
        self.work_dir = work_dir
        self.trainer = ParaformerTrainer(TrainerConfig(work_dir=work_dir, data_dir=data_dir, model=model, **options))

    def train(self, *args: Any, **kwargs: Any):
        """Train; returns the output model directory (loadable by ``pipeline()``)."""
        return self.trainer.train()

    def evaluate(self, checkpoint_path: Optional[str] = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """CER (with S/I/D counts) of the trained model, or of ``checkpoint_path`` (a model dir)."""
        return self.trainer.evaluate(data_dir=kwargs.get("data_dir"), model_dir=checkpoint_path)
