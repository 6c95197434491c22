"""Build random-weight CT-Transformer punctuation dirs of the hub's architectures, in the hub layout.

``large`` is ``iic/punc_ct-transformer_cn-en-common-vocab471067-large`` (``ct-punc``: words, segmented by jieba
with its ``jieba_usr_dict``), ``zh`` is ``iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch``
(``ct-punc-c``: characters), ``realtime`` is ``iic/punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727``
(``CTTransformerStreaming``). ``vocab_size`` and ``num_blocks`` shrink them for fast tests.

    python -m modelscope_paraformer.tools.random_punc --out /tmp/punc-zh --variant zh --vocab-size 2000
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

import torch

from ..core.model_dir import atomic_write
from ..core.punctuation import DEFAULT_PUNC_LIST, CTTransformer, parse_punc_config

logger = logging.getLogger(__name__)

HUB_NAMES = {"large": "iic/punc_ct-transformer_cn-en-common-vocab471067-large",
             "zh": "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch",
             "realtime": "iic/punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727"}
# (model, encoder, width, heads, feed-forward units, blocks, FSMN shift, vocabulary): the hub models' numbers
ARCHITECTURES = {"large": ("CTTransformer", "SANMEncoder", 516, 12, 2048, 12, 0, 471067),
                 "zh": ("CTTransformer", "SANMEncoder", 256, 8, 1024, 4, 0, 272727),
                 "realtime": ("CTTransformerStreaming", "SANMVadEncoder", 256, 8, 1024, 3, 5, 272727)}
SPECIAL_TOKENS = ["<s>", "</s>", "<unk>"]
ENGLISH_WORDS = ["the", "a", "to", "of", "and", "is", "it", "we", "you", "i", "ok", "okay", "yes", "no", "hello",
                 "world", "happy", "new", "year", "data", "model", "test", "good", "morning", "thank", "very",
                 "much", "what", "how", "are", "this", "that", "meeting", "today", "nba", "ai", "don't", "it's"]
# everyday characters first, so that ordinary test sentences hit the vocabulary; then U+4E00 onwards
COMMON_CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产"
                "种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从"
                "业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又"
                "么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位"
                "入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放"
                "决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受"
                "联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离"
                "华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复")


def punc_config(variant: str, num_blocks: Optional[int] = None) -> dict:
    """The config.yaml mapping (FunASR 1.x keys) of the hub model ``variant``, optionally shrunk."""
    if variant not in ARCHITECTURES:
        raise ValueError(f"variant must be one of {', '.join(ARCHITECTURES)}, got {variant!r}")
    model, encoder, width, heads, units, blocks, shift, _ = ARCHITECTURES[variant]
    return {
        "model": model,
        "model_conf": {"ignore_id": 0, "embed_unit": width, "att_unit": width, "dropout_rate": 0.1,
                       "punc_list": list(DEFAULT_PUNC_LIST), "punc_weight": [1.0] * len(DEFAULT_PUNC_LIST),
                       "sentence_end_id": 3},
        "encoder": encoder,
        "encoder_conf": {"input_size": width, "output_size": width, "attention_heads": heads, "linear_units": units,
                         "num_blocks": num_blocks or blocks, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
                         "attention_dropout_rate": 0.0, "input_layer": "pe",
                         "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True, "kernel_size": 11,
                         "sanm_shfit": shift, "selfattention_layer_type": "sanm", "padding_idx": 0},
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
    }


def chinese_words(chars: str, count: int) -> list[str]:
    """``count`` distinct two-character words from neighbouring ``chars`` (the word vocabulary of ``large``)."""
    return list(dict.fromkeys(chars[i:i + 2] for i in range(len(chars) - 1)))[:count]


def punc_vocabulary(size: int, word_level: bool) -> list[str]:
    """``<s> </s> <unk>``, English words, (word level: two-character words,) common characters, the other CJK
    characters from U+4E00, then made-up Latin words, up to ``size`` tokens."""
    tokens = SPECIAL_TOKENS + ENGLISH_WORDS + (chinese_words(COMMON_CHARS, size // 4) if word_level else [])
    tokens += list(dict.fromkeys(COMMON_CHARS))
    seen = set(tokens)
    tokens += [chr(code) for code in range(0x4E00, 0xA000) if chr(code) not in seen][:max(0, size - len(tokens))]
    tokens += [f"word{number}" for number in range(size - len(tokens))]  # the hub vocabularies outgrow CJK
    return tokens[:size]


def configuration(variant: str) -> dict:
    """configuration.json as in the hub repo (FunASR 1.x: model funasr, pipeline funasr-pipeline)."""
    metas = {"init_param": "model.pt", "config": "config.yaml", "tokenizer_conf": {"token_list": "tokens.json"}}
    if variant == "large":
        metas["jieba_usr_dict"] = "jieba_usr_dict"
    return {"framework": "pytorch", "task": "punctuation", "model": {"type": "funasr"},
            "pipeline": {"type": "funasr-pipeline"},
            "model_name_in_hub": {"ms": HUB_NAMES[variant], "hf": ""}, "file_path_metas": metas}


def build_random_punc(out_dir: str | Path, variant: str = "large", vocab_size: Optional[int] = None, seed: int = 0,
                      num_blocks: Optional[int] = None) -> Path:
    """Write configuration.json, config.yaml, model.pt, tokens.json (and jieba_usr_dict for ``large``) with
    random weights; ``vocab_size`` / ``num_blocks`` default to the hub model's."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = punc_config(variant, num_blocks)
    tokens = punc_vocabulary(vocab_size or ARCHITECTURES[variant][-1], word_level=variant == "large")
    torch.manual_seed(seed)
    model = CTTransformer(parse_punc_config(raw, "config.yaml", len(tokens)))
    with torch.no_grad():  # N(0, 1) embeddings (nn.Embedding's init) saturate nothing; scale the output layer
        model.decoder.weight.mul_(4.0)  # so that random models still predict every mark now and then
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    import yaml

    atomic_write(out / "model.pt", lambda tmp: torch.save(state, tmp))
    atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(
        yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8"))
    atomic_write(out / "tokens.json", lambda tmp: Path(tmp).write_text(
        json.dumps(tokens, ensure_ascii=False), encoding="utf-8"))
    if variant == "large":  # the multi-character words, so that jieba keeps them whole
        words = [token for token in tokens if len(token) > 1 and not token.isascii() and token not in SPECIAL_TOKENS]
        atomic_write(out / "jieba_usr_dict", lambda tmp: Path(tmp).write_text(
            "".join(f"{word}\n" for word in words), encoding="utf-8"))
    atomic_write(out / "configuration.json", lambda tmp: Path(tmp).write_text(
        json.dumps(configuration(variant), indent=2, ensure_ascii=False), encoding="utf-8"))
    logger.info("wrote random %s punctuation model (%.1fM parameters) to %s", variant,
                sum(p.numel() for p in model.parameters()) / 1e6, out)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", choices=sorted(ARCHITECTURES), default="large")
    parser.add_argument("--vocab-size", type=int, help="default: the hub model's (471067 / 272727)")
    parser.add_argument("--blocks", type=int, help="reduced depth (default: the hub model's 12 / 4 / 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_random_punc(args.out, args.variant, args.vocab_size, args.seed, args.blocks)


if __name__ == "__main__":
    main()
