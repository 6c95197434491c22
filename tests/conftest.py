"""Shared fixtures: random-weight models of the real architectures (built once per run) and real speech."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelscope_paraformer.core.audio import load_audio
from modelscope_paraformer.tools.random_model import build_random_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_WAV = REPO / "examples" / "asr_example_zh.wav"
EXAMPLE_TEXT = (REPO / "examples" / "asr_example_zh.txt").read_text(encoding="utf-8").strip()


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """5.7 s of synthetic Mandarin (16 kHz float32)."""
    return load_audio(EXAMPLE_WAV)


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny offline and online models (2 encoder blocks, width 64): fast behavioural tests."""
    root = tmp_path_factory.mktemp("small_models")
    return {variant: build_random_model(root / variant, variant, 2, 1, 64, 128, 100, seed=3)
            for variant in ("offline", "online")}


@pytest.fixture(scope="session")
def wide_models(tmp_path_factory) -> dict[str, Path]:
    """Paraformer-large width (512, 2048 units, 8404 tokens) at reduced depth: parity with funasr."""
    root = tmp_path_factory.mktemp("wide_models")
    return {variant: build_random_model(root / variant, variant, 3, 2, seed=7) for variant in ("offline", "online")}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine spinning OpenMP threads cost 30x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
