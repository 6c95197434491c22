"""Bad input gets a clear, specific error or a correct result; never a crash deep inside torch."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modelscope_paraformer.core import (AudioError, CheckpointError, ChunkSizeError, ConfigError, ModelDirError,
                                        StreamingDecoder, load_audio, load_model)


@pytest.fixture(scope="module")
def online(small_models):
    return load_model(small_models["online"])


@pytest.fixture(scope="module")
def offline(small_models):
    return load_model(small_models["offline"])


@pytest.mark.parametrize("samples", [np.zeros(0, np.float32), np.zeros(1, np.float32), np.zeros(300, np.float32)],
                         ids=["empty", "1-sample", "under-one-frame"])
def test_too_short_gives_empty_text(offline, online, samples):
    assert offline.transcribe([samples])[0].text == ""
    assert StreamingDecoder(online).decode_all(samples).token_ids == []


def test_silence_and_clipping_decode(offline, speech):
    silent = np.zeros(32000, np.float32)
    clipped = np.clip(speech * 20, -1, 1)
    over_range = speech * 5  # float beyond [-1, 1]: scaled like FunASR, no crash
    results = offline.transcribe([silent, clipped, over_range])
    assert all(isinstance(r.text, str) for r in results)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_rejected(bad):
    samples = np.zeros(16000, np.float32)
    samples[100] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(samples)


def test_integer_and_multichannel_arrays_scale_like_float(speech):
    int16 = np.round(speech * 32767).astype(np.int16)
    assert np.allclose(load_audio(int16), speech, atol=1e-4)
    int32 = int16.astype(np.int32) << 16
    assert np.allclose(load_audio(int32), speech, atol=1e-4)
    stereo = np.stack([speech, speech], axis=1)
    assert np.allclose(load_audio(stereo), speech, atol=1e-6)
    assert np.allclose(load_audio(stereo.T.copy()), speech, atol=1e-6)  # (channels, samples) too
    assert np.allclose(load_audio(torch.from_numpy(speech)), speech)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_sample_rates_are_resampled(offline, tmp_path, speech, rate):
    import librosa

    resampled = librosa.resample(speech, orig_sr=16000, target_sr=rate)
    path = tmp_path / f"speech_{rate}.wav"
    soundfile.write(path, resampled, rate)
    loaded = load_audio(path)
    assert abs(len(loaded) - len(speech)) <= 16000 * 0.01
    assert offline.transcribe([loaded])[0].text is not None
    assert abs(len(load_audio(resampled, fs=rate)) - len(speech)) <= 160


def test_8bit_and_stereo_files(tmp_path, speech):
    eight = tmp_path / "eight.wav"
    soundfile.write(eight, speech, 16000, subtype="PCM_U8")
    assert np.abs(load_audio(eight) - speech).max() < 0.02
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.stack([speech, -speech * 0], axis=1), 16000)
    assert np.allclose(load_audio(stereo), speech / 2, atol=1e-4)


def test_unreadable_files(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(text)
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")


def test_truncated_wav_reads_what_is_there(tmp_path, speech):
    path = tmp_path / "full.wav"
    soundfile.write(path, speech, 16000, subtype="PCM_16")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(path.read_bytes()[:20000])
    try:
        samples = load_audio(truncated)
    except AudioError:
        return  # a clear error is acceptable
    assert 0 < len(samples) <= 10000


@pytest.mark.parametrize("missing", ["config.yaml", "model.pt", "am.mvn", "tokens.json"])
def test_model_dir_missing_a_file(small_models, tmp_path, missing):
    broken = tmp_path / "model"
    shutil.copytree(small_models["offline"], broken)
    (broken / missing).unlink()
    with pytest.raises(ModelDirError, match=missing.split(".")[0] if missing != "model.pt" else "weights"):
        load_model(broken)


def test_malformed_config_and_foreign_architecture(small_models, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(small_models["offline"], broken)
    (broken / "config.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_model(broken)
    (broken / "config.yaml").write_text("model: SenseVoiceSmall\nencoder: SenseVoiceEncoderSmall\n")
    with pytest.raises(ConfigError, match="not a Paraformer"):
        load_model(broken)
    (broken / "configuration.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="malformed JSON"):
        load_model(broken)


@pytest.mark.parametrize("mmap", [False, True])
def test_checkpoint_mismatch_is_reported_with_keys(small_models, tmp_path, mmap):
    broken = tmp_path / "model"
    shutil.copytree(small_models["offline"], broken)
    state = torch.load(broken / "model.pt", weights_only=True)
    state.pop("decoder.output_layer.bias")
    state["encoder.after_norm.weight"] = torch.zeros(3)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, broken / "model.pt")
    with pytest.raises(CheckpointError) as error:
        load_model(broken, mmap=mmap)
    message = str(error.value)
    assert "decoder.output_layer.bias" in message and "extra.weight" in message and "after_norm" in message
    original = (Path(small_models["offline"]) / "model.pt").read_bytes()
    for damaged in (b"garbage", original[: len(original) // 2]):  # not a checkpoint; truncated
        (broken / "model.pt").write_bytes(damaged)
        with pytest.raises(CheckpointError, match="not a loadable"):
            load_model(broken, mmap=mmap)


@pytest.mark.parametrize("chunk_size", [[10], [0, 10], [0, 0, 5], "abc", [0, 10.5, 5], [-1, 10, 5]])
def test_wrong_chunk_sizes(online, chunk_size):
    with pytest.raises(ChunkSizeError):
        StreamingDecoder(online, chunk_size)


def test_streaming_an_offline_model_is_a_clear_error(offline):
    with pytest.raises(ChunkSizeError, match="offline"):
        StreamingDecoder(offline)


def test_arrays_that_are_not_waveforms_are_named(speech):
    with pytest.raises(AudioError, match="int64 samples are no PCM format"):
        load_audio(np.round(speech * 32767).astype(np.int64))
    with pytest.raises(AudioError, match=r"shape \(16, 16000\)"):
        load_audio(np.zeros((16, 16000), np.float32))  # 16 "channels" or a batch: ambiguous, not averaged
    for bad_rate in (0, -8000, "fast", 8000.5):
        with pytest.raises(AudioError, match="fs must be a positive sample rate"):
            load_audio(speech, fs=bad_rate)
    assert len(load_audio(speech[:8000], fs="8000")) == 16000  # a numeric string is a rate


def test_bytes_are_a_file_or_headerless_pcm(speech, tmp_path):
    pcm = np.round(speech * 32767).astype("<i2")
    assert np.allclose(load_audio(pcm.tobytes()), pcm / 32768.0)
    assert len(load_audio(pcm.tobytes(), fs=8000)) == 2 * len(pcm)
    assert load_audio(b"").size == 0
    with pytest.raises(AudioError, match="odd length"):
        load_audio(pcm.tobytes()[:-1])
    path = tmp_path / "speech.wav"
    soundfile.write(path, speech, 16000)
    with pytest.raises(AudioError, match="not a readable audio file"):  # a damaged file is not read as PCM
        load_audio(path.read_bytes()[:30])


def test_kaldi_and_url_failures_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="Kaldi ark"):
        load_audio(f"ark:{tmp_path / 'missing.ark'}:12")
    with pytest.raises(AudioError, match="cannot download"):
        load_audio("http://127.0.0.1:9/nothing.wav")  # the discard port: connection refused


def test_stream_resampler_equals_whole_resampling(speech):
    from modelscope_paraformer.core.audio import StreamResampler, resample

    narrow = resample(speech, 16000, 8000)
    resampler = StreamResampler(8000)
    pieces = [resampler(narrow[i:i + 1234], 8000, last=i + 1234 >= len(narrow)) for i in range(0, len(narrow), 1234)]
    whole, streamed = resample(narrow, 8000), np.concatenate(pieces)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(whole), len(streamed))
    assert np.abs(streamed[:n] - whole[:n]).max() < 1e-3


def test_stream_drops_special_tokens_with_their_timestamps(online):
    from modelscope_paraformer.core.engine import ChunkInput

    session = StreamingDecoder(online, [0, 10, 5]).state
    window = ChunkInput(np.zeros((15, 1), np.float32), start=20)
    assert session.record([7, 2, 9], [2, 5, 9], window) == [7, 9]
    assert session.token_ids == [7, 9]
    # boundaries are fires shifted 1.5 frames earlier (the offline convention); 9 starts after 2's fire (25)
    assert session.timestamps == [[int((22 - 12 - 1.5) * 60), int((22 - 1.5) * 60)],
                                  [int((25 - 1.5) * 60), int((29 - 1.5) * 60)]]


@pytest.mark.parametrize("length", [9600, 9700, 96000])
def test_no_look_ahead_flushes_without_an_empty_window(online, speech, length):
    """chunk_size [0, 10, 0]: no overlap frames, so a final flush with under one frame left has nothing to
    encode (it used to run the encoder on an empty window)."""
    audio = np.tile(speech, 3)[:length]
    whole = StreamingDecoder(online, (0, 10, 0)).decode_all(audio)
    session = StreamingDecoder(online, (0, 10, 0))
    for start in range(0, length, 9600):
        session.feed(audio[start:start + 9600])
    session.finish()
    assert whole.token_ids and session.result.token_ids == whole.token_ids


def test_finishing_twice_keeps_the_result(online, speech):
    session = StreamingDecoder(online)
    session.feed(speech, is_final=True)
    first = session.result
    assert first.token_ids and session.finish() == [] and session.result is first
    session.feed(np.zeros(100, np.float32), is_final=True)  # a new (too short) utterance does replace it
    assert session.result.token_ids == [] and session.result is not first


def test_transcribe_takes_any_waveform_and_checks_keys(offline, online, speech):
    for model in (offline, online):
        expected = model.transcribe([speech])[0].token_ids
        int16 = np.round(speech * 32767).astype(np.int16)
        variants = [torch.from_numpy(speech), speech[:, None], np.stack([speech, speech], axis=1), int16]
        assert all(r.token_ids == expected for r in model.transcribe(variants)[:3]) and expected
        with pytest.raises(ValueError, match="1 key"):
            model.transcribe([speech, speech], keys=["a"])
    assert np.allclose(load_audio(torch.from_numpy(speech).bfloat16()), speech, atol=1e-2)


def test_token_list_of_another_model_is_named(small_models, tmp_path):
    import json

    broken = tmp_path / "model"
    shutil.copytree(small_models["offline"], broken)
    tokens = json.loads((broken / "tokens.json").read_text())
    (broken / "tokens.json").write_text(json.dumps(tokens[:-3]))
    with pytest.raises(CheckpointError, match=f"token list has {len(tokens) - 3} tokens"):
        load_model(broken)
