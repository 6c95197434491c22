"""CT-Transformer punctuation: exact parity with funasr (text, punc_array, the streaming cache) on random-weight
models of the hub architectures (small vocabularies), the ModelScope pipeline, and bad inputs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from modelscope_paraformer.core import ParaformerError, PunctuatedText, load_punctuator
from modelscope_paraformer.core.checkpoint import CheckpointError
from modelscope_paraformer.core.config import ConfigError
from modelscope_paraformer.core.model_dir import ModelDirError
from modelscope_paraformer.core.punctuation import find_punc_files
from modelscope_paraformer.core.punctuation_text import PunctuationTextError, mini_sentences, split_words
from modelscope_paraformer.tools.random_punc import build_random_punc

funasr = pytest.importorskip("funasr")

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
CHINESE = ("跨境河流是养育沿岸人民的生命之源长期以来为帮助下游地区防灾减灾中方技术人员"
           "在上游地区极为恶劣的自然条件下克服巨大困难")
MIXED = "那今天的会就到这里吧 happy new year 明年见"
TEXTS = {
    "chinese": CHINESE,
    "mixed": MIXED,
    "english": "hello world this is a test of the model okay thank you very much",
    "outside the vocabulary": "龘靐齉 xyzzy 好的 OK",
    "long": (CHINESE + "甚至冒着生命危险 we don't know 向印方提供汛期水文资料") * 3 + MIXED,
    "example": (REPO / "examples" / "asr_example_zh.txt").read_text(encoding="utf-8").strip(),
    "one word": "好",
}
STREAM = ("跨境河流是养育沿岸|人民的生命之源长期以来为帮助下游地区防灾减灾中方技术人员|在上游地区极为恶劣的自然条件下"
          "克服巨大困难甚至冒着生命危险|向印方提供汛期水文资料处理紧急事件中方重视印方在跨境河流问题上的关切|凡是|"
          "hello world|ok 好的 thank you|very much|中方能做的我们都会去做而且会做得更好").split("|")


@pytest.fixture(scope="module")
def punc_dirs(tmp_path_factory) -> dict[str, Path]:
    """The three hub architectures with 2000-word vocabularies; ``large`` (516 wide, 12 heads) at 2 blocks."""
    root = tmp_path_factory.mktemp("punc")
    return {variant: build_random_punc(root / variant, variant, vocab_size=2000, seed=5,
                                       num_blocks=2 if variant == "large" else None)
            for variant in ("large", "zh", "realtime")}


def _funasr(model_dir: Path):
    logging.getLogger().setLevel(logging.WARNING)
    return funasr.AutoModel(model=str(model_dir), disable_update=True, ncpu=1, device="cpu", disable_pbar=True,
                            log_level="ERROR")


@pytest.fixture(scope="module")
def reference(punc_dirs):
    return {variant: _funasr(path) for variant, path in punc_dirs.items()}


@pytest.fixture(scope="module")
def ours(punc_dirs):
    return {variant: load_punctuator(path) for variant, path in punc_dirs.items()}


def _generate(model, text: str, **options) -> tuple[str, list[int]]:
    result = model.generate(input=text, disable_pbar=True, **options)[0]
    array = result["punc_array"]
    return result["text"], None if array is None else array.reshape(-1).tolist()


def test_split_words_and_mini_sentences():
    assert split_words("hello世界 ok123好  x") == ["hello", "世", "界", "ok123", "好", "x"]
    assert mini_sentences(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert mini_sentences([], 20) == [[]]


@pytest.mark.parametrize("variant", ["large", "zh", "realtime"])
def test_funasr_loads_every_key(punc_dirs, reference, ours, variant):
    checkpoint = torch.load(punc_dirs[variant] / "model.pt", weights_only=True)
    theirs = reference[variant].model.state_dict()
    assert set(theirs) == set(checkpoint)
    assert all(torch.equal(theirs[key], checkpoint[key]) for key in checkpoint)
    mine = ours[variant].model.state_dict()
    assert {key: value.shape for key, value in mine.items()} == {key: value.shape for key, value in theirs.items()}


@pytest.mark.parametrize("variant", ["zh", "large"])
def test_offline_text_and_punc_array_equal_funasr(reference, ours, variant):
    ours = ours[variant]
    assert (ours.segmenter is not None) == (variant == "large")  # ct-punc segments words with jieba
    for name, text in TEXTS.items():
        expected_text, expected_array = _generate(reference[variant], text)
        got = ours.punctuate(text)
        assert (got.text, got.punc_array) == (expected_text, expected_array), name
    long = ours.punctuate(TEXTS["long"])
    assert len(long.punc_array) > 3 * 20 and "。" in long.text[:-1]  # several mini-sentences, carried sentences
    expected_text, expected_array = _generate(reference[variant], TEXTS["long"], split_size=7)
    got = ours.punctuate(TEXTS["long"], split_size=7)
    assert (got.text, got.punc_array) == (expected_text, expected_array)


def test_empty_text(reference, ours):
    ours = ours["zh"]
    for text in ("", "  \n "):
        assert _generate(reference["zh"], text) == ("", None)  # funasr: no punc_array
        assert ours.punctuate(text) == PunctuatedText("", [])


def test_long_unfinished_sentence_is_cut_at_a_comma(reference, ours):
    """With no full stop or question mark ever predicted, a carry past 200 words ends at its last comma."""
    biases = [reference["zh"].model.decoder.bias, ours["zh"].model.decoder.bias]
    saved = [bias.detach().clone() for bias in biases]
    try:
        with torch.no_grad():
            for bias in biases:
                bias[[3, 4]] = -1e4
        text = CHINESE * 5
        got = ours["zh"].punctuate(text)
        assert (got.text, got.punc_array) == _generate(reference["zh"], text)
    finally:
        with torch.no_grad():
            for bias, value in zip(biases, saved):
                bias.copy_(value)
    assert "。" in got.text[:-1] and got.punc_array.count(3) >= 2  # the cut comma and the final full stop


def test_streaming_cache_equals_funasr(reference, ours):
    ours = ours["realtime"]
    assert ours.streaming
    their_cache, our_cache = {}, {}
    for piece in STREAM:
        expected = _generate(reference["realtime"], piece, cache=their_cache)
        got = ours.punctuate(piece, our_cache)
        assert (got.text, got.punc_array) == expected, piece
        assert our_cache == their_cache, piece  # FunASR's own layout: {"pre_text": [carried words]}
    assert ours.punctuate("  ", our_cache) == PunctuatedText("", []) and our_cache == their_cache


def test_streams_interleave(ours):
    ours = ours["realtime"]
    cache = {}
    alone = [ours.punctuate(piece, cache).text for piece in STREAM[:4]]
    first, second, interleaved = {}, {}, []
    for piece in STREAM[:4]:
        interleaved.append(ours.punctuate(piece, first).text)
        ours.punctuate(piece[::-1], second)
    assert interleaved == alone


def test_pipeline_answers_what_funasr_answers(punc_dirs, reference):
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    from modelscope_paraformer.integration import PUNC_PIPELINE_NAME, PunctuationPipeline

    offline = pipeline(task=Tasks.punctuation, model=str(punc_dirs["zh"]), pipeline_name=PUNC_PIPELINE_NAME,
                       device="cpu")
    assert isinstance(offline, PunctuationPipeline)
    result = offline(MIXED)
    assert result[0]["key"].startswith("rand_key_")
    assert (result[0]["text"], result[0]["punc_array"]) == _generate(reference["zh"], MIXED)
    both = offline([MIXED, ""], key=["a", "b"])
    assert [r["key"] for r in both] == ["a", "b"] and both[1]["text"] == "" and both[1]["punc_array"] is None

    realtime = pipeline(task=Tasks.punctuation, model=str(punc_dirs["realtime"]), pipeline_name=PUNC_PIPELINE_NAME,
                        device="cpu")
    their_cache, cache, words = {}, {}, []
    for piece in STREAM[:5]:
        expected = _generate(reference["realtime"], piece, cache=their_cache)
        got = realtime(input=piece, cache=cache)[0]
        legacy = realtime(text_in=piece, param_dict={"cache": words})[0]  # the pre-1.x model card's list cache
        assert (got["text"], got["punc_array"]) == expected == (legacy["text"], legacy["punc_array"])
        assert cache == their_cache and words == their_cache["pre_text"]


def test_jieba_dict_follows_configuration_json(punc_dirs, tmp_path):
    """As in FunASR: configuration.json's file_path_metas decide alone; a bare dir uses jieba_usr_dict if present."""
    assert find_punc_files(punc_dirs["large"]).jieba_usr_dict == punc_dirs["large"] / "jieba_usr_dict"
    unnamed = _broken_copy(punc_dirs["large"], tmp_path / "unnamed")
    configuration = json.loads((unnamed / "configuration.json").read_text(encoding="utf-8"))
    del configuration["file_path_metas"]["jieba_usr_dict"]
    (unnamed / "configuration.json").write_text(json.dumps(configuration), encoding="utf-8")
    assert find_punc_files(unnamed).jieba_usr_dict is None
    (unnamed / "configuration.json").unlink()
    assert find_punc_files(unnamed).jieba_usr_dict == unnamed / "jieba_usr_dict"


