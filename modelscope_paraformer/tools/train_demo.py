"""Recipe of the shipped demo model: a small ParaformerStreaming trained from scratch on synthetic Mandarin.

One command reproduces it (seeds fixed): corpus generation, training, evaluation and export.

    python -m modelscope_paraformer.tools.train_demo --work-dir exp/demo

The trained directory is ``exp/demo/model``; ``--install`` copies it to ``modelscope_paraformer/demo_model``.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Optional

from .random_model import paraformer_large_config

DEMO_ENCODER = {"output_size": 144, "attention_heads": 4, "linear_units": 576, "num_blocks": 6, "kernel_size": 11,
                "dropout_rate": 0.1, "attention_dropout_rate": 0.1, "chunk_size": [12, 15], "stride": [8, 10]}
DEMO_DECODER = {"attention_heads": 4, "linear_units": 576, "num_blocks": 2, "att_layer_num": 2, "kernel_size": 11,
                "sanm_shfit": 5, "dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
                "src_attention_dropout_rate": 0.1}


def demo_architecture() -> dict:
    """config.yaml mapping of the demo model: Paraformer-large's online layout at a few million parameters."""
    config = paraformer_large_config("online")
    config["encoder_conf"].update(DEMO_ENCODER)
    config["decoder_conf"].update(DEMO_DECODER)
    config["predictor_conf"]["idim"] = DEMO_ENCODER["output_size"]
    config["model_conf"]["sampling_ratio"] = 0.4
    config["model_conf"]["lsm_weight"] = 0.1
    return copy.deepcopy(config)


def calibrate_tail_threshold(model_dir: Path, samples, grid=tuple(i / 20 for i in range(9, 20))) -> float:
    """Pick the CIF ``tail_threshold`` that best turns this model's weight sums into the right token counts.

    A briefly trained small predictor undershoots its target (text length + </s>) by about half a token in
    eval mode (dropout off); FunASR's default 0.45 assumes a well-calibrated one. The choice is made on
    held-out *training-distribution* utterances (never the test set) and written into config.yaml.
    """
    import torch
    import yaml

    from ..core.audio import load_audio
    from ..core.checkpoint import load_model
    from ..core.chunking import ChunkConfig
    from ..training.loss import chunked_encode

    model = load_model(model_dir)
    sums, targets = [], []
    with torch.inference_mode():
        for sample in samples:
            features, lengths = model.features([load_audio(sample.source)])
            _, alphas, *_ = chunked_encode(model, features, lengths, ChunkConfig.create((0, 10, 5), 4, 1))
            sums.append(float(alphas.sum()))
            targets.append(len(sample.text.replace(" ", "")) + 1)

    def accuracy(tail: float) -> float:
        return sum(int(total + tail) == target for total, target in zip(sums, targets)) / len(sums)

    best = max(grid, key=lambda tail: (accuracy(tail), -abs(tail - 0.45)))
    config_path = Path(model_dir) / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["predictor_conf"]["tail_threshold"] = float(best)
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    logging.info("tail_threshold %.2f: token count right for %.1f%% of %d held-out utterances (0.45: %.1f%%)",
                 best, 100 * accuracy(best), len(sums), 100 * accuracy(0.45))
    return best


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="exp/demo")
    parser.add_argument("--data-dir", default="data/synth")
    parser.add_argument("--train-utts", type=int, default=6000)
    parser.add_argument("--test-utts", type=int, default=200)
    parser.add_argument("--max-epoch", type=int, default=16)
    parser.add_argument("--batch-bins", type=int, default=12000)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--install", action="store_true", help="copy the result into modelscope_paraformer/demo_model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from .synth_corpus import generate_corpus
    from ..training.data import read_dataset
    from ..training.trainer import ParaformerTrainer, TrainerConfig, evaluate_model
    from ..core.checkpoint import load_model

    data = Path(args.data_dir)
    if not (data / "train" / "text").is_file():
        generate_corpus(data / "train", args.train_utts, seed=1, split="train", jobs=2)
    if not (data / "test" / "text").is_file():
        train_texts = {line.split(maxsplit=1)[1].strip() for line in (data / "train" / "text").open(encoding="utf-8")}
        generate_corpus(data / "test", args.test_utts, seed=2, split="test", jobs=2, exclude_texts=train_texts)
    config = TrainerConfig(work_dir=args.work_dir, data_dir=str(data / "train"), architecture=demo_architecture(),
                           max_epoch=args.max_epoch, batch_bins=args.batch_bins, lr=args.lr, warmup_steps=500,
                           save_interval_steps=100, avg_nbest=4, seed=1, num_workers=0,
                           cache_features=True)
    trainer = ParaformerTrainer(config)
    model_dir = trainer.train()
    _, held_out = trainer.split_datasets()  # the trainer's own validation split of the training voices
    calibrate_tail_threshold(model_dir, held_out)
    model = load_model(model_dir)
    test = read_dataset(data / "test")
    results = {name: evaluate_model(model, test, chunk_size=chunk).as_dict()
               for name, chunk in (("streaming 600 ms", (0, 10, 5)), ("streaming 480 ms", (0, 8, 4)))}
    (Path(args.work_dir) / "cer.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    logging.info("CER: %s", json.dumps(results, ensure_ascii=False))
    if args.install:
        from .. import DEMO_MODEL_DIR as target
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("training.json"))


if __name__ == "__main__":
    main()
