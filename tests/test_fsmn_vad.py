"""Native FSMN-VAD against funasr's FsmnVADStreaming on the same random hub-layout model and audio.

The recording (~75 s, :mod:`modelscope_paraformer.tools.pause_recording`) is espeak-ng Mandarin sentences at
varying levels, with pauses of 0.15-5 s and a noise floor: long enough for FunASR's 60 s offline step and its
end-silence schedule. Segments must be equal to funasr's, offline (schedule and fixed end silence) and per
streaming call (200 ms / 600 ms steps, chunks of the step's size and ragged ones).
"""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from modelscope_paraformer.core import load_vad
from modelscope_paraformer.core.audio import AudioError
from modelscope_paraformer.core.checkpoint import CheckpointError
from modelscope_paraformer.core.config import ConfigError
from modelscope_paraformer.core.fsmn_vad import VadError
from modelscope_paraformer.tools.pause_recording import RATE, pause_recording
from modelscope_paraformer.tools.random_vad import VAD_CONFIG, build_random_vad

funasr = pytest.importorskip("funasr")

@pytest.fixture(scope="session")
def recording(tmp_path_factory) -> np.ndarray:
    """The pause-rich test recording (16 kHz float32, read back from its 16-bit wav), built once per run."""
    return pause_recording(tmp_path_factory.mktemp("vad_audio") / "pauses.wav")


@pytest.fixture(scope="module")
def vad_dir(tmp_path_factory):
    return build_random_vad(tmp_path_factory.mktemp("fsmn_vad") / "vad", seed=0)


def _funasr(model_dir, **options):
    logging.getLogger().setLevel(logging.WARNING)
    return funasr.AutoModel(model=str(model_dir), disable_update=True, ncpu=1, device="cpu", log_level="ERROR",
                            **options)


@pytest.fixture(scope="module")
def reference(vad_dir, one_thread):
    return _funasr(vad_dir)


