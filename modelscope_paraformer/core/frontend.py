"""Acoustic frontend: Kaldi fbank -> low frame rate stacking (LFR) -> CMVN, offline and incremental.

Matches FunASR's ``WavFrontend`` / ``WavFrontendOnline`` with dither 0: samples are scaled to the int16
range before a Kaldi fbank (snip_edges, hamming by default), LFR stacks ``lfr_m`` frames every ``lfr_n``
(left-padded with copies of the first frame, right-padded with the last), and CMVN applies the
``<AddShift>`` then ``<Rescale>`` vectors of ``am.mvn``. Fbank comes from kaldi-native-fbank.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ParaformerError


class CmvnError(ParaformerError, ValueError):
    """am.mvn is missing a section or has the wrong size."""


def load_cmvn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read Kaldi nnet text CMVN (``<AddShift>`` and ``<Rescale>`` vectors) from ``am.mvn``."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    vectors = {}
    for name in ("AddShift", "Rescale"):
        match = re.search(rf"<{name}>.*?\[([^\]]*)\]", text, flags=re.S)
        if match is None:
            raise CmvnError(f"{path}: no <{name}> vector found (expected Kaldi nnet text CMVN)")
        try:
            vectors[name] = np.array(match.group(1).split(), dtype=np.float32)
        except ValueError as error:
            raise CmvnError(f"{path}: <{name}> vector is not numeric ({error})") from None
    if vectors["AddShift"].shape != vectors["Rescale"].shape:
        raise CmvnError(f"{path}: <AddShift> has {vectors['AddShift'].size} values, <Rescale> "
                        f"{vectors['Rescale'].size}")
    return vectors["AddShift"], vectors["Rescale"]


def cmvn_text(shift: np.ndarray, scale: np.ndarray) -> str:
    """Kaldi nnet text CMVN in the layout of the hub's am.mvn (what :func:`load_cmvn` reads)."""
    def vector(values: np.ndarray) -> str:
        return " ".join(f"{v:.9g}" for v in np.asarray(values).reshape(-1))

    dim = np.asarray(shift).size
    return (f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {vector(shift)} ]\n"
            f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {vector(scale)} ]\n</Nnet>\n")


@dataclass
class FrontendConfig:
    """FunASR ``frontend_conf`` keys."""

    fs: int = 16000
    window: str = "hamming"
    n_mels: int = 80
    frame_length: float = 25.0
    frame_shift: float = 10.0
    lfr_m: int = 7
    lfr_n: int = 6
    dither: float = 0.0
    snip_edges: bool = True


