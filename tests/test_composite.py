"""The model-card composite: sentence splitting and text joining equal funasr's; composition arguments."""
from __future__ import annotations

import json
import random
from pathlib import Path

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


# --- the composite against funasr on a recording with pauses --------------------------------------------------

@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """~60 s of espeak-ng Mandarin with pauses of 0.15-5 s (16 kHz float32 as read from its wav, and the wav)."""
    from modelscope_paraformer.tools.pause_recording import pause_recording

    path = tmp_path_factory.mktemp("recording") / "recording.wav"
    return pause_recording(path, seconds=60.0, seed=1), path


@pytest.fixture(scope="module")
def companions(tmp_path_factory) -> dict:
    from modelscope_paraformer.tools.random_punc import build_random_punc
    from modelscope_paraformer.tools.random_vad import build_random_vad

    root = tmp_path_factory.mktemp("companions")
    return {"vad": str(build_random_vad(root / "vad")), "punc": str(build_random_punc(root / "punc", "zh", 2000, 0, 2))}


@pytest.fixture(scope="module")
def funasr_composite(small_models, companions, recording):
    import funasr
    import torch

    model = funasr.AutoModel(model=str(small_models["offline"]), vad_model=companions["vad"],
                             punc_model=companions["punc"], disable_update=True, ncpu=torch.get_num_threads(),
                             disable_pbar=True, log_level="ERROR")
    return model.generate(input=recording[0], output_timestamp=True, sentence_timestamp=True)[0]


def test_composite_equals_funasr(small_models, companions, recording, funasr_composite):
    from modelscope_paraformer.core import load_model
    from modelscope_paraformer.composition import build_transcriber

    transcriber = build_transcriber(load_model(small_models["offline"]), small_models["offline"],
                                    {"vad_model": companions["vad"], "punc_model": companions["punc"]})
    segments = transcriber.vad.segments(recording[0])
    assert len(segments) >= 3  # the recording's pauses cut it: a test of the composite, not of one piece
    for batch_size_s in (300, 5):  # all segments in one batch; one segment per batch
        ours = transcriber.transcribe([recording[0]], ["rec"], batch_size_s=batch_size_s, sentence_timestamp=True)[0]
        assert ours["text"] == funasr_composite["text"]
        assert ours["timestamp"] == funasr_composite["timestamp"]
    # Sentences: funasr joins the segments' space-separated texts without a space at each VAD boundary, so its
    # sentence splitter sees two characters as one token there and is one token off from then on (its sentence
    # texts double a character, its timestamps drift). Up to the first boundary its sentences are ours; after it
    # ours still cover every token, mark and timestamp exactly once, in order (the splitter itself is held to
    # funasr's on correctly split input above).
    boundary = next(i for i, s in enumerate(funasr_composite["sentence_info"]) if s["end"] > segments[0][1])
    assert boundary > 3
    assert ours["sentence_info"][:boundary] == funasr_composite["sentence_info"][:boundary]
    # (class 0, <unk>, a random model predicts now and then: funasr writes "<unk>" into the text, no sentence end)
    assert "".join(s["text"] for s in ours["sentence_info"]) == ours["text"].replace("<unk>", "")
    assert [t for s in ours["sentence_info"] for t in s["timestamp"]] == ours["timestamp"]
    assert all(s["start"] == s["timestamp"][0][0] and s["end"] == s["timestamp"][-1][1] for s in ours["sentence_info"])


