"""The shipped demo model recognises real (synthetic Mandarin) speech: CLI, pipeline and streaming."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import EXAMPLE_TEXT, EXAMPLE_WAV
from modelscope_paraformer import DEMO_MODEL_DIR

DEMO = DEMO_MODEL_DIR
pytestmark = pytest.mark.skipif(not (DEMO / "model.pt").is_file(), reason="demo model not built")


def test_main_command_prints_the_transcript():
    done = subprocess.run([sys.executable, "-m", "modelscope_paraformer", "transcribe", str(EXAMPLE_WAV)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"asr_example_zh\t{EXAMPLE_TEXT}"


def test_model_card_example_script():
    """examples/streaming_model_card.py is the model card's loop verbatim (it prints the pieces, then all)."""
    script = EXAMPLE_WAV.parent / "streaming_model_card.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].replace(" ", "") == EXAMPLE_TEXT


@pytest.mark.parametrize("chunk_size", [(0, 10, 5), (0, 8, 4), (5, 10, 5)])
def test_streaming_any_chunking(chunk_size):
    from modelscope_paraformer.core import StreamingDecoder, load_audio, load_model

    model, speech = load_model(DEMO), load_audio(EXAMPLE_WAV)
    with StreamingDecoder(model, chunk_size) as session:
        for start in range(0, len(speech), 3000):
            session.feed(speech[start:start + 3000])
    assert session.result.text == EXAMPLE_TEXT
