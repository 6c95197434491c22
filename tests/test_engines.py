"""The two engines under one algorithm: the torch engine and the onnxruntime engine of an exported dir decode
token-identically in float32 (and so like funasr, see test_parity_funasr.py), offline and streaming, single and
batched; the exported dir works through load_model, pipeline() and the CLI, without torch.

Paraformer-large width (512 / 2048 / 8404 tokens) at reduced depth (conftest's wide_models), random weights.
"""
from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelscope_paraformer.core import (BatchedStreamer, ModelDirError, ParaformerError, StreamingDecoder, load_audio,
                                        load_model)
from modelscope_paraformer.core.engines.onnx_export import export_onnx
from modelscope_paraformer.core.loading import load_for_inference

REPO = Path(__file__).resolve().parents[1]
SR = 16000


@pytest.fixture(scope="session")
def exported(wide_models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exported")
    return {variant: export_onnx(wide_models[variant], root / variant) for variant in ("offline", "online")}


@pytest.fixture(scope="module")
def clips(speech) -> list[np.ndarray]:
    """Shorter than one chunk, exactly two strides, ragged, and ~17 s."""
    return [speech[:7000], speech[:19200], speech, np.tile(speech, 3)]


def test_exported_dir_loads_as_onnx_recognizer(exported):
    for variant, directory in exported.items():
        model = load_model(directory)
        assert type(model).__name__ == "Recognizer" and type(model.engine).__name__ == "OnnxEngine"
        assert model.streaming is (variant == "online") and not (directory / "model.pt").exists()


def test_offline_engines_token_identical(wide_models, exported, clips):
    torch_model, onnx_model = load_model(wide_models["offline"]), load_model(exported["offline"])
    for batch_size in (1, 3):  # single and batched (ragged lengths: padding, masks)
        expected = torch_model.transcribe(clips, batch_size=batch_size)
        got = onnx_model.transcribe(clips, batch_size=batch_size)
        assert [g.token_ids for g in got] == [e.token_ids for e in expected]
        assert [g.timestamps for g in got] == [e.timestamps for e in expected]
    assert all(e.token_ids for e in expected)


@pytest.mark.parametrize("chunk_size", [(0, 10, 5), (0, 8, 4), (5, 10, 5)])
@pytest.mark.parametrize("look_backs", [(4, 1), (-1, -1), (0, 0)])
def test_streaming_engines_token_identical(wide_models, exported, speech, chunk_size, look_backs):
    torch_model, onnx_model = load_model(wide_models["online"]), load_model(exported["online"])
    audio = np.tile(speech, 2)
    expected = StreamingDecoder(torch_model, chunk_size, *look_backs).decode_all(audio)
    session = StreamingDecoder(onnx_model, chunk_size, *look_backs)
    for start in range(0, len(audio), 7000):  # feeds that do not align with strides
        session.feed(audio[start:start + 7000])
    session.finish()
    assert session.result.token_ids == expected.token_ids and session.result.timestamps == expected.timestamps
    assert expected.token_ids


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_batched_streaming_equals_single_on_both_engines(wide_models, exported, speech, engine):
    model = load_model(wide_models["online"] if engine == "torch" else exported["online"])
    audios = {0: speech, 1: np.roll(speech, 5000)[:60000], 2: np.tile(speech, 2)[:130000]}
    expected = {i: StreamingDecoder(model).decode_all(a).token_ids for i, a in audios.items()}
    streamer = BatchedStreamer(model)
    for i in audios:
        streamer.open(i)
    for start in range(0, max(map(len, audios.values())), 9600):
        for i, audio in audios.items():
            if start < len(audio):
                streamer.feed(i, audio[start:start + 9600], is_final=start + 9600 >= len(audio))
        streamer.run_until_idle()
    assert {i: streamer.result(i).token_ids for i in audios} == expected and all(expected.values())


def test_long_audio_on_onnx(wide_models, exported, speech):
    """Long inputs are cut at pauses and decoded in batches on either engine alike."""
    gap = np.zeros(SR, np.float32)
    long_audio = np.concatenate([np.concatenate([speech, gap]) for _ in range(12)])  # 80 s
    for variant in ("offline", "online"):
        expected = load_model(wide_models[variant]).recognizer.transcribe_long(long_audio, "long", batch_size=4)
        got = load_model(exported[variant]).transcribe_long(long_audio, "long", batch_size=4)
        assert got.token_ids == expected.token_ids and got.timestamps == expected.timestamps
        assert len(got.token_ids) > 100


def test_int8_export_agrees_with_fp32(wide_models, tmp_path, speech):
    out = export_onnx(wide_models["online"], tmp_path / "int8", quantize="int8")
    manifest = json.loads((out / "onnx_manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["quantization"]
    assert (out / "encoder_chunk.onnx").stat().st_size < 0.4 * (wide_models["online"] / "model.pt").stat().st_size
    reference = StreamingDecoder(load_model(wide_models["online"])).decode_all(speech).token_ids
    got = StreamingDecoder(load_for_inference(out, quantize="int8")).decode_all(speech).token_ids
    assert difflib.SequenceMatcher(None, reference, got).ratio() >= 0.7  # an approximation, bounded
    with pytest.raises(ParaformerError, match="int8"):
        load_for_inference(out, dtype="bf16")


def test_precision_and_engine_requests_are_checked(wide_models, exported):
    with pytest.raises(ParaformerError, match="int8"):
        load_for_inference(exported["online"], quantize="int8")  # an fp32 export cannot become int8
    with pytest.raises(ModelDirError, match="export it first"):
        load_model(wide_models["online"], engine="onnx")
    with pytest.raises(ModelDirError, match="engine='onnx'"):
        load_model(exported["online"], engine="torch")


def test_broken_exports_give_clear_errors(exported, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(exported["online"], broken)
    (broken / "decoder_chunk.onnx").unlink()
    with pytest.raises(ParaformerError, match="decoder_chunk.onnx is missing"):
        load_model(broken)
    (broken / "onnx_manifest.json").write_text("{not json")
    with pytest.raises(ParaformerError, match="malformed JSON"):
        load_model(broken)


def test_onnx_dir_decodes_without_torch(exported, speech):
    """A deployment without the torch wheel: importing, loading and decoding an exported dir never imports it."""
    code = (
        "import sys, numpy as np\n"
        "from modelscope_paraformer import load_model, StreamingDecoder, load_audio\n"
        f"m = load_model({str(exported['online'])!r}, num_threads=1)\n"
        f"r = StreamingDecoder(m).decode_all(load_audio({str(REPO / 'examples' / 'asr_example_zh.wav')!r}))\n"
        f"o = load_model({str(exported['offline'])!r}).transcribe([np.zeros(16000, np.float32)])\n"
        "assert r.token_ids and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
        "print(len(r.token_ids))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = StreamingDecoder(load_model(exported["online"])).decode_all(speech).token_ids
    assert int(out.stdout.split()[-1]) == len(expected)


def test_cli_runs_an_exported_dir(exported, tmp_path):
    wav = str(REPO / "examples" / "asr_example_zh.wav")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    expected = StreamingDecoder(load_model(exported["online"])).decode_all(load_audio(wav)).text
    run = [sys.executable, "-m", "modelscope_paraformer"]
    out = subprocess.run([*run, "transcribe", wav, "--model", str(exported["online"]), "--json", "--num-threads", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1])["text"] == expected
    out = subprocess.run([*run, "stream", wav, "--model", str(exported["online"])], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == expected
    out = subprocess.run([*run, "transcribe", wav, "--model", str(exported["online"]), "--dtype", "bf16"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and "cannot apply" in out.stderr


def test_cli_export_of_the_demo_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out_dir = tmp_path / "demo-onnx"
    out = subprocess.run([sys.executable, "-m", "modelscope_paraformer", "export", "--out", str(out_dir)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    from modelscope_paraformer import DEMO_MODEL_DIR

    speech = load_audio(REPO / "examples" / "asr_example_zh.wav")
    expected = StreamingDecoder(load_model(DEMO_MODEL_DIR)).decode_all(speech)
    got = StreamingDecoder(load_model(out_dir)).decode_all(speech)
    assert got.token_ids == expected.token_ids and got.text == (REPO / "examples" / "asr_example_zh.txt").read_text(
        encoding="utf-8").strip()


def test_pipeline_runs_an_exported_dir(exported, speech):
    pipelines = pytest.importorskip("modelscope.pipelines")
    from modelscope.utils.constant import Tasks

    import modelscope_paraformer  # noqa: F401  (registers the classes)

    asr = pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(exported["online"]),
                             mode="paraformer_streaming", device="cpu")
    expected = StreamingDecoder(load_model(exported["online"])).decode_all(speech)
    assert asr(speech)[0]["text"] == expected.text
    cache, texts = {}, []
    for start in range(0, len(speech), 9600):
        final = start + 9600 >= len(speech)
        texts.append(asr(input=speech[start:start + 9600], cache=cache, is_final=final)[0]["text"])
    assert "".join(texts) == expected.text and expected.text
    offline = pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(exported["offline"]), device="cpu")
    assert offline(speech)[0]["text"] == load_model(exported["offline"]).transcribe([speech])[0].text
