"""Training script; the same command runs single-process or distributed (DDP) under torchrun.

    python -m modelscope_paraformer.training.train --model DIR --data-dir data/train --work-dir exp/ft
    torchrun --nproc_per_node=2 -m modelscope_paraformer.training.train --model DIR --data-dir ... --work-dir ...

``--architecture config.yaml`` trains from scratch instead of ``--model``. Rerunning a command resumes it.
``--data-dir`` takes a Kaldi dir, a dir with train/ and validation/ (or dev/) subdirs, or a jsonl file.
``--lora-rank 8`` trains LoRA adapters only (merged into model.pt on export); ``--freeze 'encoder.*'`` keeps
matching parameters fixed.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # torch is imported by the functions that train: the CLI imports this module's options cheaply
    import torch


def parameter_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters: identical on every DDP rank when training stays in sync."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """LoRA and freezing options (this script and ``python -m modelscope_paraformer finetune``)."""
    parser.add_argument("--lora-rank", type=int, default=0, help="> 0: train LoRA adapters of this rank only")
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--lora-targets", help="comma-separated module name patterns (default: SAN-M attention "
                                               "and feed-forward Linears)")
    parser.add_argument("--freeze", default="", help="comma-separated parameter name patterns to keep fixed")


def tuning_options(args: argparse.Namespace) -> dict:
    """The TrainerConfig fields that :func:`add_tuning_arguments` set."""
    return {"lora_rank": args.lora_rank, "lora_alpha": args.lora_alpha, "lora_dropout": args.lora_dropout,
            "freeze": args.freeze, **({"lora_targets": args.lora_targets} if args.lora_targets else {})}


def main(argv: Optional[list[str]] = None) -> None:
    from ..core.config import read_yaml
    from .trainer import ParaformerTrainer, TrainerConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--valid-dir")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="base model dir or hub id (fine-tuning keeps its vocabulary)")
    source.add_argument("--architecture", help="config.yaml to train from scratch")
    parser.add_argument("--max-epoch", type=int, default=10)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--batch-bins", type=int, default=12000)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=500)
    parser.add_argument("--save-interval-steps", type=int, default=200)
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--cache-features", action="store_true", help="compute features once, keep them in memory")
    add_tuning_arguments(parser)
    parser.add_argument("--checksum", action="store_true", help="write each rank's parameter checksum to work_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = TrainerConfig(work_dir=args.work_dir, data_dir=args.data_dir, valid_dir=args.valid_dir, model=args.model,
                           architecture=read_yaml(args.architecture) if args.architecture else None,
                           max_epoch=args.max_epoch, max_steps=args.max_steps, batch_bins=args.batch_bins, lr=args.lr,
                           warmup_steps=args.warmup_steps, save_interval_steps=args.save_interval_steps,
                           precision=args.precision, seed=args.seed, augment=not args.no_augment,
                           cache_features=args.cache_features, **tuning_options(args))
    trainer = ParaformerTrainer(config)
    trainer.train()
    if args.checksum:
        Path(args.work_dir, f"checksum.rank{trainer.rank}").write_text(parameter_checksum(trainer.model))
    if trainer.world_size > 1:
        import torch.distributed

        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
