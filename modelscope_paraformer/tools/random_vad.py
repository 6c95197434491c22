"""Build a random-weight FSMN-VAD model directory of the real architecture, in the hub layout.

The layout and numbers are those of ``iic/speech_fsmn_vad_zh-cn-16k-common-pytorch`` (FunASR's
``FsmnVADStreaming``: 400-dim LFR 5/1 input, 140 affine, 4 FSMN layers of 250/128 with 20 left taps, 248
output classes, class 0 silence). Purely random weights would call every frame alike, so two channels of the
network carry the frame energy end to end: the mean normalised log-mel, clamped to a range by two ReLUs,
smoothed by the FSMN memory, drives the silence logit. Every other weight is random, so the posteriors of the
other classes (and the silence logit's normaliser) still vary. Quiet frames then read as silence and speech as
speech, and segments are non-trivial on audio with pauses. funasr loads the checkpoint with every key.

    python -m modelscope_paraformer.tools.random_vad --out /tmp/fsmn-vad
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.frontend import cmvn_text
from ..core.model_dir import atomic_write

logger = logging.getLogger(__name__)

VAD_CONFIG: dict[str, Any] = {
    "frontend": "WavFrontendOnline",
    "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                      "dither": 0.0, "lfr_m": 5, "lfr_n": 1},
    "model": "FsmnVADStreaming",
    "model_conf": {"sample_rate": 16000, "detect_mode": 1, "snr_mode": 0, "max_end_silence_time": 800,
                   "max_start_silence_time": 3000, "do_start_point_detection": True,
                   "do_end_point_detection": True, "window_size_ms": 200, "sil_to_speech_time_thres": 150,
                   "speech_to_sil_time_thres": 150, "speech_2_noise_ratio": 1.0, "do_extend": 1,
                   "lookback_time_start_point": 200, "lookahead_time_end_point": 100,
                   "max_single_segment_time": 60000, "snr_thres": -100.0, "noise_frame_num_used_for_snr": 100,
                   "decibel_thres": -100.0, "speech_noise_thres": 0.6, "fe_prior_thres": 0.0001,
                   "silence_pdf_num": 1, "sil_pdf_ids": [0], "speech_noise_thresh_low": -0.1,
                   "speech_noise_thresh_high": 0.3, "output_frame_probs": False, "frame_in_ms": 10,
                   "frame_length_ms": 25},
    "encoder": "FSMN",
    "encoder_conf": {"input_dim": 400, "input_affine_dim": 140, "fsmn_layers": 4, "linear_dim": 250,
                     "proj_dim": 128, "lorder": 20, "rorder": 0, "lstride": 1, "rstride": 0,
                     "output_affine_dim": 140, "output_dim": 248, "use_softmax": True},
}

VAD_CONFIGURATION = {
    "framework": "pytorch",
    "task": "voice-activity-detection",
    "pipeline": {"type": "funasr-pipeline"},
    "model": {"type": "funasr"},
    "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                        "frontend_conf": {"cmvn_file": "am.mvn"}},
    "model_name_in_hub": {"ms": "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch", "hf": ""},
}

SPEECH_LOG_MEL = 15.1  # mean log-mel (int16-scaled fbank) where the silence posterior crosses 0.22
ENERGY_RANGE = (-2.0, 3.0)  # normalised energy is clamped to this range: posteriors never reach exactly 0 or 1
SILENCE_SLOPE = 2.0  # silence logit per unit of the carried energy
MEMORY_TAP = 0.04  # weight of each of the last 5 FSMN memory taps on the energy channels (a short hangover)


def _state_dict(encoder: dict[str, int], shift: np.ndarray, scale: np.ndarray,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights with the energy path written into channels 0 and 1 of every layer."""
    def random(*shape: int, std: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    n_in, affine, linear, proj = (encoder[k] for k in ("input_dim", "input_affine_dim", "linear_dim", "proj_dim"))
    out_affine, n_out, lorder = encoder["output_affine_dim"], encoder["output_dim"], encoder["lorder"]
    low, high = ENERGY_RANGE
    state: dict[str, torch.Tensor] = {}

    def layer(name: str, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        state[f"encoder.{name}.linear.weight"] = weight
        if bias is not None:
            state[f"encoder.{name}.linear.bias"] = bias

    def keep_channels(weight: torch.Tensor, bias: torch.Tensor | None, gains: tuple[float, float],
                      offsets: tuple[float, float] = (0.0, 0.0)) -> None:
        """Rows 0 and 1 copy inputs 0 and 1 (times ``gains``); no other row reads them."""
        weight[:, :2] = 0.0
        weight[:2] = 0.0
        weight[0, 0], weight[1, 1] = gains
        if bias is not None:
            bias[:2] = torch.tensor(offsets)

    # in_linear1: channels 0 and 1 = mean normalised feature (the frame energy over the 5 stacked frames)
    weight, bias = random(affine, n_in), random(affine, std=0.1)
    weight[:2] = 1.0 / n_in
    bias[:2] = 0.0
    layer("in_linear1", weight, bias)
    # in_linear2 + ReLU: relu(e - low) - relu(e - high) = clamp(e, low, high) - low
    weight, bias = random(linear, affine), random(linear, std=0.1)
    keep_channels(weight, bias, (1.0, 1.0), (-low, -high))
    layer("in_linear2", weight, bias)
    for index in range(encoder["fsmn_layers"]):
        name = f"fsmn.{index}"
        weight = random(proj, linear)
        keep_channels(weight, None, (1.0, 1.0))
        layer(f"{name}.linear", weight, None)
        memory = random(proj, 1, lorder, 1, std=0.02)
        memory[:2] = 0.0
        memory[:2, 0, -5:, 0] = MEMORY_TAP
        state[f"encoder.{name}.fsmn_block.conv_left.weight"] = memory
        weight, bias = random(linear, proj), random(linear, std=0.1)
        keep_channels(weight, bias, (1.0, 1.0))
        layer(f"{name}.affine", weight, bias)
    weight, bias = random(out_affine, linear), random(out_affine, std=0.1)
    keep_channels(weight, bias, (1.0, 1.0))
    weight[0, 1] = -1.0  # channel 0 = the clamped energy (shifted to >= 0)
    layer("out_linear1", weight, bias)
    # out_linear2: class 0 (silence) falls with energy; its boundary sits at SPEECH_LOG_MEL
    weight, bias = random(n_out, out_affine), random(n_out, std=0.1)
    weight[:, :2] = 0.0
    weight[0] = 0.0
    weight[0, 0] = -SILENCE_SLOPE
    gain = (1.0 + 5 * MEMORY_TAP) ** encoder["fsmn_layers"]  # steady-state gain of the memory residuals
    boundary = float(np.clip(np.mean(scale * (SPEECH_LOG_MEL + shift)), low, high)) - low
    others = float(np.log(n_out - 1))  # the other logits are O(0.1): their log-sum-exp is about log(247)
    bias[0] = others - 1.27 + SILENCE_SLOPE * gain * boundary  # sigmoid(-1.27) = 0.22
    layer("out_linear2", weight, bias)
    return {key: value.contiguous() for key, value in state.items()}


def build_random_vad(out_dir: str | Path, seed: int = 0, model_conf: dict[str, Any] | None = None) -> Path:
    """Write config.yaml, model.pt, am.mvn and configuration.json of a random FSMN-VAD; ``model_conf``
    overrides some of the E2E VAD options (e.g. ``{"max_single_segment_time": 5000}``)."""
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(VAD_CONFIG)
    config["model_conf"].update(model_conf or {})
    encoder = config["encoder_conf"]
    rng = np.random.default_rng(seed)
    dim = encoder["input_dim"]
    shift = -np.tile(rng.uniform(14.0, 16.0, 80), dim // 80).astype(np.float32)
    scale = np.tile(rng.uniform(0.4, 0.6, 80), dim // 80).astype(np.float32)
    state = _state_dict(encoder, shift, scale, torch.Generator().manual_seed(seed))
    atomic_write(out / "model.pt", lambda tmp: torch.save(state, tmp))
    atomic_write(out / "am.mvn", lambda tmp: Path(tmp).write_text(cmvn_text(shift, scale), encoding="utf-8"))
    atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(yaml.safe_dump(config, sort_keys=False)))
    atomic_write(out / "configuration.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(VAD_CONFIGURATION, indent=2)))
    logger.info("wrote a random FSMN-VAD (%d tensors) to %s", len(state), out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_random_vad(args.out, args.seed)


if __name__ == "__main__":
    main()