def _broken_copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_bad_inputs_raise_clear_errors(punc_dirs, ours, tmp_path):
    ours = ours["realtime"]
    with pytest.raises(PunctuationTextError, match="takes a str"):
        ours.punctuate(None)
    with pytest.raises(PunctuationTextError, match="must be a dict"):
        ours.punctuate("你好", cache=["x"])
    with pytest.raises(PunctuationTextError, match="pre_text"):
        ours.punctuate("你好", cache={"pre_text": "not a list"})
    with pytest.raises(ModelDirError, match="not found"):
        load_punctuator(tmp_path / "missing")

    config = _broken_copy(punc_dirs["zh"], tmp_path / "config")
    raw = yaml.safe_load((config / "config.yaml").read_text(encoding="utf-8"))
    (config / "config.yaml").write_text(yaml.safe_dump({**raw, "model": "Paraformer"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a CT-Transformer"):
        load_punctuator(config)

    missing_key = _broken_copy(punc_dirs["zh"], tmp_path / "missing_key")
    state = torch.load(missing_key / "model.pt", weights_only=True)
    del state["decoder.bias"]
    torch.save(state, missing_key / "model.pt")
    with pytest.raises(CheckpointError, match="missing keys: decoder.bias"):
        load_punctuator(missing_key)

    garbage = _broken_copy(punc_dirs["zh"], tmp_path / "garbage")
    (garbage / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable PyTorch checkpoint"):
        load_punctuator(garbage)

    tokens = _broken_copy(punc_dirs["zh"], tmp_path / "tokens")
    words = json.loads((tokens / "tokens.json").read_text(encoding="utf-8"))
    (tokens / "tokens.json").write_text(json.dumps(words + ["extra"], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ModelDirError, match="does not belong to this model"):
        load_punctuator(tokens)
    for error in (PunctuationTextError, ConfigError, CheckpointError, ModelDirError):
        assert issubclass(error, ParaformerError)
