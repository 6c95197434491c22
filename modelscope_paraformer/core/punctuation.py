"""CT-Transformer punctuation: the network, loading a FunASR model dir, and :class:`Punctuator`.

The network is an embedding, a SAN-M encoder and a linear layer giving one punctuation class per word
(parameter names as FunASR's ``CTTransformer`` / ``CTTransformerStreaming``, so checkpoints load unchanged).
The offline model (``ct-punc``, ``ct-punc-c``) encodes with full context. The realtime model
(``...vad_realtime...``, ``SANMVadEncoder``) attends causally in every layer but the last, where all words
see each other except that the words before the carried-over ones (the previous call's unfinished sentence)
do not see the new ones. Text handling is in :mod:`.punctuation_text`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from .checkpoint import check_state_dict, read_state_dict, torch_device
from .config import ConfigError, read_yaml
from .encoder import SANMEncoder
from .model_dir import ModelDirError, read_configuration
from .punctuation_text import (JiebaSegmenter, PunctuatedText, PunctuationTextError, punctuate_offline,
                               punctuate_streaming, split_words)
from .tokenizer import CharTokenizer

logger = logging.getLogger(__name__)

MODELS = {"CTTransformer": False, "CTTransformerStreaming": True}  # config.yaml ``model`` -> streaming
ENCODERS = {False: "SANMEncoder", True: "SANMVadEncoder"}
DEFAULT_PUNC_LIST = ["<unk>", "_", "，", "。", "？", "、"]
DEFAULT_SPLIT_SIZE = 20  # words per mini-sentence (FunASR's split_size)


@dataclass
class PunctuationConfig:
    """What config.yaml says about a CT-Transformer (FunASR's key names are read in :func:`parse_punc_config`)."""

    streaming: bool
    vocab_size: int
    embed_unit: int
    output_size: int
    attention_heads: int
    linear_units: int
    num_blocks: int
    kernel_size: int = 11
    sanm_shift: int = 0
    punc_list: Sequence[str] = tuple(DEFAULT_PUNC_LIST)
    sentence_end_id: int = 3
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    split_size: int = DEFAULT_SPLIT_SIZE


def parse_punc_config(raw: dict[str, Any], source: str, vocab_size: int) -> PunctuationConfig:
    """Validate a FunASR CT-Transformer config.yaml mapping; the vocabulary size comes from the token list."""
    model = raw.get("model")
    if model not in MODELS:
        raise ConfigError(f"{source}: model: {model!r} is not a CT-Transformer punctuation model "
                          f"(supported: {', '.join(MODELS)})")
    streaming = MODELS[model]
    if raw.get("encoder") != ENCODERS[streaming]:
        raise ConfigError(f"{source}: {model} needs encoder: {ENCODERS[streaming]}, got {raw.get('encoder')!r}")
    model_conf, encoder_conf = raw.get("model_conf") or {}, raw.get("encoder_conf") or {}
    if not isinstance(model_conf, dict) or not isinstance(encoder_conf, dict):
        raise ConfigError(f"{source}: model_conf and encoder_conf must be mappings")
    for key, expected in (("input_layer", "pe"), ("selfattention_layer_type", "sanm"), ("normalize_before", True),
                          ("concat_after", False), ("positionwise_layer_type", "linear")):
        if key in encoder_conf and encoder_conf[key] != expected:
            raise ConfigError(f"{source}: encoder_conf.{key}: {encoder_conf[key]!r} is not supported "
                              f"(only {expected!r}, as in the hub's punctuation models)")
    try:
        embed_unit = int(model_conf.get("embed_unit", 128))
        config = PunctuationConfig(
            streaming=streaming, vocab_size=vocab_size, embed_unit=embed_unit,
            output_size=int(encoder_conf.get("output_size", 256)),
            attention_heads=int(encoder_conf.get("attention_heads", 4)),
            linear_units=int(encoder_conf.get("linear_units", 2048)),
            num_blocks=int(encoder_conf.get("num_blocks", 6)),
            kernel_size=int(encoder_conf.get("kernel_size", 11)),
            sanm_shift=int(encoder_conf.get("sanm_shfit", 0)),
            punc_list=[str(mark) for mark in model_conf.get("punc_list") or DEFAULT_PUNC_LIST],
            sentence_end_id=int(model_conf.get("sentence_end_id", 3)),
            dropout_rate=float(encoder_conf.get("dropout_rate", 0.1)),
            attention_dropout_rate=float(encoder_conf.get("attention_dropout_rate", 0.0)),
            split_size=int(raw.get("split_size", DEFAULT_SPLIT_SIZE)))
        input_size = int(encoder_conf.get("input_size", embed_unit))
        att_unit = int(model_conf.get("att_unit", config.output_size))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: a size in model_conf / encoder_conf is not a number ({error})") from None
    if input_size != embed_unit or att_unit != config.output_size:
        raise ConfigError(f"{source}: encoder_conf.input_size ({input_size}) must equal model_conf.embed_unit "
                          f"({embed_unit}), and model_conf.att_unit ({att_unit}) encoder_conf.output_size "
                          f"({config.output_size})")
    if config.output_size % config.attention_heads or config.num_blocks < 1:
        raise ConfigError(f"{source}: output_size {config.output_size} must be a multiple of attention_heads "
                          f"{config.attention_heads}, and num_blocks at least 1")
    if not 0 <= config.sentence_end_id < len(config.punc_list):
        raise ConfigError(f"{source}: sentence_end_id {config.sentence_end_id} is not an index of punc_list")
    return config


def realtime_mask(size: int, vad_index: int) -> torch.Tensor:
    """The last layer's attention mask (True: may attend) for the realtime model: everything, except that the
    first ``vad_index - 1`` words do not see the words from ``vad_index`` on (FunASR's ``vad_mask``)."""
    mask = torch.ones(size, size, dtype=torch.bool)
    if 0 < vad_index < size:
        mask[:vad_index - 1, vad_index:] = False
    return mask


class CTTransformer(nn.Module):
    """Embedding -> SAN-M encoder -> linear: one punctuation class score per word."""

    def __init__(self, config: PunctuationConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_unit)
        self.encoder = SANMEncoder(config.embed_unit, config.output_size, config.attention_heads,
                                   config.linear_units, config.num_blocks, config.kernel_size, config.sanm_shift,
                                   config.dropout_rate, config.attention_dropout_rate)
        self.decoder = nn.Linear(config.output_size, len(config.punc_list))

    def forward(self, ids: torch.Tensor, vad_index: int = 0) -> torch.Tensor:
        """(batch, words) token ids -> (batch, words, classes) scores; ``vad_index`` (realtime model only):
        how many words at the start were carried over from the previous call."""
        x = self.embed(ids)
        if not self.config.streaming:
            return self.decoder(self.encoder(x, torch.full((ids.size(0),), ids.size(1), device=ids.device))[0])
        size = ids.size(1)
        causal = torch.ones(size, size, dtype=torch.bool, device=ids.device).tril()
        layers = self.encoder.layers
        x = self.encoder.embed(x)
        for index, layer in enumerate(layers):
            last = index == len(layers) - 1 and index > 0  # FunASR: the last layer of ``encoders``, not encoders0
            mask = realtime_mask(size, vad_index).to(ids.device) if last else causal
            x, _ = layer(x, None, attention_mask=mask[None, None])
        return self.decoder(self.encoder.after_norm(x))


class Punctuator:
    """Adds punctuation to text with a CT-Transformer; build it with :func:`load_punctuator`.

    For the realtime model, pass the same ``cache`` dict to successive calls of one stream.
    """

    def __init__(self, model: CTTransformer, tokenizer: CharTokenizer, segmenter: Optional[JiebaSegmenter] = None,
                 model_dir: Optional[Path] = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.segmenter = segmenter
        self.model_dir = model_dir

    @property
    def streaming(self) -> bool:
        """True for the realtime (``CTTransformerStreaming``) model, which takes a ``cache``."""
        return self.model.config.streaming

    @property
    def punc_list(self) -> list[str]:
        """The mark of each class (``_``: none); ``punc_array`` values index it."""
        return list(self.model.config.punc_list)

    def words(self, text: str) -> list[str]:
        """The words the model classifies, one ``punc_array`` entry each (before CJK-word expansion)."""
        return self.segmenter(text) if self.segmenter is not None and not self.streaming else split_words(text)

    def encode(self, words: Sequence[str]) -> list[int]:
        """Word ids; words outside the vocabulary are ``<unk>``."""
        index, unk = self.tokenizer.index, self.tokenizer.unk_id
        return [index.get(word, unk) for word in words]

    @torch.inference_mode()
    def _predict(self, ids: Sequence[int], vad_index: int) -> list[int]:
        if not ids:
            return []
        device = self.model.embed.weight.device
        scores = self.model(torch.tensor([list(ids)], dtype=torch.long, device=device), vad_index)
        return scores[0].argmax(dim=-1).tolist()

    def punctuate(self, text: str, cache: Optional[dict] = None, split_size: Optional[int] = None) -> PunctuatedText:
        """Punctuate ``text``: what FunASR's ``AutoModel(model=dir).generate(input=text)[0]`` gives.

        Realtime model: ``cache`` is the stream's state (a dict, empty at the start; FunASR's layout), and the
        text returned is this call's part; without ``cache`` each call is a stream of its own. The offline
        models ignore ``cache``. Empty or blank text gives empty results (and leaves ``cache`` as it is).
        """
        if not isinstance(text, str):
            raise PunctuationTextError(f"punctuation takes a str, got {type(text).__name__}")
        if cache is not None and not isinstance(cache, dict):
            raise PunctuationTextError(f"cache must be a dict (the stream's state), got {type(cache).__name__}")
        config = self.model.config
        size = config.split_size if split_size is None else int(split_size)
        if self.streaming:
            return punctuate_streaming(text, {} if cache is None else cache, self.encode, self._predict,
                                       config.punc_list, config.sentence_end_id, size)
        words = self.words(text)
        return punctuate_offline(words, self.encode(words), self._predict, config.punc_list, config.sentence_end_id,
                                 size, expand_words=self.segmenter is not None)


@dataclass
class PunctuationFiles:
    """The files of a punctuation model dir."""

    root: Path
    config: Path
    weights: Path
    tokens: Path
    jieba_usr_dict: Optional[Path]


def find_punc_files(model_dir: Union[str, os.PathLike]) -> PunctuationFiles:
    """Locate config.yaml, model.pt, tokens.json and jieba_usr_dict, preferring configuration.json's names.

    As in FunASR, a configuration.json with ``file_path_metas`` decides alone whether jieba is used; a bare dir
    uses a ``jieba_usr_dict`` file when there is one. A ``seg_dict`` is not read: FunASR's tokenizer cannot
    apply one to the punctuation models' word lists (it fails), so no hub punctuation model has one.
    """
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        raise ModelDirError(f"punctuation model directory not found: {model_dir}")
    configuration = read_configuration(root)
    metas = configuration.get("file_path_metas")
    metas = metas if isinstance(metas, dict) else None

    def named(*keys: str) -> Optional[str]:
        value: Any = metas or {}
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, str) else None

    def first(*names: Optional[str]) -> Optional[Path]:
        return next((root / name for name in names if name and (root / name).is_file()), None)

    config = first(named("config"), "config.yaml")
    weights = first(named("init_param"), "model.pt")
    tokens = first(named("tokenizer_conf", "token_list"), "tokens.json", "tokens.txt")
    for path, what in ((config, "config.yaml"), (weights, "model.pt (the weights)"), (tokens, "tokens.json")):
        if path is None:
            raise ModelDirError(f"{root}: {what} not found")
    jieba = first(named("jieba_usr_dict")) if metas is not None else first("jieba_usr_dict")
    return PunctuationFiles(root, config, weights, tokens, jieba)


def load_punctuator(model_dir: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> Punctuator:
    """Load a FunASR CT-Transformer punctuation dir (``ct-punc``, ``ct-punc-c``, the vad_realtime model)
    strictly: every checkpoint key and shape must match config.yaml."""
    files = find_punc_files(model_dir)
    raw = read_yaml(files.config)
    unk = (raw.get("tokenizer_conf") or {}).get("unk_symbol", "<unk>")
    tokenizer = CharTokenizer.from_file(files.tokens, unk)
    if tokenizer.unk_id is None:
        raise ModelDirError(f"{files.tokens}: the token list has no {unk!r}, which words outside it map to")
    config = parse_punc_config(raw, str(files.config), len(tokenizer))
    with torch.device("meta"):  # no wasted random init: the checkpoint provides every tensor
        model = CTTransformer(config)
    state, _ = read_state_dict(files.weights)
    rows = state.get("embed.weight")
    if rows is not None and rows.dim() == 2 and rows.size(0) != len(tokenizer):
        raise ModelDirError(f"{files.tokens} has {len(tokenizer)} tokens but {files.weights} embeds "
                            f"{rows.size(0)}: the token list does not belong to this model")
    check_state_dict(model, state, files.weights)
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(torch_device(device)).eval()
    segmenter = JiebaSegmenter(files.jieba_usr_dict) if files.jieba_usr_dict is not None else None
    logger.info("loaded %s punctuation model (%d words, %d blocks) from %s",
                "realtime" if config.streaming else "offline", config.vocab_size, config.num_blocks, files.root)
    return Punctuator(model, tokenizer, segmenter, files.root)