def _pieces(samples: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Consecutive pieces of ``samples`` cycling through ``sizes``; the last one takes the rest."""
    pieces, start, index = [], 0, 0
    while start < len(samples):
        pieces.append(samples[start:start + sizes[index % len(sizes)]])
        start += len(pieces[-1])
        index += 1
    return pieces


def _funasr_stream(model, pieces: list[np.ndarray], chunk_ms: int) -> list[list[list[int]]]:
    cache: dict = {}
    return [model.generate(input=piece, cache=cache, is_final=i == len(pieces) - 1, chunk_size=chunk_ms,
                           disable_pbar=True)[0]["value"] for i, piece in enumerate(pieces)]


@pytest.fixture(scope="module")
def streamed(reference, recording):
    """funasr's per-call answers: {(chunk_ms, piece sizes): (pieces, answers)}."""
    samples = recording
    cases = {(200, (3200,)): samples[:24 * RATE], (600, (9600,)): samples,
             (600, (4000, 13001, 777)): samples[:40 * RATE]}
    out = {}
    for (chunk_ms, sizes), audio in cases.items():
        pieces = _pieces(audio, list(sizes))
        out[chunk_ms, sizes] = pieces, _funasr_stream(reference, pieces, chunk_ms)
    return out


def test_random_vad_is_the_hub_architecture_and_funasr_loads_every_key(vad_dir, reference):
    checkpoint = torch.load(vad_dir / "model.pt", weights_only=True)
    theirs = reference.model.state_dict()
    assert sorted(theirs) == sorted(checkpoint)
    assert all(torch.equal(theirs[key], checkpoint[key]) for key in checkpoint)  # loaded, not left random
    ours = load_vad(vad_dir)
    assert {key: tuple(v.shape) for key, v in ours.network.state_dict().items()} == \
           {key: tuple(v.shape) for key, v in theirs.items()}
    assert sum(v.numel() for v in checkpoint.values()) == 428_738  # what the hub config's sizes make
    assert VAD_CONFIG["encoder_conf"]["output_dim"] == 248 and VAD_CONFIG["frontend_conf"]["lfr_m"] == 5
    options = _funasr(vad_dir).model.vad_opts  # a fresh one: funasr's calls change their model's options
    assert all(getattr(options, name) == value for name, value in vars(ours.options).items())


def test_posteriors_equal_funasr(vad_dir, reference, recording):
    """Same features and class posteriors as funasr's frontend and network (before any decision)."""
    ours = load_vad(vad_dir)
    audio = recording[:10 * RATE]
    cache = {}
    feats, _ = reference.kwargs["frontend"](torch.from_numpy(audio)[None], torch.tensor([len(audio)]), is_final=True,
                                            cache=cache)
    with torch.inference_mode():
        expected = reference.model.encoder(feats, cache={})
        got, _ = ours.network(feats, ours.network.initial_cache())
    assert torch.equal(got, expected)  # bit for bit
    silence = expected[0, :, 0]
    assert silence.max() > 0.9 and silence.min() < 0.05  # the energy path: quiet frames silent, speech not


@pytest.mark.parametrize("end_silence", [None, 500])
def test_offline_segments_equal_funasr(vad_dir, reference, recording, end_silence):
    samples = recording
    options = {} if end_silence is None else {"max_end_silence_time": end_silence}
    expected = reference.generate(input=samples, disable_pbar=True, **options)[0]["value"]
    got = load_vad(vad_dir).segments(samples, max_end_silence_ms=end_silence)
    assert got == expected
    assert len(got) >= 10 and got[-1][1] > 60000  # non-trivial, and past FunASR's first 60 s step


@pytest.mark.parametrize("case", [(200, (3200,)), (600, (9600,)), (600, (4000, 13001, 777))],
                         ids=["200ms", "600ms", "600ms-ragged"])
def test_streaming_answers_equal_funasr_per_call(vad_dir, streamed, case):
    pieces, expected = streamed[case]
    stream = load_vad(vad_dir).stream(case[0])
    got = [stream.feed(piece, is_final=i == len(pieces) - 1) for i, piece in enumerate(pieces)]
    assert got == expected
    events = [event for answer in got for event in answer]
    assert len(events) >= 6 and [-1, -1] not in events
    if case[0] == 200:  # the same stream object serves the next recording from 0 ms after is_final
        assert [stream.feed(piece, is_final=i == len(pieces) - 1) for i, piece in enumerate(pieces)] == expected


def test_empty_final_chunk_flushes_the_stream(vad_dir, streamed):
    """funasr ignores an empty final call (the tail's end never comes); ours ends the open segment."""
    pieces, expected = streamed[200, (3200,)]
    stream = load_vad(vad_dir).stream(200)
    got = [event for piece in pieces for event in stream.feed(piece)] + stream.feed(np.zeros(0), is_final=True)
    assert got == [event for answer in expected for event in answer]


@pytest.mark.parametrize("model_conf", [{"max_single_segment_time": 3000}, {"detect_mode": 0}],
                         ids=["max-segment", "single-utterance"])
def test_config_variants_equal_funasr(tmp_path, recording, model_conf, one_thread):
    model_dir = build_random_vad(tmp_path / "vad", seed=1, model_conf=model_conf)
    reference = _funasr(model_dir)
    samples = recording[:16 * RATE]
    ours = load_vad(model_dir)
    assert ours.segments(samples) == reference.generate(input=samples, disable_pbar=True)[0]["value"]
    pieces = _pieces(samples, [4800])
    stream = ours.stream(300)
    assert [stream.feed(p, is_final=i == len(pieces) - 1) for i, p in enumerate(pieces)] == \
        _funasr_stream(reference, pieces, 300)
    if "max_single_segment_time" in model_conf:
        assert max(end - beg for beg, end in ours.segments(samples)) == 3010  # FunASR cuts one frame late


def test_options_override_model_conf_as_funasr_kwargs(vad_dir, recording, one_thread):
    clip = recording[:16 * RATE]
    expected = _funasr(vad_dir, max_single_segment_time=2500).generate(input=clip, disable_pbar=True)[0]["value"]
    got = load_vad(vad_dir, max_single_segment_time=2500, snr_mode=0).segments(clip)
    assert got == expected and max(end - beg for beg, end in got) == 2510
    with pytest.raises(ConfigError, match="unknown FSMN-VAD option"):
        load_vad(vad_dir, max_segment=1)


def test_int16_silence_and_short_input(vad_dir, reference, recording):
    vad = load_vad(vad_dir)
    clip = recording[:12 * RATE]
    pcm = np.round(clip * 32768).astype(np.int16)  # the wav's own samples: exact
    assert vad.segments(pcm) == reference.generate(input=clip, disable_pbar=True)[0]["value"] != []
    silence = np.zeros(2 * RATE, np.float32)
    assert vad.segments(silence) == reference.generate(input=silence, disable_pbar=True)[0]["value"] == []
    assert vad.segments(np.zeros(100, np.float32)) == []  # under one frame (funasr divides by zero here)


def test_pipeline_answers_like_funasr(vad_dir, reference, recording, streamed, tmp_path):
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    p = pipeline(task=Tasks.voice_activity_detection, model=str(vad_dir), pipeline_name="fsmn-vad")
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.round(recording[:20 * RATE] * 32768).astype(np.int16), RATE, subtype="PCM_16")
    expected = reference.generate(input=str(clip), disable_pbar=True)
    assert p(str(clip)) == expected and expected[0]["key"] == "clip" and len(expected[0]["value"]) >= 2
    pieces, answers = streamed[600, (4000, 13001, 777)]
    cache: dict = {}
    got = [p(input=piece, cache=cache, is_final=False, chunk_size=600)[0]["value"] for piece in pieces[:60]]
    assert got == answers[:60] and sum(map(len, got)) >= 4
    fed_ms = ((sum(map(len, pieces[:60])) - 400) // 160 + 1) * 10  # the end of the last 10 ms frame
    closing = p(input=np.zeros(0, np.float32), cache=cache, is_final=True, chunk_size=600)[0]["value"]
    assert closing == [[-1, fed_ms]] and cache == {}  # final flushes the open segment (funasr: ignored), resets
    legacy = p(audio_in=pieces[0], param_dict={"cache": {}, "is_final": False, "chunk_size": 600})
    assert legacy[0]["value"] == answers[0]


def test_bad_inputs_raise_clear_errors(vad_dir, tmp_path):
    vad = load_vad(vad_dir)
    with pytest.raises(VadError, match="empty"):
        vad.segments(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        vad.segments(np.full(RATE, np.nan, np.float32))
    with pytest.raises(VadError, match="chunk_ms"):
        vad.stream(0)
    broken = tmp_path / "broken"
    shutil.copytree(vad_dir, broken)
    (broken / "model.pt").write_bytes((vad_dir / "model.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_vad(broken)
    state = torch.load(vad_dir / "model.pt", weights_only=True)
    del state["encoder.fsmn.3.fsmn_block.conv_left.weight"]
    torch.save(state, broken / "model.pt")
    with pytest.raises(CheckpointError, match="missing keys: encoder.fsmn.3.fsmn_block.conv_left.weight"):
        load_vad(broken)
    (broken / "config.yaml").write_text((vad_dir / "config.yaml").read_text().replace("lorder: 20", "lorder: x"))
    with pytest.raises(ConfigError, match="lorder"):
        load_vad(broken)
    (broken / "config.yaml").write_text("model: Paraformer\n")
    with pytest.raises(ConfigError, match="not an FSMN-VAD"):
        load_vad(broken)
