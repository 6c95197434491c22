"""ModelScope integration: pipeline() on small random-weight models and real speech, both call styles, routing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import modelscope_paraformer
from modelscope_paraformer.core import ChunkSizeError, ModelDirError, StreamingDecoder, load_audio, load_model
from modelscope_paraformer.hub import resolve_model_dir

pipelines = pytest.importorskip("modelscope.pipelines")  # registers our classes (see registration.py)
from modelscope.utils.constant import Tasks  # noqa: E402

from modelscope_paraformer.integration import (ParaformerASRPipeline, ParaformerForASR,  # noqa: E402
                                               StreamingUnsupportedError)
from modelscope_paraformer.integration.routing import is_paraformer_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STRIDE = 10 * 960  # samples in one chunk_size[1] = 10 stride


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def wavs(speech, tmp_path_factory) -> list[Path]:
    """Two speech files: the example and its second half (different audio, for two interleaved sessions)."""
    import soundfile

    half = tmp_path_factory.mktemp("wavs") / "second_half.wav"
    soundfile.write(half, speech[len(speech) // 2:], 16000)
    return [REPO / "examples" / "asr_example_zh.wav", half]


@pytest.fixture(scope="session")
def online(small_models):
    return pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(small_models["online"]), device="cpu")


@pytest.fixture(scope="session")
def offline(small_models):
    return pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(small_models["offline"]), device="cpu")


def core_text(model_dir: Path, wav: Path, **stream_options) -> str:
    model = load_model(model_dir)
    if stream_options:
        return StreamingDecoder(model, **stream_options).decode_all(load_audio(wav)).text
    return model.transcribe([load_audio(wav)])[0].text


def stream(p, samples: np.ndarray, cache: dict, chunk: int = STRIDE, card_style: bool = False, **options) -> str:
    """Feed ``samples`` in pieces of ``chunk`` samples, the last with is_final; return the concatenated text."""
    text = ""
    for start in range(0, len(samples), chunk):
        params = {"cache": cache, "is_final": start + chunk >= len(samples), **options}
        if card_style:
            result = p(audio_in=samples[start:start + chunk], param_dict=params)
            text += result["text"]  # the model card's own indexing
        else:
            result = p(input=samples[start:start + chunk], **params)
            text += result[0]["text"]
        assert isinstance(result, list) and set(result[0]) == {"key", "text"}
    return text


@pytest.mark.parametrize("variant", ["offline", "online"])
def test_pipeline_matches_core(small_models, wavs, online, offline, variant):
    p = online if variant == "online" else offline
    assert isinstance(p, ParaformerASRPipeline)
    (result,) = p(str(wavs[0]))
    assert result["key"] == wavs[0].stem and result["timestamp"]
    assert result["text"] and result["text"] == core_text(small_models[variant], wavs[0])


def test_default_device_falls_back_to_cpu(small_models, wavs):
    p = pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(small_models["offline"]))  # device "gpu"
    assert p.model.paraformer.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("chunk_size", [[5, 10, 5], [0, 10, 5]])
def test_call_styles_match_streaming_decoder(small_models, wavs, online, chunk_size):
    samples = load_audio(wavs[0])
    expected = core_text(small_models["online"], wavs[0], chunk_size=chunk_size)
    card = stream(online, samples, {}, card_style=True, chunk_size=chunk_size)
    current = stream(online, samples, {}, chunk_size=chunk_size, encoder_chunk_look_back=4, decoder_chunk_look_back=1)
    assert expected and card == current == expected


def test_model_card_loop_verbatim(small_models, wavs, online):
    """The online model card's loop, minus its prints and the space it puts between pieces."""
    import soundfile

    speech, _ = soundfile.read(wavs[0])
    speech_length = speech.shape[0]
    sample_offset = 0
    chunk_size = [5, 10, 5]
    stride_size = chunk_size[1] * 960
    param_dict = {"cache": dict(), "is_final": False, "chunk_size": chunk_size}
    final_result = ""
    for sample_offset in range(0, speech_length, min(stride_size, speech_length - sample_offset)):
        if sample_offset + stride_size >= speech_length - 1:
            stride_size = speech_length - sample_offset
            param_dict["is_final"] = True
        rec_result = online(audio_in=speech[sample_offset: sample_offset + stride_size], param_dict=param_dict)
        if len(rec_result) != 0:
            final_result += rec_result["text"]
    assert final_result == core_text(small_models["online"], wavs[0], chunk_size=chunk_size)
    assert param_dict["cache"] == {}


