"""The WebSocket server as a real process with real clients: FunASR's protocol in its three modes, text identical
to in-process decoding, endpointing in long sessions, the fault list, limits, TLS + token, SIGTERM."""
from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import EXAMPLE_TEXT, EXAMPLE_WAV
from modelscope_paraformer import DEMO_MODEL_DIR

websockets = pytest.importorskip("websockets", reason="the server needs websockets (pip install .[serve])")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from modelscope_paraformer.core.endpoint import Segmenter  # noqa: E402
from modelscope_paraformer.serving import protocol  # noqa: E402
from modelscope_paraformer.serving.launch import ServerProcess  # noqa: E402

pytestmark = pytest.mark.skipif(not (DEMO_MODEL_DIR / "model.pt").is_file(), reason="demo model not built")
CHUNK = [5, 10, 5]
FRAME_BYTES = 1920  # FunASR's Python client: 60 ms of 16 kHz s16le per frame


@pytest.fixture(scope="module")
def model():
    from modelscope_paraformer.core.loading import load_for_inference

    return load_for_inference(DEMO_MODEL_DIR, "cpu", "fp32", None, 1)


@pytest.fixture(scope="module")
def speech16():
    from modelscope_paraformer.core.audio import load_audio

    return load_audio(EXAMPLE_WAV)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServerProcess(["--num-threads", "1", "--idle-timeout", "3", "--max-frame-bytes", "65536",
                        "--max-connections", "20"], log) as process:
        yield process
        text = process.log_text()
        assert "Traceback" not in text, text[-3000:]


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def session(url: str, audio: bytes, mode: str, frame: int = FRAME_BYTES, audio_fs: int = 16000,
            extra: dict | None = None, end: dict | None = None, timeout: float = 30.0,
            tls: ssl.SSLContext | None = None) -> list[dict]:
    """One FunASR-style session: config, audio frames, end of input; all replies until is_end."""
    options = {"ssl": tls} if tls is not None else {}
    with connect(url, subprotocols=["binary"], open_timeout=10, close_timeout=5, **options) as ws:
        ws.send(json.dumps({"mode": mode, "chunk_size": CHUNK, "chunk_interval": 10, "wav_name": "test",
                            "wav_format": "pcm", "is_speaking": True, "audio_fs": audio_fs, "itn": True,
                            "hotwords": "", "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 0,
                            "some_future_field": 1, **(extra or {})}))
        for start in range(0, len(audio), frame):
            ws.send(audio[start:start + frame])
        ws.send(json.dumps(end or {"is_speaking": False, "is_end": True}))
        replies = []
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            replies.append(reply)
            if reply.get("is_end") or (end is not None and reply.get("is_final")):
                return replies


def texts(replies: list[dict], mode: str) -> list[str]:
    return [r["text"] for r in replies if r.get("mode") == mode and "text" in r]


def streamed_text(model, samples: np.ndarray, rate: int = 16000) -> str:
    from modelscope_paraformer.core.scheduler import StreamingDecoder

    return StreamingDecoder(model, CHUNK, 4, 0).decode_all(samples, sample_rate=rate).text


# ------------------------------------------------------------------------------------------------ modes
def test_online_text_is_the_in_process_stream(server, model, speech16):
    replies = session(server.url, pcm16(speech16), "online")
    expected = streamed_text(model, speech16)
    assert expected == EXAMPLE_TEXT
    assert "".join(texts(replies, "online")) == expected
    assert len(texts(replies, "online")) > 3  # increments, not one text at the end
    finals = [r for r in replies if r.get("is_final")]
    assert finals[0]["mode"] == "online" and finals[0]["text"] == ""  # is_final only at the end of input
    assert all(not r["is_final"] for r in replies[: -len(finals)])
    assert replies[-1]["is_end"] is True and replies[-1]["wav_name"] == "test"


def test_2pass_partials_and_offline_sentence(server, model, speech16):
    replies = session(server.url, pcm16(speech16), "2pass", frame=9600)
    assert "".join(texts(replies, "2pass-online")) == streamed_text(model, speech16)
    offline = [r for r in replies if r.get("mode") == "2pass-offline" and "text" in r]
    assert [r["text"] for r in offline] == [model.recognizer.recognize([speech16], ["x"])[0].text]
    assert offline[-1]["is_final"] is True
    stamps = json.loads(offline[-1]["timestamp"])  # a JSON string, as FunASR's C++ server sends it
    assert len(stamps) == len(EXAMPLE_TEXT) and all(a <= b for a, b in stamps)


def test_offline_text_is_the_pipeline(server, model, speech16):
    replies = session(server.url, pcm16(speech16), "offline", frame=32000)
    assert texts(replies, "offline") == [model.transcribe([speech16])[0].text]
    assert replies[-2]["is_final"] is True


def test_offline_wav_file_bytes(server):
    """The HTML5 page's file mode: the whole file, header included, with its wav_format."""
    data = EXAMPLE_WAV.read_bytes()
    replies = session(server.url, data, "offline", frame=16384, extra={"wav_format": "wav"})
    assert texts(replies, "offline") == [EXAMPLE_TEXT]


