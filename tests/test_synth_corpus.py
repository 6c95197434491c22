"""Tests for the text normaliser and the synthetic corpus generator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelscope_paraformer.tools.synth_corpus import (
    TEST_VOICES, TRAIN_VOICES, VOCAB, generate_corpus, plan_corpus, to_pinyin)
from modelscope_paraformer.tools.text_norm import (
    digits_to_chinese, int_to_chinese, normalize_text)

needs_tts = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng/sox not installed")


@pytest.mark.parametrize("n, expected", [
    (0, "零"), (10, "十"), (11, "十一"), (15, "十五"), (20, "二十"), (100, "一百"),
    (101, "一百零一"), (105, "一百零五"), (110, "一百一十"), (1000, "一千"), (1001, "一千零一"),
    (1010, "一千零一十"), (2024, "二千零二十四"), (10000, "一万"), (10010, "一万零一十"),
    (100000, "十万"), (150000, "十五万"), (100100, "十万零一百"), (100000001, "一亿零一"),
    (-5, "负五"),
])
def test_int_to_chinese(n: int, expected: str) -> None:
    assert int_to_chinese(n) == expected


def test_liang() -> None:
    assert int_to_chinese(2, use_liang=True) == "两"
    assert int_to_chinese(2024, use_liang=True) == "两千零二十四"
    assert int_to_chinese(22, use_liang=True) == "二十二"  # 两 only before a unit


def test_digits_and_normalize() -> None:
    assert digits_to_chinese("13812345670") == "一三八一二三四五六七零"
    assert normalize_text("12.5%") == "百分之十二点五"
    assert normalize_text("30%") == "百分之三十"
    assert normalize_text("3.05") == "三点零五"
    assert normalize_text("0.5") == "零点五"
    assert normalize_text("2024年3月5日") == "二零二四年三月五日"
    assert normalize_text("8:30开会") == "八点三十分开会"
    assert normalize_text("总共105元") == "总共一百零五元"
    with pytest.raises(ValueError):
        digits_to_chinese("12a")


def test_pinyin_yi_sandhi() -> None:
    assert to_pinyin("一月一号") == ["yi1", "yue4", "yi1", "hao4"]
    assert to_pinyin("一百一十一") == ["yi4", "bai3", "yi1", "shi2", "yi1"]
    assert to_pinyin("一块")[0] == "yi2" and to_pinyin("一毛")[0] == "yi4"
    assert to_pinyin("我的")[1] == "de5"  # espeak reads a bare "de" as tone 1


def test_texts_use_declared_vocab() -> None:
    texts = [u.text for u in plan_corpus(3000, seed=7)]
    used = set("".join(texts))
    assert used <= set(VOCAB)
    assert used == set(VOCAB), f"VOCAB lists unused chars: {set(VOCAB) - used}"
    assert len(set(texts)) == len(texts)  # unique within a corpus
    assert all(t.isalpha() and " " not in t for t in texts)


def test_test_split_unseen() -> None:
    train = plan_corpus(500, seed=1)
    test = plan_corpus(100, seed=2, split="test", exclude_texts={u.text for u in train})
    assert not set(TRAIN_VOICES) & set(TEST_VOICES)
    assert {u.voice for u in test} <= set(TEST_VOICES)
    assert not {u.text for u in test} & {u.text for u in train}


def _read_tree(root: Path) -> dict[str, bytes]:
    # Absolute wav paths differ between output dirs; compare them root-relative.
    return {str(p.relative_to(root)): p.read_bytes().replace(str(root).encode(), b"ROOT")
            for p in sorted(root.rglob("*")) if p.is_file()}


@needs_tts
def test_reproducible_and_valid_audio(tmp_path: Path) -> None:
    import soundfile as sf

    a = generate_corpus(tmp_path / "a", num_utts=6, seed=3, jobs=1)
    b = generate_corpus(tmp_path / "b", num_utts=6, seed=3, jobs=2)
    files_a, files_b = _read_tree(a), _read_tree(b)
    assert len(files_a) == 6 + 5 and files_a == files_b

    rows = [json.loads(line) for line in (a / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["key"] for r in rows] == sorted(r["key"] for r in rows)
    for r in rows:
        assert set(r["target"]) <= set(VOCAB) and r["target_len"] == len(r["target"])
        info = sf.info(r["source"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        x, _ = sf.read(r["source"], dtype="float32")
        dur = len(x) / 16000
        assert r["source_len"] == len(x) // 160
        assert np.sqrt(np.mean(x**2)) > 1e-3  # not silent
        # ~4 syllables/s speech, +-tempo/speed jitter and padding.
        assert 0.1 * len(r["target"]) < dur < 0.6 * len(r["target"]) + 1.5, (r, dur)