def test_pipeline_and_cli_compose_as_funasr(small_models, companions, recording, funasr_composite, tmp_path):
    """pipeline(..., vad_model=, punc_model=), a model dir whose configuration.json names them, and the CLI."""
    import shutil
    import subprocess
    import sys

    import modelscope_paraformer  # noqa: F401
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    asr = pipeline(task=Tasks.auto_speech_recognition, model=str(small_models["offline"]), device="cpu",
                   vad_model=companions["vad"], punc_model=companions["punc"])
    result = asr(str(recording[1]), batch_size_s=60, sentence_timestamp=True)[0]
    assert (result["text"], result["timestamp"]) == (funasr_composite["text"], funasr_composite["timestamp"])
    assert len(result["sentence_info"]) == len(funasr_composite["sentence_info"])

    named = tmp_path / "asr_with_companions"  # as the hub's vad-punc repos: configuration.json names them
    shutil.copytree(small_models["offline"], named)
    configuration = json.loads((named / "configuration.json").read_text())
    configuration.update(vad_model=companions["vad"], punc_model=companions["punc"], punc_model_revision="v2.0.4")
    (named / "configuration.json").write_text(json.dumps(configuration))
    implied = pipeline(task=Tasks.auto_speech_recognition, model=str(named), device="cpu")(str(recording[1]))[0]
    assert implied["text"] == funasr_composite["text"]
    plain = pipeline(task=Tasks.auto_speech_recognition, model=str(named), device="cpu", vad_model=None,
                     punc_model=None)(str(recording[1]))[0]
    assert "。" not in plain["text"] and plain["text"].replace(" ", "") != ""  # turned off: no punctuation

    out = subprocess.run([sys.executable, "-m", "modelscope_paraformer", "transcribe", str(recording[1]), "--model",
                          str(small_models["offline"]), "--vad-model", companions["vad"], "--punc-model",
                          companions["punc"], "--json"], capture_output=True, text=True, check=True)
    printed = json.loads(out.stdout)
    assert (printed["text"], printed["timestamp"]) == (funasr_composite["text"], funasr_composite["timestamp"])
    rows = tmp_path / "rows.jsonl"  # the bulk path (resumable, torchrun-sharded) composes too
    subprocess.run([sys.executable, "-m", "modelscope_paraformer", "transcribe", str(recording[1]), "--model",
                    str(small_models["offline"]), "--vad-model", companions["vad"], "--punc-model",
                    companions["punc"], "--output", str(rows)], capture_output=True, text=True, check=True)
    row = json.loads(rows.read_text(encoding="utf-8"))
    assert (row["text"], row["timestamp"]) == (funasr_composite["text"], funasr_composite["timestamp"])


def test_unsupported_companion_is_refused(small_models):
    import modelscope_paraformer  # noqa: F401
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    with pytest.raises(CompositionError, match="spk_model='cam\\+\\+': speaker diarisation is not implemented"):
        pipeline(task=Tasks.auto_speech_recognition, model=str(small_models["offline"]), device="cpu",
                 spk_model="cam++")


def test_hub_layout_companion_dirs_route_to_our_pipelines(companions, recording):
    """The hub's VAD and punctuation repos say funasr-pipeline; pipeline() builds ours for them, as for ASR."""
    import modelscope_paraformer  # noqa: F401
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    from modelscope_paraformer.core import load_punctuator, load_vad

    assert json.loads((Path(companions["vad"]) / "configuration.json").read_text())["pipeline"]["type"] == \
        "funasr-pipeline"
    vad = pipeline(task=Tasks.voice_activity_detection, model=companions["vad"], device="cpu")
    assert type(vad).__name__ == "FsmnVadPipeline"
    assert vad(recording[0])[0]["value"] == load_vad(companions["vad"]).segments(recording[0])
    punc = pipeline(task=Tasks.punctuation, model=companions["punc"], device="cpu")
    assert type(punc).__name__ == "PunctuationPipeline"
    assert punc("今天天气很好")[0]["text"] == load_punctuator(companions["punc"]).punctuate("今天天气很好").text


def test_pipeline_passes_hotwords_to_seaco(tmp_path, speech):
    """pipeline(..., hotword=...) (and the model card's param_dict) reach the SeACo decoder: the pipeline's text
    equals the core's with the same hotwords (the core's equals funasr's: test_timestamps_variants.py), and the
    hotwords change the text of this random model."""
    import modelscope_paraformer  # noqa: F401
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    from modelscope_paraformer.core import load_model
    from modelscope_paraformer.tools.random_model import build_random_model

    seaco = build_random_model(tmp_path / "seaco", "seaco", 2, 1, 64, 128, 100, seed=3)
    core = load_model(seaco)
    plain = core.transcribe([speech])[0].text
    hotwords = plain[1:3] + " " + "".join(ch for ch in "乙乜九乞也" if ch not in plain)[:2]
    biased = core.transcribe([speech], hotwords=hotwords)[0]
    asr = pipeline(task=Tasks.auto_speech_recognition, model=str(seaco), device="cpu")
    assert asr(speech, hotword=hotwords)[0]["text"] == biased.text
    assert asr(audio_in=speech, param_dict={"hotword": hotwords})[0]["text"] == biased.text
    assert asr(speech)[0]["text"] == plain != biased.text