def test_interleaved_sessions_are_independent(online, wavs):
    a, b = load_audio(wavs[0]), load_audio(wavs[1])
    alone = [stream(online, a, {}), stream(online, b, {})]
    caches, texts = ({}, {}), ["", ""]
    for start in range(0, max(len(a), len(b)), STRIDE):
        for i, samples in enumerate((a, b)):
            if start < len(samples):
                final = start + STRIDE >= len(samples)
                texts[i] += online(samples[start:start + STRIDE], cache=caches[i], is_final=final)[0]["text"]
    assert texts == alone and all(alone)


def test_cache_is_reusable_after_is_final(online, wavs):
    samples, cache = load_audio(wavs[0]), {}
    first = stream(online, samples, cache)
    assert cache == {}
    assert stream(online, samples, cache) == first


def test_odd_chunk_lengths_give_the_same_text(online, wavs):
    samples = load_audio(wavs[0])
    assert stream(online, samples, {}, chunk=1234) == stream(online, samples, {}) != ""


def test_online_without_cache_decodes_whole_input(small_models, online, wavs):
    (result,) = online(str(wavs[0]), chunk_size=[5, 10, 5], is_final=False)
    assert result["text"] == core_text(small_models["online"], wavs[0], chunk_size=[5, 10, 5])


@pytest.mark.parametrize("chunk_size", [[10], [0, 10], "abc", [0, 0, 5], [0, 10.5, 5]])
def test_bad_chunk_size_is_a_clear_value_error(online, wavs, chunk_size):
    with pytest.raises(ValueError, match="chunk_size"):
        online(load_audio(wavs[0])[:STRIDE], cache={}, is_final=False, chunk_size=chunk_size)
    with pytest.raises(ValueError, match="chunk_size"):
        online(audio_in=load_audio(wavs[0]), param_dict={"chunk_size": chunk_size})


def test_chunk_size_change_mid_session_is_refused(online, wavs):
    samples, cache = load_audio(wavs[0]), {}
    online(samples[:STRIDE], cache=cache, chunk_size=[0, 10, 5])
    online(samples[STRIDE:2 * STRIDE], cache=cache, chunk_size=(0, 10, 5))  # same settings, other spelling
    with pytest.raises(ChunkSizeError, match="mid-utterance"):
        online(samples[2 * STRIDE:3 * STRIDE], cache=cache, chunk_size=[5, 10, 5])
    online(samples[2 * STRIDE:], cache=cache, is_final=True)
    assert cache == {}


def test_streaming_on_offline_model_is_refused(small_models, offline, wavs):
    with pytest.raises(StreamingUnsupportedError, match="offline"):
        offline(load_audio(wavs[0]), cache={}, is_final=True)
    with pytest.raises(StreamingUnsupportedError, match="online"):
        pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(small_models["offline"]), device="cpu",
                           mode="paraformer_streaming")


def test_offline_list_input(offline, wavs, small_models):
    audio = [str(wavs[0]), load_audio(wavs[1])]
    for options in ({}, {"batch_size": 1}, {"batch_size_s": 1.0}):
        results = offline(audio, **options)
        assert [r["key"] for r in results] == [wavs[0].stem, "utt1"]
        assert [r["text"] for r in results] == [core_text(small_models["offline"], wav) for wav in wavs]


def test_wav_scp_input(offline, wavs, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"u{i} {wav}\n" for i, wav in enumerate(wavs)))
    results = offline(str(scp), batch_size=2)
    assert [r["key"] for r in results] == ["u0", "u1"]
    assert [r["text"] for r in results] == [r["text"] for r in offline([str(w) for w in wavs])]


def copy_with_configuration(source: Path, target: Path, configuration: dict) -> Path:
    shutil.copytree(source, target)
    (target / "configuration.json").write_text(json.dumps(configuration))
    return target


def test_legacy_configuration(small_models, wavs, tmp_path):
    legacy = {"framework": "pytorch", "task": "auto-speech-recognition",
              "model": {"type": "generic-asr", "model_config": {"mode": "paraformer_streaming"}},
              "pipeline": {"type": "asr-inference"}}
    model_dir = copy_with_configuration(small_models["online"], tmp_path / "legacy", legacy)
    p = pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(model_dir), device="cpu",
                           mode="paraformer_streaming")
    assert isinstance(p, ParaformerASRPipeline)
    assert stream(p, load_audio(wavs[0]), {}, card_style=True) == core_text(small_models["online"], wavs[0],
                                                                            chunk_size=(0, 10, 5))


