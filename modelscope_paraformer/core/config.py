"""Typed model configuration read from FunASR ``config.yaml`` (1.x names and the legacy 0.x names).

FunASR's key names (``sanm_shfit``, ``encoder_conf`` ...) are read here, at the edge, and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ParaformerError
from .frontend import FrontendConfig

# model name -> variant: plain Paraformer, BiCif (a second, upsampled CIF head for timestamps), SeACo (BiCif plus
# hotword biasing)
VARIANTS = {"Paraformer": "paraformer", "paraformer": "paraformer", "ParaformerOffline": "paraformer",
            "BiCifParaformer": "bicif", "SeacoParaformer": "seaco"}
OFFLINE_MODELS = set(VARIANTS)
STREAMING_MODELS = {"ParaformerStreaming", "paraformer_online", "ParaformerOnline", "paraformer_streaming"}
OFFLINE_ENCODERS = {"SANMEncoder", "sanm"}
STREAMING_ENCODERS = {"SANMEncoderChunkOpt", "sanm_chunk_opt"}
DECODERS = {"ParaformerSANMDecoder", "paraformer_decoder_sanm"}
PREDICTORS = {"CifPredictorV2", "cif_predictor_v2", "CifPredictorV3"}
TIMESTAMP_PREDICTORS = {"CifPredictorV3"}  # with the upsampled timestamp head


class ConfigError(ParaformerError, ValueError):
    """config.yaml is unreadable, incomplete or names an architecture this package does not implement."""


@dataclass
class EncoderConfig:
    """``encoder_conf``: SAN-M sizes and, for the chunked encoder, its training chunk settings."""

    output_size: int = 512
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 50
    kernel_size: int = 11
    sanm_shift: int = 0
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    chunk_size: list[int] = field(default_factory=lambda: [12, 15])
    stride: list[int] = field(default_factory=lambda: [8, 10])


@dataclass
class DecoderConfig:
    """``decoder_conf``."""

    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 16
    att_layer_num: int = 16
    kernel_size: int = 11
    sanm_shift: int = 0
    dropout_rate: float = 0.1
    self_attention_dropout_rate: float = 0.1
    src_attention_dropout_rate: float = 0.1


@dataclass
class PredictorConfig:
    """``predictor_conf``."""

    l_order: int = 1
    r_order: int = 1
    threshold: float = 1.0
    tail_threshold: float = 0.45
    smooth_factor: float = 1.0
    noise_threshold: float = 0.0
    # CifPredictorV3's timestamp head (FunASR's defaults; the hub configs set 3 / 0.25 / 0.01 / False)
    timestamp_head: bool = False  # set from ``predictor: CifPredictorV3``, not a config key
    upsample_times: int = 5
    upsample_type: str = "cnn"
    smooth_factor2: float = 1.0
    noise_threshold2: float = 0.0
    use_cif1_cnn: bool = True


@dataclass
class SeacoConfig:
    """SeACo's hotword parts (``model_conf`` keys and ``seaco_decoder_conf``), with FunASR's defaults.

    ``no_bias_id`` (``NO_BIAS``) is the token the hotword branch predicts where no hotword applies; there the
    plain decoder's output is kept.
    """

    inner_dim: int = 256
    bias_encoder_type: str = "lstm"
    bias_encoder_bid: bool = False
    no_bias_id: int = 8377
    decoder: Optional[DecoderConfig] = None
    decoder_embedding: bool = False  # ``not wo_input_layer``
    decoder_output_layer: bool = True  # ``use_output_layer``


@dataclass
class TrainingConfig:
    """``model_conf``: loss weights and the glancing sampler."""

    ctc_weight: float = 0.0
    lsm_weight: float = 0.1
    length_normalized_loss: bool = True
    predictor_weight: float = 1.0
    predictor_bias: int = 1
    sampling_ratio: float = 0.75


@dataclass
class ModelConfig:
    """Everything needed to build a Paraformer; ``raw`` keeps the original mapping for round trips."""

    streaming: bool
    input_size: int
    vocab_size: int
    frontend: FrontendConfig
    encoder: EncoderConfig
    decoder: DecoderConfig
    predictor: PredictorConfig
    training: TrainingConfig
    raw: dict[str, Any] = field(default_factory=dict)
    variant: str = "paraformer"  # "paraformer" | "bicif" | "seaco" (offline), "paraformer" for streaming
    seaco: Optional[SeacoConfig] = None

    @property
    def supports_hotwords(self) -> bool:
        """True for SeACo-Paraformer (hotword biasing)."""
        return self.seaco is not None


def _pick(cls, values: dict[str, Any], renames: Optional[dict[str, str]] = None):
    """Build dataclass ``cls`` from the keys of ``values`` it knows (after ``renames``); ignore the rest."""
    renames = renames or {}
    known = cls.__dataclass_fields__
    kwargs = {}
    for key, value in (values or {}).items():
        key = renames.get(key, key)
        if key in known:
            kwargs[key] = value
    return cls(**kwargs)


def _require(raw: dict[str, Any], key: str, allowed: set[str], source: str) -> str:
    value = raw.get(key)
    if value not in allowed:
        raise ConfigError(f"{source}: {key}: {value!r} is not supported by modelscope-paraformer "
                          f"(supported: {', '.join(sorted(allowed))})")
    return value


def parse_config(raw: dict[str, Any], source: str = "config.yaml", vocab_size: Optional[int] = None) -> ModelConfig:
    """Validate a FunASR config mapping and turn it into a :class:`ModelConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    model = raw.get("model")
    if model in STREAMING_MODELS:
        streaming = True
    elif model in OFFLINE_MODELS:
        streaming = False
    else:
        raise ConfigError(f"{source}: model: {model!r} is not a Paraformer "
                          f"(supported: {', '.join(sorted(OFFLINE_MODELS | STREAMING_MODELS))})")
    encoder_name = _require(raw, "encoder", OFFLINE_ENCODERS | STREAMING_ENCODERS, source)
    if streaming and encoder_name not in STREAMING_ENCODERS:
        raise ConfigError(f"{source}: a streaming model needs SANMEncoderChunkOpt, got {encoder_name!r}")
    _require(raw, "decoder", DECODERS, source)
    predictor_name = _require(raw, "predictor", PREDICTORS, source)
    variant = VARIANTS.get(model, "paraformer")
    if variant != "paraformer" and predictor_name not in TIMESTAMP_PREDICTORS:
        raise ConfigError(f"{source}: {model} needs predictor CifPredictorV3 (with the timestamp head), "
                          f"got {predictor_name!r}")
    encoder_conf = dict(raw.get("encoder_conf") or {})
    for key, expected in (("input_layer", {"pe", "pe_online"}), ("selfattention_layer_type", {"sanm"}),
                          ("normalize_before", {True}), ("pos_enc_class", {"SinusoidalPositionEncoder"})):
        if key in encoder_conf and encoder_conf[key] not in expected:
            raise ConfigError(f"{source}: encoder_conf.{key}: {encoder_conf[key]!r} is not supported "
                              f"(supported: {sorted(map(str, expected))})")
    frontend_conf = dict(raw.get("frontend_conf") or {})
    renames = {"sanm_shfit": "sanm_shift"}
    frontend = _pick(FrontendConfig, frontend_conf)
    frontend.dither = 0.0  # deterministic inference; training adds its own augmentation
    input_size = int(raw.get("input_size") or frontend.n_mels * frontend.lfr_m)
    if vocab_size is None:
        vocab_size = raw.get("vocab_size") or len(raw.get("token_list") or [])
    if not vocab_size or int(vocab_size) <= 0:
        raise ConfigError(f"{source}: vocabulary size unknown (no tokens file, vocab_size or token_list)")
    try:
        predictor = _pick(PredictorConfig, {key: value for key, value in (raw.get("predictor_conf") or {}).items()
                                            if key != "timestamp_head"})
        predictor.timestamp_head = predictor_name in TIMESTAMP_PREDICTORS
        if predictor.timestamp_head and predictor.upsample_type != "cnn":
            raise ConfigError(f"{source}: predictor_conf.upsample_type {predictor.upsample_type!r} is not "
                              "supported (supported: cnn, as in the hub's BiCif and SeACo models)")
        return ModelConfig(
            streaming=streaming, input_size=input_size, vocab_size=int(vocab_size), frontend=frontend,
            encoder=_pick(EncoderConfig, encoder_conf, renames),
            decoder=_pick(DecoderConfig, raw.get("decoder_conf") or {}, renames),
            predictor=predictor,
            training=_pick(TrainingConfig, raw.get("model_conf") or {}),
            raw=raw, variant=variant,
            seaco=_seaco_config(raw, source) if variant == "seaco" else None,
        )
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from None


def _seaco_config(raw: dict[str, Any], source: str) -> SeacoConfig:
    """SeACo's ``model_conf`` keys and its ``seaco_decoder_conf`` (FunASR's ParaformerSANMDecoder defaults)."""
    model_conf = raw.get("model_conf") or {}
    seaco = _pick(SeacoConfig, model_conf, {"NO_BIAS": "no_bias_id"})
    if seaco.bias_encoder_type != "lstm":
        raise ConfigError(f"{source}: model_conf.bias_encoder_type {seaco.bias_encoder_type!r} is not supported "
                          "(supported: lstm)")
    if raw.get("seaco_decoder") not in DECODERS:
        raise ConfigError(f"{source}: seaco_decoder: {raw.get('seaco_decoder')!r} is not supported "
                          f"(supported: {', '.join(sorted(DECODERS))})")
    conf = dict(raw.get("seaco_decoder_conf") or {})
    defaults = {"num_blocks": 6, "att_layer_num": 6, "kernel_size": 21, "linear_units": 2048}
    seaco.decoder = _pick(DecoderConfig, {**defaults, **conf}, {"sanm_shfit": "sanm_shift"})
    seaco.decoder_embedding = not conf.get("wo_input_layer", False)
    seaco.decoder_output_layer = bool(conf.get("use_output_layer", True))
    if seaco.decoder_output_layer:
        raise ConfigError(f"{source}: seaco_decoder_conf.use_output_layer must be false (the hotword branch "
                          "reads the seaco decoder's hidden states)")
    return seaco


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML file with a clear error for unreadable or malformed files."""
    import yaml

    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: malformed YAML ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