def test_8k_audio_is_resampled(server, model, speech16):
    from modelscope_paraformer.core.audio import resample

    speech8 = resample(speech16, 16000, 8000)
    replies = session(server.url, pcm16(speech8), "online", frame=960, audio_fs=8000)
    assert "".join(texts(replies, "online")) == streamed_text(model, speech8, 8000)


def test_long_session_is_cut_at_endpoints(server, model, speech16):
    """Speech, 2 s pause, speech, 2 s pause, speech: three sentences, each cut where the causal endpointer cuts;
    the online increments equal in-process decoding of the same pieces."""
    pause = np.tile(speech16[:4000], 8)  # 2 s of the recording's own background noise
    audio = np.concatenate([speech16, pause, speech16, pause, speech16])
    replies = session(server.url, pcm16(audio), "2pass")
    offline = [r for r in replies if r.get("mode") == "2pass-offline" and "text" in r]
    assert [r["text"] for r in offline] == [EXAMPLE_TEXT] * 3
    assert [r["is_final"] for r in offline] == [False, False, True]
    starts = [json.loads(r["timestamp"])[0][0] for r in offline]  # absolute in the session
    assert 5700 + 2000 < starts[1] < 5700 + 2000 + 1000 and 2 * (5700 + 2000) < starts[2] < 2 * (5700 + 2000) + 1000
    segmenter, pieces, utterance = Segmenter(16000), [], []
    for start in range(0, len(audio), 9600):
        for piece, ends, _ in segmenter.accept(audio[start:start + 9600]):
            utterance.append(piece)
            if ends:
                pieces.append(streamed_text(model, np.concatenate(utterance)))
                utterance = []
    pieces.append(streamed_text(model, np.concatenate(utterance)))
    assert len(pieces) == 3
    assert "".join(texts(replies, "2pass-online")) == "".join(pieces)


def test_two_sessions_on_one_connection_and_is_speaking_only(server):
    with connect(server.url, open_timeout=10) as ws:  # no subprotocol offered, as FunASR's HTML5 page
        for _ in range(2):
            ws.send(json.dumps({"mode": "offline", "wav_name": "a", "audio_fs": 16000}))
            pcm = EXAMPLE_WAV.read_bytes()[44:]
            for start in range(0, len(pcm), 32000):
                ws.send(pcm[start:start + 32000])
            ws.send(json.dumps({"is_speaking": False}))
            reply = json.loads(ws.recv(timeout=30))
            assert reply["text"] == EXAMPLE_TEXT and reply["is_final"] is True


# ------------------------------------------------------------------------------------------------- faults
def expect_error(url: str, messages: list, code: int) -> dict:
    """Send the messages; the server answers one error reply and closes with ``code``."""
    with connect(url, subprotocols=["binary"], open_timeout=10) as ws:
        for message in messages:
            ws.send(message)
        reply = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == code, (ws.close_code, ws.close_reason)
    assert reply["code"] == code and reply["error"]
    return reply


@pytest.mark.parametrize("messages, code, words", [
    (["{not json"], protocol.CLOSE_INVALID, "malformed JSON"),
    (["[1, 2]"], protocol.CLOSE_INVALID, "JSON object"),
    ([b"\x00\x01" * 100], protocol.CLOSE_UNSUPPORTED, "before the JSON config"),
    ([json.dumps({"mode": "3pass"})], protocol.CLOSE_INVALID, "unknown mode"),
    ([json.dumps({"mode": "online", "chunk_size": [5, 0, 5]})], protocol.CLOSE_INVALID, "chunk_size"),
    ([json.dumps({"mode": "online", "chunk_size": [5, 10]})], protocol.CLOSE_INVALID, "chunk_size"),
    ([json.dumps({"mode": "online", "chunk_size": "a,b,c"})], protocol.CLOSE_INVALID, "chunk_size"),
    ([json.dumps({"mode": "online", "audio_fs": 10**9})], protocol.CLOSE_INVALID, "audio_fs"),
    ([json.dumps({"mode": "online", "audio_fs": "fast"})], protocol.CLOSE_INVALID, "audio_fs"),
    ([json.dumps({"mode": "2pass", "wav_format": "mp3"})], protocol.CLOSE_INVALID, "offline"),
])
def test_bad_messages_get_an_error_and_a_close_code(server, messages, code, words):
    assert words in expect_error(server.url, messages, code)["error"]


def test_oversized_frame_is_closed_with_1009(server):
    with connect(server.url, subprotocols=["binary"], open_timeout=10, max_size=None) as ws:
        ws.send(json.dumps({"mode": "online"}))
        ws.send(b"\x00" * 70000)  # over --max-frame-bytes 65536
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == protocol.CLOSE_TOO_BIG