@pytest.mark.parametrize("variant", ["offline", "online"])
def test_funasr_configuration_routes_to_this_package(small_models, wavs, tmp_path, variant):
    funasr_style = {"framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
                    "pipeline": {"type": "funasr-pipeline"}, "model_config": {},
                    "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                                        "tokenizer_conf": {"token_list": "tokens.json"},
                                        "frontend_conf": {"cmvn_file": "am.mvn"}}}
    model_dir = copy_with_configuration(small_models[variant], tmp_path / variant, funasr_style)
    p = pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(model_dir), device="cpu")
    assert isinstance(p, ParaformerASRPipeline) and isinstance(p.model, ParaformerForASR)  # funasr is not involved
    assert p(str(wavs[0]))[0]["text"] == core_text(small_models[variant], wavs[0])


def test_other_funasr_models_are_left_to_modelscope(small_models, tmp_path):
    other = tmp_path / "sensevoice"
    shutil.copytree(small_models["offline"], other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**config, "model": "SenseVoiceSmall"}))
    assert is_paraformer_dir(small_models["online"]) and is_paraformer_dir(small_models["offline"])
    assert not is_paraformer_dir(other) and not is_paraformer_dir(tmp_path / "missing") and not is_paraformer_dir(None)


def test_resolve_model_dir_stays_local(small_models, monkeypatch):
    monkeypatch.chdir(small_models["online"].parent)
    expected = small_models["online"].resolve()
    assert resolve_model_dir("./online") == resolve_model_dir("online") == resolve_model_dir(str(expected)) == expected
    for missing in ("./missing", "/nonexistent/model", "a/b/c", "~/no-such-model-dir"):
        with pytest.raises(ModelDirError, match="not found"):
            resolve_model_dir(missing)


def test_transcribe_helper(small_models, wavs):
    (result,) = modelscope_paraformer.transcribe(str(small_models["offline"]), str(wavs[0]), device="gpu")
    assert result.text == core_text(small_models["offline"], wavs[0])  # "gpu" as in pipeline(): CPU here


def run_python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (import-time behaviour); return its stdout."""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_is_cheap_and_core_works_without_modelscope(small_models, wavs):
    run_python("import sys, modelscope_paraformer as m\n"
               "assert 'torch' not in sys.modules and 'modelscope' not in sys.modules, sorted(sys.modules)\n"
               "sys.modules['modelscope'] = None  # as if modelscope were not installed\n"
               f"assert m.transcribe({str(small_models['offline'])!r}, {str(wavs[0])!r})[0].text")


def test_registration_in_either_import_order():
    """Pipelines loaded before this package (registered at import), trainers after it (registered by the hook)."""
    run_python("from modelscope.pipelines import builder\n"
               "import modelscope_paraformer\n"
               "assert builder.PIPELINES.get('paraformer-asr', 'auto-speech-recognition') is not None\n"
               "assert builder.build_pipeline.routes_paraformer\n"
               "from modelscope.trainers.builder import TRAINERS\n"
               "assert TRAINERS.get('paraformer-trainer') is not None")


def test_unreachable_hub_id_is_a_clear_error():
    """Without network (as here) or for a missing repo; retries cut short (modelscope reads them at import)."""
    code = ("from modelscope_paraformer.hub import resolve_model_dir\n"
            "try:\n    resolve_model_dir('damo/no-such-model-for-this-test', 'v2.0.4')\n"
            "except FileNotFoundError as error:\n    print(error)\n")
    out = run_python(code, MODELSCOPE_API_MAX_RETRIES="1", MODELSCOPE_DOWNLOAD_MAX_RETRIES="1")
    assert "does not exist as a local directory and could not be downloaded" in out


def test_session_copies_the_callers_chunk(online, wavs):
    """A chunk shorter than a stride waits in the session: reusing the caller's array must not change it."""
    samples, piece_length = load_audio(wavs[0]), 4000
    expected = stream(online, samples, {}, chunk=piece_length)
    cache, text, reused = {}, "", np.empty(piece_length, np.float32)  # like an audio callback's one buffer
    for start in range(0, len(samples), piece_length):
        piece = samples[start:start + piece_length]
        reused[:len(piece)] = piece
        text += online(reused[:len(piece)], cache=cache, is_final=start + piece_length >= len(samples))[0]["text"]
    assert expected and text == expected


