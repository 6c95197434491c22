"""The config.yaml of a trained model in FunASR 1.x names, whatever layout (1.x or legacy 0.x) the base had.

Legacy hub revisions (v1.0.x) name the architecture ``paraformer`` / ``sanm`` / ``cif_predictor_v2`` and keep
the token list inside config.yaml; the exported dir is written in the 1.x layout (tokens.json beside it), so its
config.yaml uses the 1.x class names that FunASR 1.x and this package both read.
"""
from __future__ import annotations

import copy
from typing import Any

from ..core.config import ModelConfig

MODERN_NAMES = {
    "model": {"paraformer": "Paraformer", "ParaformerOffline": "Paraformer", "paraformer_online": "ParaformerStreaming",
              "ParaformerOnline": "ParaformerStreaming", "paraformer_streaming": "ParaformerStreaming"},
    "encoder": {"sanm": "SANMEncoder", "sanm_chunk_opt": "SANMEncoderChunkOpt"},
    "decoder": {"paraformer_decoder_sanm": "ParaformerSANMDecoder"},
    "predictor": {"cif_predictor_v2": "CifPredictorV2"},
    "frontend": {"wav_frontend": "WavFrontend", "wav_frontend_online": "WavFrontendOnline"},
}


def modern_config(raw: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
    """``raw`` (the base's config.yaml mapping) with 1.x class names and the keys a 1.x loader expects."""
    out = copy.deepcopy(raw)
    for key, names in MODERN_NAMES.items():
        if out.get(key) in names:
            out[key] = names[out[key]]
    out.pop("token_list", None)  # 1.x keeps the vocabulary in tokens.json
    out.setdefault("frontend", "WavFrontendOnline" if config.streaming else "WavFrontend")
    out.setdefault("input_size", config.input_size)
    out.setdefault("tokenizer", "CharTokenizer")
    out.setdefault("tokenizer_conf", {"unk_symbol": "<unk>"})
    # 0.x configs point to files of the base dir (cmvn_file, token_list paths); the export ships its own
    for section in ("frontend_conf", "tokenizer_conf"):
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in ("cmvn_file", "token_list")}
    return out