def test_idle_client_is_closed(server):
    with connect(server.url, open_timeout=10) as ws:
        ws.send(json.dumps({"mode": "online"}))
        reply = json.loads(ws.recv(timeout=10))  # --idle-timeout 3
        assert "no message" in reply["error"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == protocol.CLOSE_POLICY


def test_abrupt_disconnects_and_non_readers_leak_nothing(server, speech16):
    """Clients that vanish mid-utterance and one that never reads: a good client meanwhile gets its exact text,
    and afterwards the server holds no connection and no engine stream."""
    audio = pcm16(np.concatenate([speech16] * 3))
    stack = contextlib.ExitStack()
    for _ in range(3):  # a TCP reset in the middle of an utterance
        ws = stack.enter_context(connect(server.url, open_timeout=10))
        ws.send(json.dumps({"mode": "2pass", "chunk_size": CHUNK}))
        for start in range(0, len(audio) // 2, 9600):
            ws.send(audio[start:start + 9600])
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        ws.socket.close()
    silent = stack.enter_context(connect(server.url, open_timeout=10))  # sends a lot, never reads
    silent.send(json.dumps({"mode": "2pass", "chunk_size": CHUNK}))
    for start in range(0, len(audio), 9600):
        silent.send(audio[start:start + 9600])
    replies = session(server.url, pcm16(speech16), "online")
    assert "".join(texts(replies, "online")) == EXAMPLE_TEXT
    silent.socket.close()
    with contextlib.suppress(Exception):
        stack.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = server.health()
        if health["connections"] == 0 and health["engine"]["streams"] == 0:
            break
        time.sleep(0.2)
    assert health["connections"] == 0 and health["engine"]["streams"] == 0 and health["engine"]["alive"], health


def test_http_routes_serve_only_shipped_assets(server):
    base = f"http://127.0.0.1:{server.port}"
    health = json.loads(urllib.request.urlopen(f"{base}/health", timeout=5).read())
    assert health["status"] == "ok"
    page = urllib.request.urlopen(f"{base}/", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html") and b"<html" in page.read().lower()
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/../../etc/passwd", "/static/",
                 "/serving/server.py", "/static/..%2fprotocol.py", "//etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(base + path, timeout=5)
        assert error.value.code == 404, path


# ----------------------------------------------------------------------------- limits, TLS, token, SIGTERM
@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    done = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                           "/CN=127.0.0.1", "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
                          capture_output=True, timeout=60)
    if done.returncode:
        pytest.skip("openssl cannot make a test certificate")
    return root / "cert.pem", root / "key.pem"


def test_tls_token_max_connections_and_sigterm(tmp_path, certificate):
    cert, key = certificate
    args = ["--num-threads", "1", "--max-connections", "2", "--token", "s3cret", "--certfile", str(cert),
            "--keyfile", str(key)]
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with ServerProcess(args, tmp_path / "server.log", tls=True) as process:
        url = process.url
        for bad in (url, url + "/?token=wrong"):  # checked in the handshake, before any audio
            with pytest.raises(InvalidStatus) as error:
                connect(bad, ssl=context, open_timeout=10)
            assert error.value.response.status_code == 401
        good = url + "/?token=s3cret"
        replies = session(good, EXAMPLE_WAV.read_bytes()[44:], "online", tls=context)  # wss:// with the token
        assert "".join(texts(replies, "online")) == EXAMPLE_TEXT
        stack = contextlib.ExitStack()
        first = stack.enter_context(connect(good, ssl=context, open_timeout=10))
        second = stack.enter_context(connect(url, ssl=context, open_timeout=10,
                                             additional_headers={"Authorization": "Bearer s3cret"}))
        with pytest.raises(InvalidStatus) as error:
            connect(good, ssl=context, open_timeout=10)
        assert error.value.response.status_code == 503  # over --max-connections: a clean refusal
        second.close()
        first.send(json.dumps({"mode": "online"}))
        first.send(EXAMPLE_WAV.read_bytes()[44:20000])
        time.sleep(0.5)
        process.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                first.recv(timeout=10)
        assert first.close_code == protocol.CLOSE_GOING_AWAY
        stack.close()
        assert process.process.wait(20) == 0
        assert "Traceback" not in process.log_text()


# --------------------------------------------------------------------------------------------- Gradio app
def test_gradio_live_session_streams_utterances(model, speech16):
    """The live-microphone tab's logic (no Gradio needed): 44.1 kHz chunks of 0.5 s, two utterances."""
    from modelscope_paraformer.core.audio import resample
    from modelscope_paraformer.serving.gradio_app import LiveSession

    pause = np.tile(speech16[:4000], 8)
    audio = resample(np.concatenate([speech16, pause, speech16]), 16000, 44100)
    live = LiveSession(model)
    for start in range(0, len(audio), 22050):
        live.feed(audio[start:start + 22050], 44100)
    assert live.finish().replace("\n", "") == EXAMPLE_TEXT * 2


def test_gradio_app_builds(model):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install .[gradio])")
    import gradio as gr

    from modelscope_paraformer.serving.gradio_app import build_app, transcribe_upload

    assert isinstance(build_app(model), gr.Blocks)
    rate, pcm = 16000, np.frombuffer(EXAMPLE_WAV.read_bytes()[44:], "<i2")
    assert transcribe_upload(model, (rate, pcm)) == EXAMPLE_TEXT
