"""The model-card composite: sentence splitting and text joining equal funasr's; composition arguments."""
from __future__ import annotations

import json
import random

import pytest

from modelscope_paraformer.composition import CompositionError, companion_arguments
from modelscope_paraformer.core.composite import join_segment_texts
from modelscope_paraformer.core.sentences import split_sentences

CJK = [chr(0x4E00 + i) for i in range(40)]
WORDS = ["hello", "world", "ok", "Paraformer", "asr"]


def _random_case(rng: random.Random, latin: float = 0.2) -> tuple[list[str], list[list[int]], list[int]]:
    count = rng.randint(1, 30)
    tokens = [rng.choice(WORDS) if rng.random() < latin else rng.choice(CJK) for _ in range(count)]
    starts = sorted(rng.sample(range(0, 20000, 10), count))
    stamps = [[start, start + rng.randint(30, 200)] for start in starts]
    marks = [rng.choice([1, 1, 1, 2, 3, 4, 5]) for _ in range(count)]
    return tokens, stamps, marks


@pytest.mark.parametrize("raw_text", [False, True])
def test_sentences_equal_funasr_timestamp_sentence(raw_text):
    from funasr.utils.timestamp_tools import timestamp_sentence

    rng = random.Random(5)
    for _ in range(200):  # raw_text: funasr glues latin words together ("helloworld"); we keep their spaces
        tokens, stamps, marks = _random_case(rng, 0.0 if raw_text else 0.2)
        expected = timestamp_sentence(marks, [list(s) for s in stamps], " ".join(tokens), return_raw_text=raw_text)
        assert split_sentences(tokens, stamps, marks, raw_text) == expected


def test_sentences_edge_cases_equal_funasr():
    from funasr.utils.timestamp_tools import timestamp_sentence

    tokens, stamps = ["你", "好", "hello"], [[0, 100], [100, 200], [200, 400]]
    for marks in ([], [1, 1, 3], [3, 1, 1], [2, 3, 4]):
        assert split_sentences(tokens, stamps, marks) == timestamp_sentence(marks, stamps, " ".join(tokens))
    assert split_sentences(tokens, stamps, [1, 1, 3], raw_text=True)[0]["raw_text"] == "你好 hello"
    assert split_sentences([], [], [3]) == []
    assert split_sentences(tokens, [], [1, 1, 3]) == []
    # a sentence of three tokens closed by a full stop, then one closed by a question mark
    assert split_sentences(["今", "天", "好", "吗"], [[0, 10], [10, 20], [20, 30], [30, 40]], [1, 1, 3, 4]) == [
        {"text": "今天好。", "start": 0, "end": 30, "timestamp": [[0, 10], [10, 20], [20, 30]]},
        {"text": "吗？", "start": 30, "end": 40, "timestamp": [[30, 40]]}]


def test_segment_texts_join_as_funasr():
    from funasr.auto.auto_model import _join_vad_texts

    cases = [["你好", "世界"], ["hello", "世界"], ["你好", "world"], ["", "  ", "好"], [], ["a b", "c"],
             ["你好 ", " 吗"]]
    for texts in cases:
        assert join_segment_texts(texts) == _join_vad_texts(texts), texts
    assert join_segment_texts(["你好", "世界", "ok"]) == "你好世界 ok"


def test_companion_arguments(tmp_path):
    (tmp_path / "configuration.json").write_text(json.dumps(
        {"framework": "pytorch", "vad_model": "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch",
         "vad_model_revision": "v2.0.4", "punc_model": "ct-punc"}))
    options = {"vad_model": "/my/vad", "batch_size_s": 60}
    assert companion_arguments(tmp_path, options) == {"vad_model": "/my/vad", "punc_model": "ct-punc",
                                                      "punc_model_revision": None}
    assert options == {"batch_size_s": 60}  # the composition arguments were taken out
    # configuration.json's companions apply unless the caller passes the argument, None included
    assert companion_arguments(tmp_path, {"punc_model": None}) == {
        "punc_model": None, "vad_model": "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch",
        "vad_model_revision": "v2.0.4"}
    with pytest.raises(CompositionError, match="speaker diarisation"):
        companion_arguments(tmp_path, {"spk_model": "cam++"})
    assert companion_arguments(tmp_path, {"spk_model": None, "vad_model": None, "punc_model": None}) == {
        "vad_model": None, "punc_model": None}
