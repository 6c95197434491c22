"""The shipped demo model recognises real (synthetic Mandarin) speech: CLI, pipeline and streaming."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from conftest import EXAMPLE_TEXT, EXAMPLE_WAV

DEMO = Path(__file__).resolve().parents[1] / "modelscope_paraformer" / "demo_model"
pytestmark = pytest.mark.skipif(not (DEMO / "model.pt").is_file(), reason="demo model not built")


def test_main_command_prints_the_transcript():
    done = subprocess.run([sys.executable, "-m", "modelscope_paraformer", "transcribe", str(EXAMPLE_WAV)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"asr_example_zh\t{EXAMPLE_TEXT}"


def test_model_card_streaming_loop():
    import modelscope_paraformer  # noqa: F401
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    inference_pipeline = pipeline(task=Tasks.auto_speech_recognition, model=str(DEMO), mode="paraformer_streaming")
    speech, _ = soundfile.read(EXAMPLE_WAV)
    speech_length = speech.shape[0]
    for chunk_size in ([5, 10, 5], [0, 8, 4]):
        stride_size = chunk_size[1] * 960
        param_dict = {"cache": dict(), "is_final": False, "chunk_size": chunk_size}
        final_result = ""
        sample_offset = 0
        for sample_offset in range(0, speech_length, min(stride_size, speech_length - sample_offset)):
            if sample_offset + stride_size >= speech_length - 1:
                stride_size = speech_length - sample_offset
                param_dict["is_final"] = True
            rec_result = inference_pipeline(audio_in=speech[sample_offset: sample_offset + stride_size],
                                            param_dict=param_dict)
            if len(rec_result) != 0:
                final_result += rec_result["text"]
        assert final_result == EXAMPLE_TEXT, chunk_size
