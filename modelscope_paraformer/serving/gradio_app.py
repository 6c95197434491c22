"""The Gradio demo (ModelScope Studio / Hugging Face Spaces): an upload / record tab (offline) and a live microphone
tab (``gr.Audio(streaming=True)``), on the shipped demo model by default.

Gradio runs handlers on worker threads and the engine is not thread-safe, so every engine call holds one lock;
each browser session keeps its own :class:`LiveSession` (a streaming decoder and an endpointing segmenter) in
``gr.State``. Gradio is imported only by :func:`build_app` (``pip install modelscope-paraformer[gradio]``).
"""
from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .. import DEMO_MODEL_DIR
from ..core.audio import resample, to_float32
from ..core.endpoint import EndpointConfig, FsmnSegmenter, Segmenter, make_segmenter

logger = logging.getLogger(__name__)
ENGINE_LOCK = threading.Lock()  # one engine call at a time, whichever Gradio thread makes it
LIVE_CHUNK_SIZE = (5, 10, 5)


def load_models(model: Union[str, Path, None] = None, offline_model: Union[str, Path, None] = None,
                num_threads: Optional[int] = None) -> tuple[Any, Any]:
    """The streaming model (default: the demo model) and an optional offline model, ready for inference."""
    from ..core.loading import load_for_inference
    from ..hub import resolve_model_dir

    online = load_for_inference(resolve_model_dir(model) if model else DEMO_MODEL_DIR, "cpu", "fp32", None,
                                num_threads)
    offline = load_for_inference(resolve_model_dir(offline_model), "cpu", "fp32", None, num_threads) \
        if offline_model else None
    return online, offline


def _samples(audio: Any) -> tuple[np.ndarray, int]:
    """Gradio's ``(sample_rate, int16 array)`` as mono float32 and its rate."""
    rate, data = audio
    return to_float32(np.asarray(data), "microphone"), int(rate)


def transcribe_upload(model: Any, audio: Any) -> str:
    """The upload / record tab: the whole recording, offline (long recordings are cut at pauses)."""
    if audio is None:
        return ""
    samples, rate = _samples(audio)
    with ENGINE_LOCK:
        return model.transcribe([resample(samples, rate)])[0].text


class LiveSession:
    """One browser's live microphone: utterances cut by the causal endpointer (or an FSMN-VAD, ``vad``), each
    streamed on the model."""

    def __init__(self, model: Any, endpoint: EndpointConfig = EndpointConfig(), vad: Any = None):
        from ..core.scheduler import StreamingDecoder

        self.decoder = StreamingDecoder(model, LIVE_CHUNK_SIZE, 4, 0)
        self.endpoint = endpoint
        self.vad = vad
        self.segmenter: Optional[Segmenter | FsmnSegmenter] = None
        self.rate: Optional[int] = None
        self.sentences: list[str] = []

    def feed(self, samples: np.ndarray, rate: int) -> str:
        """Add microphone samples; returns the transcript so far (finished sentences, then the partial one)."""
        if self.segmenter is None or rate != self.rate:
            if self.segmenter is not None and self.segmenter.in_utterance:
                self.finish()  # a new rate (a new recording): end the utterance at the old rate first
            self.segmenter, self.rate = make_segmenter(rate, self.endpoint, self.vad), rate
        with ENGINE_LOCK:
            for piece, ends, _ in self.segmenter.accept(samples):
                self.decoder.feed(piece, is_final=ends, sample_rate=rate)
                if ends and self.decoder.result is not None and self.decoder.result.text:
                    self.sentences.append(self.decoder.result.text)
        return self.text

    def finish(self) -> str:
        """The recording stopped: flush the utterance in progress."""
        if self.decoder.state.active:
            with ENGINE_LOCK:
                self.decoder.feed(np.zeros(0, np.float32), is_final=True, sample_rate=self.rate or 16000)
            if self.decoder.result is not None and self.decoder.result.text:
                self.sentences.append(self.decoder.result.text)
        self.segmenter = None
        return self.text

    @property
    def text(self) -> str:
        return "\n".join([*self.sentences, self.decoder.text]).strip()


def build_app(model: Any = None, offline_model: Any = None, vad: Any = None) -> Any:
    """The ``gr.Blocks`` of the demo (not launched); ``model`` is a loaded streaming model (default: demo),
    ``vad`` a loaded FSMN-VAD that cuts the live utterances (default: the energy endpointer)."""
    import gradio as gr

    if model is None:
        model, offline_model = load_models()
    offline = offline_model if offline_model is not None else model

    def on_upload(audio: Any) -> str:
        return transcribe_upload(offline, audio)

    def on_stream(audio: Any, session: Optional[LiveSession]) -> tuple[str, LiveSession]:
        session = session or LiveSession(model, vad=vad)
        if audio is None:
            return session.text, session
        samples, rate = _samples(audio)
        return session.feed(samples, rate), session

    def on_stop(session: Optional[LiveSession]) -> tuple[str, Optional[LiveSession]]:
        return (session.finish(), session) if session else ("", None)

    with gr.Blocks(title="Paraformer ASR") as app:
        gr.Markdown("# Paraformer speech recognition\nNative Paraformer (no funasr at runtime): "
                    "offline recognition of a recording, or live streaming from the microphone.")
        with gr.Tab("Upload / record"):
            upload = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Audio")
            button = gr.Button("Recognise", variant="primary")
            result = gr.Textbox(label="Transcript", lines=4)
            button.click(on_upload, inputs=upload, outputs=result)
        with gr.Tab("Live microphone"):
            live = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone")
            state = gr.State(None)
            transcript = gr.Textbox(label="Live transcript", lines=6)
            try:
                live.stream(on_stream, inputs=[live, state], outputs=[transcript, state], stream_every=0.5,
                            time_limit=600)
            except TypeError:  # Gradio 4 has neither stream_every nor time_limit
                live.stream(on_stream, inputs=[live, state], outputs=[transcript, state])
            live.stop_recording(on_stop, inputs=state, outputs=[transcript, state])
    return app


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python app.py [--model DIR_OR_HUB_ID] [--offline-model ...] [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description="Paraformer ASR Gradio demo")
    parser.add_argument("--model", help="streaming model dir or hub id (default: the shipped demo model)")
    parser.add_argument("--offline-model", help="model for the upload / record tab (default: --model)")
    parser.add_argument("--vad-model", help="FSMN-VAD dir or hub id (e.g. fsmn-vad) that cuts live utterances")
    parser.add_argument("--num-threads", type=int)
    parser.add_argument("--host", help="bind address (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: GRADIO_SERVER_PORT or 7860)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model, offline = load_models(args.model, args.offline_model, args.num_threads)
    vad = None
    if args.vad_model:
        from ..core.fsmn_vad import load_vad
        from ..hub import resolve_model_dir

        vad = load_vad(resolve_model_dir(args.vad_model))
    build_app(model, offline, vad).queue().launch(server_name=args.host, server_port=args.port)
