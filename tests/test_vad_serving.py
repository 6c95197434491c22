"""``serve --vad-model``: FSMN-VAD cuts a live session's utterances (a real server process, a real websocket client);
in process, the FSMN segmenter starts utterances where the VAD stream's segments start."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EXAMPLE_TEXT, EXAMPLE_WAV

from modelscope_paraformer import DEMO_MODEL_DIR
from modelscope_paraformer.core.endpoint import (
    EndpointConfig,
    FsmnSegmenter,
    make_segmenter,
)
from modelscope_paraformer.core.fsmn_vad import load_vad
from modelscope_paraformer.tools.random_vad import build_random_vad

pytest.importorskip("websockets", reason="the server needs websockets (pip install .[serve])")
from test_serving import pcm16, session, streamed_text, texts

from modelscope_paraformer.serving.launch import ServerProcess

pytestmark = pytest.mark.skipif(not (DEMO_MODEL_DIR / "model.pt").is_file(), reason="demo model not built")


@pytest.fixture(scope="module")
def vad_dir(tmp_path_factory):
    return build_random_vad(tmp_path_factory.mktemp("serve_vad") / "vad")


@pytest.fixture(scope="module")
def three_sentences():
    """The example sentence three times, with 2 s of its own background noise between."""
    from modelscope_paraformer.core.audio import load_audio

    speech = load_audio(EXAMPLE_WAV)
    pause = np.tile(speech[:4000], 8)
    return np.concatenate([speech, pause, speech, pause, speech])


def _utterances(segmenter, audio: np.ndarray, step: int) -> list[tuple[int, np.ndarray]]:
    """(first sample, audio) of each utterance the segmenter cuts from ``audio`` fed ``step`` samples at a time."""
    out, current, start = [], [], None
    for offset in range(0, len(audio), step):
        for piece, ends, first in segmenter.accept(audio[offset:offset + step]):
            start = first if start is None else start
            current.append(piece)
            if ends:
                out.append((start, np.concatenate(current)))
                current, start = [], None
    if current:
        out.append((start, np.concatenate(current)))
    return out


def test_fsmn_segmenter_starts_utterances_at_the_vad_segments(vad_dir, three_sentences, one_thread):
    vad = load_vad(vad_dir)
    segments = vad.segments(three_sentences, max_end_silence_ms=800)
    assert len(segments) == 3
    for step in (960, 4000):
        utterances = _utterances(make_segmenter(16000, EndpointConfig(), vad), three_sentences, step)
        assert [start for start, _ in utterances] == [0] + [beg * 16 for beg, _ in segments[1:]]  # 1st: head_ms
        ends = [start + len(audio) for start, audio in utterances]
        assert all(end * 1000 // 16000 >= vad_end for end, (_, vad_end) in zip(ends, segments))
        assert ends[-1] == len(three_sentences)  # the open utterance got every sample
    # a forced cut: the utterance goes on in the next one, nothing lost
    cut = _utterances(FsmnSegmenter(vad, 16000, EndpointConfig(max_utterance_ms=2000)), three_sentences, 960)
    assert len(cut) > 6 and all(len(audio) <= 2000 * 16 + 960 for _, audio in cut)


@pytest.fixture(scope="module")
def vad_server(tmp_path_factory, vad_dir):
    log = tmp_path_factory.mktemp("vad_server") / "server.log"
    with ServerProcess(["--num-threads", "1", "--vad-model", str(vad_dir), "--idle-timeout", "10"], log) as process:
        yield process
        text = process.log_text()
        assert "Traceback" not in text, text[-3000:]


def test_server_cuts_a_live_session_at_fsmn_vad_endpoints(vad_server, vad_dir, three_sentences, one_thread):
    from modelscope_paraformer.core.loading import load_for_inference

    assert vad_server.health()["endpointer"] == "fsmn-vad"
    replies = session(vad_server.url, pcm16(three_sentences), "2pass", timeout=60)
    offline = [r for r in replies if r.get("mode") == "2pass-offline" and "text" in r]
    assert [r["text"] for r in offline] == [EXAMPLE_TEXT] * 3
    assert [r["is_final"] for r in offline] == [False, False, True]
    # the server cut where the FSMN segmenter cuts the same 60 ms frames (pcm16 rounding included)
    sent = np.frombuffer(pcm16(three_sentences), "<i2").astype(np.float32) / 32768
    utterances = _utterances(FsmnSegmenter(load_vad(vad_dir), 16000), sent, 960)
    model = load_for_inference(DEMO_MODEL_DIR, "cpu", "fp32", None, 1)
    assert "".join(texts(replies, "2pass-online")) == "".join(streamed_text(model, audio) for _, audio in utterances)
    starts = [json.loads(r["timestamp"])[0][0] for r in offline]  # absolute in the session
    assert len(utterances) == 3
    for (first_sample, _), stamp in zip(utterances, starts):  # each sentence's first token lies in its utterance
        assert first_sample / 16 <= stamp < first_sample / 16 + 1000


def test_gradio_live_session_cuts_with_the_vad(vad_dir, three_sentences, one_thread):
    from modelscope_paraformer.core.loading import load_for_inference
    from modelscope_paraformer.serving.gradio_app import LiveSession

    live = LiveSession(load_for_inference(DEMO_MODEL_DIR, "cpu", "fp32", None, 1), vad=load_vad(vad_dir))
    for start in range(0, len(three_sentences), 8000):  # the browser's half-second pieces
        live.feed(three_sentences[start:start + 8000], 16000)
    assert live.finish().split("\n") == [EXAMPLE_TEXT] * 3 and len(live.sentences) == 3
