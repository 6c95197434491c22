"""Bulk transcription to JSON lines: directories and wav.scp as inputs, unreadable files in their rows, resuming,
and sharding over torchrun ranks (real processes, gloo) merged in input order."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelscope_paraformer import DEMO_MODEL_DIR, load_model
from modelscope_paraformer.core.audio import AudioError, iter_inputs, list_inputs
from modelscope_paraformer.jsonl_transcription import transcribe_to_jsonl

from conftest import EXAMPLE_TEXT, EXAMPLE_WAV

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def audio_dir(tmp_path, speech) -> Path:
    import soundfile

    root = tmp_path / "audio"
    (root / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLE_WAV, root / "a.wav")
    soundfile.write(root / "sub" / "b.flac", speech[: len(speech) // 2], 16000)
    (root / "c.wav").write_bytes(b"RIFF this is no wav")
    (root / "notes.txt").write_text("not audio")
    return root


def test_directory_is_every_audio_file_in_it(audio_dir):
    assert [key for key, _ in list_inputs(audio_dir)] == ["a", "c", "sub/b"]
    with pytest.raises(AudioError, match="no audio files"):
        list_inputs(REPO / "notebooks")
    first = next(iter_inputs(audio_dir))
    assert first.key == "a" and first.sample_rate == 16000 and len(first.samples) > 16000


def test_jsonl_rows_in_order_with_unreadable_files_and_resume(audio_dir, tmp_path):
    model = load_model(DEMO_MODEL_DIR)
    output = tmp_path / "out" / "results.jsonl"
    # a killed earlier run left one finished row (and a torn line) in its part file: it must be kept, not redone
    part = output.parent / "results.jsonl.part-0-of-1"
    part.parent.mkdir()
    part.write_text(json.dumps({"key": "sub/b", "text": "RESUMED"}) + "\n{\"key\": \"a\", \"te")
    transcribe_to_jsonl(model, [audio_dir], output, batch_size=2)
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [row["key"] for row in rows] == ["a", "c", "sub/b"]
    assert rows[0]["text"] == EXAMPLE_TEXT and len(rows[0]["timestamp"]) == len(EXAMPLE_TEXT)
    assert "c.wav" in rows[1]["error"] and "text" not in rows[1]
    assert rows[2]["text"] == "RESUMED" and not part.exists()
    transcribe_to_jsonl(model, [audio_dir], output)  # everything done: the output stays as it is
    assert [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()] == rows


def test_torchrun_shards_and_merges_in_order(audio_dir, tmp_path):
    scp = tmp_path / "wav.scp"
    names = [f"utt{i}" for i in range(5)]
    scp.write_text("".join(f"{name} {EXAMPLE_WAV}\n" for name in names[:4]) + f"{names[4]} {audio_dir / 'c.wav'}\n")
    output = tmp_path / "sharded.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "modelscope_paraformer", "transcribe", str(scp), "--output", str(output), "--num-threads", "1"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [row["key"] for row in rows] == names
    assert [row.get("text") for row in rows[:4]] == [EXAMPLE_TEXT] * 4 and "error" in rows[4]
    assert not list(tmp_path.glob("sharded.jsonl.part-*"))
