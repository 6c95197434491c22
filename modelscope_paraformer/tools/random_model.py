"""Build random-weight Paraformer model directories of the real architectures, in the hub layout.

They have the real compute cost and the real file formats, so they serve parity tests against funasr and
benchmarks while the model hubs are out of reach. ``--blocks`` shrinks the depth for fast tests.

    python -m modelscope_paraformer.tools.random_model --out /tmp/pf-online --variant online --blocks 4 2
    python -m modelscope_paraformer.tools.random_model --out /tmp/pf-seaco --variant seaco --blocks 4 2
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..core.model_dir import CONFIGURATION_TEMPLATE, atomic_write
from ..core.config import parse_config
from ..core.frontend import cmvn_text
from ..core.model import Paraformer
from ..core.tokenizer import CharTokenizer

logger = logging.getLogger(__name__)

_COMMON = {
    "input_size": 560,
    "model_conf": {"ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True, "predictor_weight": 1.0,
                   "predictor_bias": 1, "sampling_ratio": 0.75},
    "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                      "lfr_m": 7, "lfr_n": 6, "dither": 0.0},
    "predictor": "CifPredictorV2",
    "predictor_conf": {"idim": 512, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45},
    "decoder": "ParaformerSANMDecoder",
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>"},
}
_ENCODER = {"output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50, "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1, "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True, "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm"}
_DECODER = {"attention_heads": 4, "linear_units": 2048, "num_blocks": 16, "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1, "src_attention_dropout_rate": 0.1,
            "att_layer_num": 16, "kernel_size": 11, "sanm_shfit": 0}


# CifPredictorV3 of the hub's BiCif and SeACo Paraformer-large: timestamp weights at 3x the frame rate
_TIMESTAMP_PREDICTOR = {"smooth_factor2": 0.25, "noise_threshold2": 0.01, "upsample_times": 3,
                        "use_cif1_cnn": False, "upsample_type": "cnn"}
# SeACo (paraformer-zh): the hotword parts in model_conf and the seaco decoder
_SEACO_MODEL_CONF = {"inner_dim": 512, "bias_encoder_type": "lstm", "bias_encoder_bid": False,
                     "seaco_lsm_weight": 0.1, "seaco_length_normalized_loss": True, "train_decoder": True,
                     "NO_BIAS": 8377}
_SEACO_DECODER = {"attention_heads": 4, "linear_units": 1024, "num_blocks": 4, "dropout_rate": 0.1,
                  "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
                  "src_attention_dropout_rate": 0.1, "att_layer_num": 6, "kernel_size": 21, "sanm_shfit": 0,
                  "use_output_layer": False, "wo_input_layer": True}
VARIANTS = ("offline", "online", "bicif", "seaco")
HUB_NAMES = {"bicif": "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
             "seaco": "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"}
_MODEL_NAMES = {"offline": "Paraformer", "bicif": "BiCifParaformer", "seaco": "SeacoParaformer"}


def paraformer_large_config(variant: str = "offline") -> dict:
    """FunASR config.yaml mapping of Paraformer-large: offline, online, BiCif (the long-audio hub model's
    timestamp predictor) or SeACo (paraformer-zh, hotwords); see the shared reference numbers."""
    config = copy.deepcopy(_COMMON)
    encoder, decoder = dict(_ENCODER), dict(_DECODER)
    if variant in _MODEL_NAMES:
        config.update(model=_MODEL_NAMES[variant], frontend="WavFrontend", encoder="SANMEncoder")
        encoder["input_layer"] = "pe"
        if variant != "offline":
            config["predictor"] = "CifPredictorV3"
            config["predictor_conf"].update(_TIMESTAMP_PREDICTOR)
        if variant == "seaco":
            config["model_conf"].update(_SEACO_MODEL_CONF)
            config.update(seaco_decoder="ParaformerSANMDecoder", seaco_decoder_conf=dict(_SEACO_DECODER))
    elif variant == "online":
        config.update(model="ParaformerStreaming", frontend="WavFrontendOnline", encoder="SANMEncoderChunkOpt")
        encoder.update(input_layer="pe_online", chunk_size=[12, 15], stride=[8, 10], pad_left=[0, 0],
                       encoder_att_look_back_factor=[4, 4], decoder_att_look_back_factor=[1, 1])
        decoder["sanm_shfit"] = 5
    else:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    config["encoder_conf"], config["decoder_conf"] = encoder, decoder
    return config


def hub_configuration(variant: str) -> dict:
    """configuration.json as the hub repos have it: FunASR 1.x repos (BiCif, SeACo) name the ``funasr`` model
    and ``funasr-pipeline``; the offline / online dirs keep this package's own template."""
    if variant in HUB_NAMES:
        tokenizer_conf = {"token_list": "tokens.json", **({"seg_dict_file": "seg_dict"} if variant == "seaco" else {})}
        return {"framework": "pytorch", "task": "auto-speech-recognition",
                "model": {"type": "funasr"}, "pipeline": {"type": "funasr-pipeline"},
                "model_name_in_hub": {"ms": HUB_NAMES[variant], "hf": ""},
                "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                                    "tokenizer_conf": tokenizer_conf, "frontend_conf": {"cmvn_file": "am.mvn"}}}
    configuration = copy.deepcopy(CONFIGURATION_TEMPLATE)
    configuration["model"]["model_config"] = {"mode": "paraformer_streaming" if variant == "online" else "paraformer"}
    return configuration


def synthetic_vocabulary(size: int) -> list[str]:
    """``<blank> <s> </s>``, CJK characters from U+4E00, then ``<unk>``: FunASR's token order."""
    return ["<blank>", "<s>", "</s>"] + [chr(0x4E00 + i) for i in range(size - 4)] + ["<unk>"]


def write_cmvn(path: Path, shift: np.ndarray, scale: np.ndarray) -> None:
    """Write Kaldi nnet text CMVN in the layout of the hub's am.mvn."""
    text = cmvn_text(shift, scale)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def build_random_model(out_dir: str | Path, variant: str = "offline", encoder_blocks: Optional[int] = None,
                       decoder_blocks: Optional[int] = None, output_size: Optional[int] = None,
                       linear_units: Optional[int] = None, vocab_size: int = 8404, seed: int = 0) -> Path:
    """Write configuration.json, config.yaml, model.pt, am.mvn and tokens.json with random weights."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = paraformer_large_config(variant)
    if encoder_blocks:
        raw["encoder_conf"]["num_blocks"] = encoder_blocks
    if decoder_blocks:
        raw["decoder_conf"]["num_blocks"] = raw["decoder_conf"]["att_layer_num"] = decoder_blocks
    if output_size:
        raw["encoder_conf"]["output_size"] = raw["predictor_conf"]["idim"] = output_size
        if variant == "seaco":
            raw["model_conf"]["inner_dim"] = output_size
    if linear_units:
        raw["encoder_conf"]["linear_units"] = raw["decoder_conf"]["linear_units"] = linear_units
    if variant == "seaco":
        raw["model_conf"]["NO_BIAS"] = min(raw["model_conf"]["NO_BIAS"], vocab_size - 2)
    tokens = synthetic_vocabulary(vocab_size)
    torch.manual_seed(seed)
    model = Paraformer(parse_config(raw, vocab_size=len(tokens)), tokenizer=CharTokenizer(tokens))
    # typical fbank statistics, so that normalised features are O(1) as with a real am.mvn
    rng = np.random.default_rng(seed)
    mean = np.tile(rng.uniform(8.0, 14.0, 80), 7).astype(np.float32)
    write_cmvn(out / "am.mvn", -mean, np.full(560, 0.35, np.float32))
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    atomic_write(out / "model.pt", lambda tmp: torch.save(state, tmp))
    import yaml

    atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(yaml.safe_dump(raw, sort_keys=False)))
    atomic_write(out / "tokens.json", lambda tmp: Path(tmp).write_text(json.dumps(tokens, ensure_ascii=False)))
    if variant == "seaco":  # as the hub dir: words to their tokens (here each character is itself)
        lines = "".join(f"{token} {token}\n" for token in tokens[3:-1])
        atomic_write(out / "seg_dict", lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
    atomic_write(out / "configuration.json", lambda tmp: Path(tmp).write_text(
        json.dumps(hub_configuration(variant), indent=2)))
    logger.info("wrote random %s Paraformer (%.1fM parameters) to %s", variant, model.parameter_count() / 1e6, out)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", choices=VARIANTS, default="offline")
    parser.add_argument("--blocks", type=int, nargs=2, metavar=("ENCODER", "DECODER"),
                        help="reduced depth, e.g. 4 2 (default: the full 50 / 16)")
    parser.add_argument("--output-size", type=int)
    parser.add_argument("--linear-units", type=int)
    parser.add_argument("--vocab-size", type=int, default=8404)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    blocks = args.blocks or (None, None)
    build_random_model(args.out, args.variant, blocks[0], blocks[1], args.output_size, args.linear_units,
                       args.vocab_size, args.seed)


if __name__ == "__main__":
    main()
