"""LoRA adapters and parameter freezing for fine-tuning, merged back into plain weights for export.

``apply_lora`` swaps the targeted ``nn.Linear`` modules for :class:`LoRALinear`, which keeps the base
``weight`` and ``bias`` under their own names (so checkpoints and the export keep the base keys) and adds
``lora_A`` (rank x in) and ``lora_B`` (out x rank, zero at the start, so training starts from the base model):
``y = x W^T + b + scaling * (dropout(x) A^T) B^T`` with ``scaling = alpha / rank``. ``merged_state_dict``
folds ``W + scaling * B @ A`` into each weight and drops the adapters: the result has exactly the base
architecture's keys and shapes and loads anywhere the base model does.

Patterns are shell-style (``fnmatch``) over module names (LoRA targets) or parameter names (freeze),
e.g. ``encoder.encoders.*.self_attn.linear_q_k_v`` or ``encoder.*``.
"""
from __future__ import annotations

import fnmatch
import logging
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from ..core.errors import ParaformerError

logger = logging.getLogger(__name__)

# SAN-M attention (encoder self-attention, decoder cross-attention) and every feed-forward: where FunASR and
# PEFT put LoRA for Paraformer-style models; embeddings, norms, FSMN convs and the output layer stay frozen.
DEFAULT_TARGETS = ("*.self_attn.linear_q_k_v", "*.self_attn.linear_out", "*.src_attn.linear_q",
                   "*.src_attn.linear_k_v", "*.src_attn.linear_out", "*.feed_forward.w_1", "*.feed_forward.w_2")
ADAPTER_SUFFIXES = (".lora_A", ".lora_B")


class LoraError(ParaformerError, ValueError):
    """LoRA or freeze settings that select nothing or cannot be applied."""


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` (sharing the base weight and bias) plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        nn.Module.__init__(self)  # not nn.Linear.__init__: the base weight is reused, not re-allocated
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.rank, self.scaling = rank, alpha / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's init: A random, B zero -> delta 0 at start
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = nn.functional.linear(nn.functional.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return nn.functional.linear(x, self.weight, self.bias) + update * self.scaling

    def delta(self) -> torch.Tensor:
        """The weight update ``scaling * B @ A`` (out x in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:g}"


@dataclass
class TrainableReport:
    """Parameter counts after LoRA / freezing."""

    total: int
    trainable: int
    adapters: int
    lora_modules: int

    def __str__(self) -> str:
        share = 100.0 * self.trainable / max(self.total, 1)
        text = f"trainable parameters: {self.trainable:,} of {self.total:,} ({share:.2f} %)"
        return text + (f"; LoRA on {self.lora_modules} Linear modules" if self.lora_modules else "")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def apply_lora(model: nn.Module, rank: int, alpha: float, targets: Sequence[str] = DEFAULT_TARGETS,
               dropout: float = 0.0) -> list[str]:
    """Freeze ``model`` and put adapters on the Linear modules whose names match ``targets``; their names."""
    if rank <= 0:
        raise LoraError(f"lora_rank must be > 0 to apply LoRA, got {rank}")
    chosen = [name for name, module in model.named_modules()
              if type(module) is nn.Linear and _matches(name, targets)]
    if not chosen:
        linears = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise LoraError(f"lora_targets {list(targets)} match no Linear module; module names end in {linears}, "
                        f"e.g. use '*.self_attn.linear_q_k_v'")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    return chosen


def freeze(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Stop gradients for the parameters whose names match ``patterns``; their names."""
    frozen = [name for name, parameter in model.named_parameters() if _matches(name, patterns)]
    if not frozen:
        raise LoraError(f"freeze patterns {list(patterns)} match no parameter; parameter names look like "
                        f"{next(iter(n for n, _ in model.named_parameters()), '')!r} (use e.g. 'encoder.*')")
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return frozen


def trainable_report(model: nn.Module) -> TrainableReport:
    """How many parameters train, of how many (adapters counted in both)."""
    parameters = list(model.named_parameters())
    return TrainableReport(
        total=sum(p.numel() for _, p in parameters),
        trainable=sum(p.numel() for _, p in parameters if p.requires_grad),
        adapters=sum(p.numel() for n, p in parameters if n.endswith(ADAPTER_SUFFIXES)),
        lora_modules=sum(isinstance(m, LoRALinear) for m in model.modules()))


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's weights with every adapter folded in: the base architecture's keys only."""
    deltas = {f"{name}.weight": module.delta().detach() for name, module in model.named_modules()
              if isinstance(module, LoRALinear)}
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith(ADAPTER_SUFFIXES):
            continue
        value = value.detach()
        state[key] = (value + deltas[key]).cpu() if key in deltas else value.cpu().clone()
    return state