class Frontend:
    """Waveform (16 kHz float in [-1, 1]) to normalised LFR features (frames, n_mels * lfr_m)."""

    def __init__(self, config: FrontendConfig, cmvn: Optional[tuple[np.ndarray, np.ndarray]] = None):
        self.config = config
        self.cmvn = cmvn
        self.output_size = config.n_mels * config.lfr_m
        if cmvn is not None and cmvn[0].size < self.output_size:
            raise CmvnError(f"am.mvn has {cmvn[0].size} values but the frontend makes {self.output_size}-dim features")

    @property
    def samples_per_lfr_frame(self) -> int:
        """Samples per output frame (960 at 16 kHz, 10 ms shift, lfr_n 6)."""
        return int(self.config.fs * self.config.frame_shift / 1000) * self.config.lfr_n

    def new_fbank(self):
        """A fresh kaldi-native-fbank extractor with this frontend's options."""
        import kaldi_native_fbank as knf

        options = knf.FbankOptions()
        options.frame_opts.samp_freq = float(self.config.fs)
        options.frame_opts.frame_length_ms = float(self.config.frame_length)
        options.frame_opts.frame_shift_ms = float(self.config.frame_shift)
        options.frame_opts.dither = float(self.config.dither)
        options.frame_opts.window_type = self.config.window
        options.frame_opts.snip_edges = bool(self.config.snip_edges)
        options.mel_opts.num_bins = int(self.config.n_mels)
        options.energy_floor = 0.0
        return knf.OnlineFbank(options)

    @staticmethod
    def read_frames(extractor, first: int = 0) -> np.ndarray:
        """Take frames ``first ..`` (absolute indices) out of a kaldi-native-fbank extractor and free them."""
        count = extractor.num_frames_ready - first
        frames = np.array([extractor.get_frame(first + index) for index in range(count)], dtype=np.float32)
        if count:
            extractor.pop(count)
        return frames.reshape(count, extractor.dim)

    def fbank(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel filterbank (frames, n_mels) of a whole waveform."""
        extractor = self.new_fbank()
        extractor.accept_waveform(float(self.config.fs), (samples * 32768.0).astype(np.float32))
        extractor.input_finished()
        return self.read_frames(extractor)

    def lfr(self, frames: np.ndarray, outputs: int) -> np.ndarray:
        """Stack ``lfr_m`` frames every ``lfr_n`` for ``outputs`` frames; indices past the end repeat the last."""
        m, n = self.config.lfr_m, self.config.lfr_n
        if outputs <= 0 or len(frames) == 0:
            return np.zeros((0, frames.shape[1] * m if frames.ndim == 2 else self.output_size), np.float32)
        index = np.minimum(np.arange(outputs)[:, None] * n + np.arange(m)[None, :], len(frames) - 1)
        return frames[index].reshape(outputs, -1)

    def left_pad(self, frames: np.ndarray) -> np.ndarray:
        """Prepend ``(lfr_m - 1) // 2`` copies of the first frame, centring the first LFR window on it."""
        return np.concatenate([np.repeat(frames[:1], (self.config.lfr_m - 1) // 2, axis=0), frames])

    def normalize(self, features: np.ndarray) -> np.ndarray:
        """Apply CMVN: (x + shift) * scale."""
        if self.cmvn is None:
            return features
        shift, scale = self.cmvn
        dim = features.shape[1]
        return ((features + shift[:dim]) * scale[:dim]).astype(np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Features of a whole utterance; shorter than one fbank window gives zero frames."""
        frames = self.fbank(samples)
        if len(frames) == 0:
            return np.zeros((0, self.output_size), np.float32)
        outputs = -(-len(frames) // self.config.lfr_n)  # ceil
        return self.normalize(self.lfr(self.left_pad(frames), outputs))


class StreamingFrontend:
    """Incremental features: the same frames as :class:`Frontend` on the concatenated audio.

    Fbank frames are independent per window (snip_edges), so an online extractor gives the offline
    frames; LFR emits a frame once its whole ``lfr_m`` window is available and pads at the end.
    """

    def __init__(self, frontend: Frontend):
        self.frontend = frontend
        self.extractor = frontend.new_fbank()
        self.frames_read = 0
        self.pending: Optional[np.ndarray] = None  # fbank frames not yet consumed by LFR (left-padded)

    def accept(self, samples: np.ndarray, is_final: bool = False) -> np.ndarray:
        """Feed samples; return the LFR features that are complete (all remaining ones when final)."""
        config = self.frontend.config
        if samples.size:
            self.extractor.accept_waveform(float(config.fs), (samples * 32768.0).astype(np.float32))
        if is_final:
            self.extractor.input_finished()
        new = self.frontend.read_frames(self.extractor, self.frames_read)
        self.frames_read += len(new)
        if len(new):
            self.pending = self.frontend.left_pad(new) if self.pending is None else np.concatenate([self.pending, new])
        if self.pending is None:
            return np.zeros((0, self.frontend.output_size), np.float32)
        m, n = config.lfr_m, config.lfr_n
        available = len(self.pending)
        if is_final:
            outputs = max(0, -(-(available - (m - 1) // 2) // n))
        else:
            outputs = max(0, (available - m) // n + 1)
        features = self.frontend.lfr(self.pending, outputs)
        self.pending = self.pending[outputs * n:]
        return self.frontend.normalize(features)
