"""Timestamps, BiCifParaformer and SeacoParaformer (hotwords): tokens and timestamps equal to funasr's.

Random-weight models at Paraformer-large width (512, 2048 units, 8404 tokens) and reduced depth (2 encoder
blocks, 1 decoder block; SeACo's seaco decoder keeps its 6 layers). funasr runs on the same dirs with dither 0.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from modelscope_paraformer.core import load_model
from modelscope_paraformer.core.checkpoint import CheckpointError
from modelscope_paraformer.core.config import ConfigError, read_yaml
from modelscope_paraformer.core.hotwords import HotwordError
from modelscope_paraformer.core.vad import split_long_audio
from modelscope_paraformer.tools.random_model import build_random_model

funasr = pytest.importorskip("funasr")

VARIANTS = ("offline", "bicif", "seaco")
SR = 16000


@pytest.fixture(scope="module", autouse=True)
def single_thread(one_thread):
    """One thread for both sides (funasr resets torch to ``ncpu`` threads at every call): the decoder-side ops
    are small, and spinning OpenMP threads on a busy machine cost more than they give."""


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    return {variant: build_random_model(root / variant, variant, 2, 1, seed=11) for variant in VARIANTS}


@pytest.fixture(scope="module")
def ours(dirs):
    return {variant: load_model(path) for variant, path in dirs.items()}


@pytest.fixture(scope="module")
def reference(dirs):
    logging.getLogger().setLevel(logging.WARNING)
    return {variant: funasr.AutoModel(model=str(path), disable_update=True, ncpu=1, device="cpu",
                                      log_level="ERROR")
            for variant, path in dirs.items()}


@pytest.fixture(scope="module")
def clips(speech):
    """The example, a short piece, the example with 2 s of silence before and after (silence handling), and its
    first 3 s (for the hotword tests, the slowest)."""
    silence = np.zeros(2 * SR, np.float32)
    return {"example": speech, "short": speech[:12000], "padded": np.concatenate([silence, speech, silence]),
            "3 s": speech[:3 * SR]}


def _funasr(model, audio, **options):
    """funasr's text (spaces dropped) and timestamps; its negative times (a peak in the first 1.5 frames gives
    -30 or -90 ms) are 0 here, the one deliberate difference."""
    options.setdefault("output_timestamp", True)  # plain Paraformer emits timestamps only when asked
    result = model.generate(input=audio, disable_pbar=True, **options)[0]
    return result["text"].replace(" ", ""), [[max(0, start), max(0, end)] for start, end in result["timestamp"]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_funasr_loads_every_key(dirs, ours, reference, variant):
    """funasr loads mismatching checkpoints silently: check that it holds exactly our tensors."""
    theirs, mine = reference[variant].model.state_dict(), ours[variant].state_dict()
    assert set(theirs) == set(mine)
    assert all(torch.equal(theirs[key], mine[key]) for key in mine)
    on_disk = torch.load(dirs[variant] / "model.pt", weights_only=True)
    assert set(on_disk) == set(mine)


@pytest.mark.parametrize("variant", VARIANTS)
def test_tokens_and_timestamps_match_funasr(ours, reference, clips, variant):
    for name, audio in clips.items():
        got = ours[variant].transcribe([audio])[0]
        text, stamps = _funasr(reference[variant], audio)
        assert got.text == text, (variant, name)
        assert got.timestamps == stamps, (variant, name)
        assert len(got.timestamps) == len(got.token_ids) > 0, (variant, name)


@pytest.mark.parametrize("variant", ["offline", "bicif"])
def test_long_audio_segments_keep_absolute_times(ours, reference, speech, variant):
    """Cut at pauses, each segment's stamps are funasr's for that segment plus its start in whole ms (as funasr
    offsets VAD segments)."""
    gap = np.zeros(SR, np.float32)
    audio = np.concatenate([np.concatenate([speech, gap]) for _ in range(3)])  # 20 s
    segments = split_long_audio(audio, 8.0)
    assert len(segments) >= 2
    got = ours[variant].recognizer.transcribe_long(audio, max_seconds=8.0)
    expected_text, expected_stamps = "", []
    for start, end in segments:
        text, stamps = _funasr(reference[variant], audio[start:end])
        expected_text += text
        expected_stamps += [[a + start * 1000 // SR, b + start * 1000 // SR] for a, b in stamps]
    assert got.text == expected_text
    assert got.timestamps == expected_stamps
    assert got.timestamps[-1][0] > segments[-1][0] * 1000 // SR  # absolute, not per segment


def test_batch_equals_single(ours, clips):
    audios = [clips["short"], clips["example"]]
    for variant in ("bicif", "seaco"):
        hotwords = "丁七 万" if variant == "seaco" else None
        batched = ours[variant].transcribe(audios, batch_size=3, hotwords=hotwords)
        single = [ours[variant].transcribe([a], hotwords=hotwords)[0] for a in audios]
        assert [(r.token_ids, r.timestamps) for r in batched] == [(r.token_ids, r.timestamps) for r in single]


# --------------------------------------------------------------------------------------------------- hotwords
@pytest.fixture(scope="module")
def plain_seaco(ours, clips):
    return ours["seaco"].transcribe([clips["3 s"]])[0]


def test_seaco_hotwords_match_funasr(ours, reference, clips, plain_seaco, tmp_path):
    heard = plain_seaco.text[2:5]  # characters the model recognises in the audio
    unheard = "".join(ch for ch in "乙乜九乞也习乡" if ch not in plain_seaco.text)[:3]
    lines = [heard, unheard]
    path = tmp_path / "hotwords.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    audio = clips["3 s"]
    results = {}
    for name, form in [("string", f"{heard} {unheard}"), ("file", str(path)), ("unheard only", unheard)]:
        got = ours["seaco"].transcribe([audio], hotwords=form)[0]
        results[name] = (got.text, got.timestamps)
        assert results[name] == _funasr(reference["seaco"], audio, hotword=form), name
    listed = ours["seaco"].transcribe([audio], hotwords=lines)[0]  # funasr takes no list: the file's lines
    assert (listed.text, listed.timestamps) == results["file"] == results["string"]
    assert results["string"][0] != plain_seaco.text  # the hotword branch changed the tokens


def test_seaco_without_hotwords_matches_funasr(ours, reference, clips, plain_seaco):
    assert (plain_seaco.text, plain_seaco.timestamps) == _funasr(reference["seaco"], clips["3 s"])


def test_seaco_filters_over_50_hotwords(ours, reference, clips):
    """Over 50 hotwords, the 50 the seaco decoder attends to most are kept (per utterance), as in funasr."""
    hotwords = " ".join(chr(0x4E00 + 7 * i) + chr(0x4E01 + 7 * i) for i in range(60))
    got = ours["seaco"].transcribe([clips["3 s"]], hotwords=hotwords)[0]
    assert (got.text, got.timestamps) == _funasr(reference["seaco"], clips["3 s"], hotword=hotwords)


def test_hotwords_on_a_model_without_them_warn_and_are_ignored(ours, clips, caplog):
    from modelscope_paraformer.core import recognizer

    recognizer._warn_hotwords_ignored.cache_clear()  # it warns once per model type and process
    plain = ours["offline"].transcribe([clips["short"]])[0]
    with caplog.at_level(logging.WARNING):
        biased = ours["offline"].transcribe([clips["short"]], hotwords="丁七")[0]
    assert biased.token_ids == plain.token_ids
    assert "does not support hotwords" in caplog.text


def test_bad_hotwords_are_clear_errors(ours, clips, tmp_path):
    with pytest.raises(HotwordError, match="not found"):
        ours["seaco"].transcribe([clips["short"]], hotwords=str(tmp_path / "missing.txt"))
    with pytest.raises(HotwordError, match="must be a string"):
        ours["seaco"].transcribe([clips["short"]], hotwords=[1, 2])
    with pytest.raises(HotwordError, match="URL"):
        ours["seaco"].transcribe([clips["short"]], hotwords="https://example.com/hotwords.txt")


# ------------------------------------------------------------------------------------------------------ errors
def test_variant_dirs_refused_where_unsupported(dirs, ours, tmp_path):
    from modelscope_paraformer.core.engines.onnx_export import export_onnx
    from modelscope_paraformer.core.errors import ParaformerError

    with pytest.raises(ParaformerError, match="cannot be exported to ONNX"):
        export_onnx(ours["bicif"], tmp_path / "onnx")
    import yaml

    config = read_yaml(dirs["seaco"] / "config.yaml")
    config["seaco_decoder_conf"]["use_output_layer"] = True
    broken = tmp_path / "seaco"
    broken.mkdir()
    for name in ("model.pt", "am.mvn", "tokens.json"):
        (broken / name).symlink_to(dirs["seaco"] / name)
    (broken / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    with pytest.raises(ConfigError, match="use_output_layer must be false"):
        load_model(broken)
    config["seaco_decoder_conf"]["use_output_layer"] = False
    config["model_conf"]["bias_encoder_bid"] = True  # the checkpoint has no lstm_proj nor reverse LSTM weights
    (broken / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    with pytest.raises(CheckpointError, match="missing keys: bias_encoder.weight_ih_l0_reverse"):
        load_model(broken)
