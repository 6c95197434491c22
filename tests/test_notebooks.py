"""The notebooks run top to bottom (nbclient), on the shipped demo model and tiny data."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from modelscope_paraformer import DEMO_MODEL_DIR

REPO = Path(__file__).resolve().parents[1]
DEMO = DEMO_MODEL_DIR

nbclient = pytest.importorskip("nbclient")


def _run(name: str, tmp_path: Path, **env: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


@pytest.mark.skipif(not (DEMO / "model.pt").is_file(), reason="demo model not built")
def test_inference_notebook(tmp_path):
    notebook = _run("inference.ipynb", tmp_path)
    assert "ok" in notebook.cells[-1].outputs[0]["text"]


@pytest.mark.skipif(not (DEMO / "model.pt").is_file(), reason="demo model not built")
def test_finetune_notebook(tmp_path):
    _run("finetune.ipynb", tmp_path, WORK_DIR=str(tmp_path / "work"), MAX_EPOCH="1")
    assert (tmp_path / "work" / "exp" / "model" / "model.pt").is_file()