def test_streaming_other_rates_resamples_the_stream_as_a_whole(small_models, online, wavs):
    """8 kHz chunks (fs=8000) through one stateful resampler: the text of the whole input resampled at once."""
    import librosa

    narrow = librosa.resample(load_audio(wavs[0]), orig_sr=16000, target_sr=8000)
    expected = StreamingDecoder(load_model(small_models["online"])).decode_all(load_audio(narrow, fs=8000)).text
    assert expected and stream(online, narrow, {}, chunk=4800, fs=8000) == expected
    cache = {}
    online(narrow[:4800], cache=cache, fs=8000)
    with pytest.raises(ValueError, match="sample rate changed"):
        online(narrow[4800:9600], cache=cache, fs=16000)


def test_raw_pcm_bytes_stream_like_arrays(online, wavs):
    """Headerless 16-bit PCM bytes (what FunASR reads bytes as, and websocket clients send), with an empty
    final chunk."""
    pcm = np.round(load_audio(wavs[0]) * 32767).astype("<i2")
    expected = stream(online, pcm.astype(np.float32) / 32768, {})
    cache, text = {}, ""
    for start in range(0, len(pcm), STRIDE):
        text += online(pcm[start:start + STRIDE].tobytes(), cache=cache)[0]["text"]
    text += online(b"", cache=cache, is_final=True)[0]["text"]
    assert expected and text == expected and cache == {}


def test_result_list_answers_like_the_old_dict(offline, wavs):
    result = offline(str(wavs[0]))
    assert "text" in result and "nothing" not in result and result.get("text") == result["text"] == result[0]["text"]
    assert set(result.keys()) == {"key", "text", "timestamp"} and result.get("missing", 1) == 1
    both = offline([str(wavs[0]), str(wavs[1])])
    with pytest.raises(KeyError, match="2 results"):
        both.get("text")


def test_keys_must_match_the_inputs(offline, wavs):
    with pytest.raises(ValueError, match="1 key"):
        offline([str(wavs[0]), str(wavs[1])], key="only-one")


def test_cli_stream_of_an_empty_file(small_models, tmp_path, capsys):
    import soundfile

    from modelscope_paraformer.__main__ import main

    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000)
    assert main(["stream", str(empty), "--model", str(small_models["online"])]) == 0
    assert capsys.readouterr().out.strip() == ""


def test_no_new_text_answers_one_empty_result_in_both_styles(online, wavs):
    samples = load_audio(wavs[0])
    legacy = online(audio_in=samples[:10], param_dict={"cache": {}, "is_final": False})
    current = online(input=samples[:10], cache={}, is_final=False)
    assert legacy == current == [{"key": "utt", "text": ""}] and legacy["text"] == ""


def test_batch_size_is_checked(offline, wavs):
    files = [str(w) for w in wavs]
    assert offline(files, batch_size="2") == offline(files, batch_size=1)
    with pytest.raises(ValueError, match="batch_size must be a number"):
        offline(files, batch_size="two")


def test_scp_among_other_inputs(offline, wavs, tmp_path):
    scp = tmp_path / "more.scp"
    scp.write_text(f"first {wavs[0]}\n")
    results = offline([str(scp), str(wavs[1])])
    assert [r["key"] for r in results] == ["first", wavs[1].stem]
    assert [r["text"] for r in results] == [r["text"] for r in offline([str(wavs[0]), str(wavs[1])])]


def test_cli_reports_option_conflicts(small_models, wavs, capsys):
    from modelscope_paraformer.__main__ import main

    assert main(["transcribe", str(wavs[0]), "--model", str(small_models["offline"]), "--dtype", "bf16",
                 "--quantize", "int8"]) == 2
    assert "error:" in capsys.readouterr().err


def test_bare_funasr_dir_with_the_pipeline_named(small_models, wavs, tmp_path):
    """config.yaml, model.pt, am.mvn, tokens.json and no configuration.json: modelscope cannot route it by
    itself, but naming our pipeline works."""
    bare = tmp_path / "bare"
    shutil.copytree(small_models["offline"], bare)
    (bare / "configuration.json").unlink()
    p = pipelines.pipeline(task=Tasks.auto_speech_recognition, model=str(bare), pipeline_name="paraformer-asr",
                           device="cpu")
    assert p(str(wavs[0]))[0]["text"] == core_text(small_models["offline"], wavs[0])
