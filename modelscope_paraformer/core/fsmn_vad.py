"""FSMN-VAD (FunASR's ``FsmnVADStreaming``, hub ``iic/speech_fsmn_vad_zh-cn-16k-common-pytorch``): speech
segments of a recording, offline or chunk by chunk, the same as FunASR's to the millisecond.

Pipeline per chunk: fbank + LFR 5/1 + CMVN (:mod:`.frontend`) -> the FSMN network (feed-forward layers with a
causal depthwise "memory" over the last ``lorder`` frames, carried across chunks) -> per-frame class posteriors,
class 0 being silence -> the E2E VAD state machine (:mod:`.vad_segmenter`). The model dir is the hub layout:
``config.yaml`` (FunASR keys), ``model.pt`` (FunASR's parameter names), ``am.mvn``.

FunASR's driver is mirrored too: audio is cut into ``chunk_ms`` steps (60 s when offline), and unless an
end silence is given, the silence that ends a segment shrinks with the speech so far (2 s at first), the
schedule FunASR applies whenever ``max_end_silence_time`` is not passed, whatever config.yaml says.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .audio import SAMPLE_RATE, StreamResampler, as_numpy, resample, to_float32
from .checkpoint import check_state_dict, read_state_dict
from .config import ConfigError, read_yaml
from .errors import ParaformerError
from .frontend import Frontend, FrontendConfig, StreamingFrontend, load_cmvn
from .model_dir import ModelDirError, find_model_files
from .vad_segmenter import State, VadOptions, VadSegmenter

logger = logging.getLogger(__name__)

VAD_MODELS = {"FsmnVADStreaming"}
ENCODER_KEYS = ("input_dim", "input_affine_dim", "fsmn_layers", "linear_dim", "proj_dim", "lorder", "rorder",
                "lstride", "rstride", "output_affine_dim", "output_dim")
# FunASR's end-silence schedule: (speech so far up to ms, silence that ends a segment in ms)
SILENCE_SCHEDULE = ((10000, 2000), (20000, 1000), (30000, 800), (40000, 600), (50000, 400), (60000, 200),
                    (math.inf, 100))
SCHEDULE_SPEECH_NOISE_THRES = 0.5  # the schedule also replaces config.yaml's speech_noise_thres
OFFLINE_CHUNK_MS = 60000  # FunASR's step for whole recordings
COMPLETE_SEGMENTS_FROM_MS = 15000  # steps this long report whole segments; shorter ones [beg, -1] / [-1, end]


class VadError(ParaformerError, ValueError):
    """A VAD call with unusable arguments."""


class _Linear(nn.Module):
    """A linear map kept under ``.linear``, the key layout of FunASR's FSMN checkpoints."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class _Memory(nn.Module):
    """x + a causal depthwise convolution over the last ``lorder`` frames (stride ``lstride``)."""

    def __init__(self, dim: int, lorder: int, lstride: int):
        super().__init__()
        self.context = (lorder - 1) * lstride
        self.conv_left = nn.Conv2d(dim, dim, (lorder, 1), dilation=(lstride, 1), groups=dim, bias=False)

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (batch, frames, dim), cache (batch, dim, context, 1): the previous frames, zeros at the start."""
        frames = x.transpose(1, 2)  # (batch, dim, frames)
        history = torch.cat((cache[..., 0], frames), dim=2)
        # conv1d with the Conv2d's (dim, 1, lorder, 1) weights: the same sums (bit for bit), 5x faster on long inputs
        conv = self.conv_left
        memory = F.conv1d(history, conv.weight[..., 0], groups=conv.groups, dilation=conv.dilation[0])
        out = frames + memory
        return out.transpose(1, 2), history[:, :, history.shape[2] - self.context:, None]


class _FsmnLayer(nn.Module):
    def __init__(self, linear_dim: int, proj_dim: int, lorder: int, lstride: int):
        super().__init__()
        self.linear = _Linear(linear_dim, proj_dim, bias=False)
        self.fsmn_block = _Memory(proj_dim, lorder, lstride)
        self.affine = _Linear(proj_dim, linear_dim)

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        projected, cache = self.fsmn_block(self.linear(x), cache)
        return torch.relu(self.affine(projected)), cache


class _FsmnEncoder(nn.Module):
    def __init__(self, conf: dict[str, int]):
        super().__init__()
        self.in_linear1 = _Linear(conf["input_dim"], conf["input_affine_dim"])
        self.in_linear2 = _Linear(conf["input_affine_dim"], conf["linear_dim"])
        self.fsmn = nn.ModuleList(_FsmnLayer(conf["linear_dim"], conf["proj_dim"], conf["lorder"], conf["lstride"])
                                  for _ in range(conf["fsmn_layers"]))
        self.out_linear1 = _Linear(conf["linear_dim"], conf["output_affine_dim"])
        self.out_linear2 = _Linear(conf["output_affine_dim"], conf["output_dim"])


class FsmnNetwork(nn.Module):
    """The FSMN posterior network; ``encoder.*`` parameter names as in FunASR's checkpoints."""

    def __init__(self, conf: dict[str, int], use_softmax: bool = True):
        super().__init__()
        self.encoder = _FsmnEncoder(conf)
        self.use_softmax = use_softmax

    def initial_cache(self) -> list[torch.Tensor]:
        """The memory of every layer at the start of a stream (zeros)."""
        return [torch.zeros(1, layer.fsmn_block.conv_left.in_channels, layer.fsmn_block.context, 1)
                for layer in self.encoder.fsmn]

    def forward(self, features: torch.Tensor, cache: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Class posteriors (batch, frames, classes) of LFR features (batch, frames, dim), and the new cache."""
        encoder = self.encoder
        x = torch.relu(encoder.in_linear2(encoder.in_linear1(features)))
        new_cache = []
        for layer, memory in zip(encoder.fsmn, cache):
            x, memory = layer(x, memory)
            new_cache.append(memory)
        logits = encoder.out_linear2(encoder.out_linear1(x))
        return (torch.softmax(logits, dim=-1) if self.use_softmax else logits), new_cache


def _encoder_conf(raw: dict[str, Any], source: str) -> dict[str, int]:
    conf = raw.get("encoder_conf")
    if not isinstance(conf, dict):
        raise ConfigError(f"{source}: encoder_conf is missing (the FSMN sizes)")
    missing = [key for key in ENCODER_KEYS if key not in conf]
    if missing:
        raise ConfigError(f"{source}: encoder_conf lacks {', '.join(missing)}")
    bad = [key for key in ENCODER_KEYS if isinstance(conf[key], bool) or not isinstance(conf[key], int)
           or conf[key] < (0 if key in ("rorder", "rstride") else 1)]
    if bad:
        raise ConfigError(f"{source}: encoder_conf.{bad[0]} must be a positive integer, got {conf[bad[0]]!r}")
    if conf["rorder"] > 0:
        raise ConfigError(f"{source}: encoder_conf.rorder {conf['rorder']}: look-ahead FSMN memory is not "
                          "supported (the hub FSMN-VAD has rorder 0)")
    return {key: conf[key] for key in ENCODER_KEYS}


def _frontend_config(raw: dict[str, Any], source: str) -> FrontendConfig:
    conf = raw.get("frontend_conf") or {}
    if not isinstance(conf, dict):
        raise ConfigError(f"{source}: frontend_conf must be a mapping")
    known = FrontendConfig.__dataclass_fields__
    return FrontendConfig(**{key: value for key, value in conf.items() if key in known and key != "cmvn_file"})


class FsmnVad:
    """A loaded FSMN-VAD: :meth:`segments` for recordings, :meth:`stream` for chunked audio. The network holds
    no stream state, so one instance serves any number of streams (one thread at a time per stream)."""

    def __init__(self, network: FsmnNetwork, frontend: Frontend, options: VadOptions, source: str = ""):
        self.network = network.eval()
        self.frontend = frontend
        self.options = options
        self.source = source

    def __repr__(self) -> str:
        return f"FsmnVad({self.source!r})"

    def segments(self, waveform: np.ndarray, max_end_silence_ms: float | None = None,
                 sample_rate: int = SAMPLE_RATE) -> list[list[int]]:
        """Speech segments ``[[beg_ms, end_ms], ...]`` of a whole recording: FunASR's
        ``AutoModel(model=vad_dir).generate(input=waveform)[0]["value"]`` (``max_end_silence_time`` =
        ``max_end_silence_ms``). Integer PCM is scaled to [-1, 1]; other rates are resampled to 16 kHz."""
        samples = to_float32(as_numpy(waveform), "waveform")
        if samples.size == 0:
            raise VadError("the waveform is empty: pass at least one 25 ms frame of 16 kHz audio")
        samples = resample(samples, sample_rate)
        stream = self.stream(OFFLINE_CHUNK_MS, max_end_silence_ms, partial=False)
        return stream.feed(samples, is_final=True)

    def stream(self, chunk_ms: float = 200, max_end_silence_ms: float | None = None,
               partial: bool | None = None, sample_rate: int = SAMPLE_RATE) -> VadStream:
        """A stream that answers each fed chunk as FunASR's ``generate(input=chunk, cache=cache,
        is_final=..., chunk_size=chunk_ms)`` does. ``partial`` (default: ``chunk_ms`` under 15 s, as FunASR)
        reports starts as ``[beg, -1]`` and ends as ``[-1, end]``; else complete ``[beg, end]`` only."""
        return VadStream(self, chunk_ms, max_end_silence_ms, partial, sample_rate)


class VadStream:
    """One stream's VAD state: :meth:`feed` chunks, get the segment events each one completes."""

    def __init__(self, vad: FsmnVad, chunk_ms: float, max_end_silence_ms: float | None, partial: bool | None,
                 sample_rate: int):
        if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, (int, float)) or not chunk_ms > 0:
            raise VadError(f"chunk_ms must be a positive number of milliseconds, got {chunk_ms!r}")
        self.stride = int(chunk_ms * SAMPLE_RATE / 1000)
        if self.stride < 1:
            raise VadError(f"chunk_ms {chunk_ms} is under one sample")
        if max_end_silence_ms is not None and (isinstance(max_end_silence_ms, bool)
                                               or not isinstance(max_end_silence_ms, (int, float))):
            raise VadError(f"max_end_silence_ms must be a number of milliseconds or None, got {max_end_silence_ms!r}")
        self.vad = vad
        self.chunk_ms = chunk_ms
        self.max_end_silence_ms = max_end_silence_ms
        self.partial = chunk_ms < COMPLETE_SEGMENTS_FROM_MS if partial is None else bool(partial)
        self.sample_rate = sample_rate
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new recording at 0 ms."""
        vad = self.vad
        options = vad.options
        end_silence = options.max_end_silence_time if self.max_end_silence_ms is None else self.max_end_silence_ms
        self.segmenter = VadSegmenter(options, end_silence - options.speech_to_sil_time_thres,
                                      options.speech_noise_thres)
        self._pending = np.zeros(0, np.float32)  # samples of an unfinished step
        self._unscored = np.zeros(0, np.float32)  # samples from the first frame not yet scored on
        self._features = StreamingFrontend(vad.frontend)
        self._memory = vad.network.initial_cache()
        self._speech_ms = 0.0  # the end-silence schedule's count of speech steps
        self._in_speech = False
        self._resampler = StreamResampler(self.sample_rate) if self.sample_rate != SAMPLE_RATE else None

    def feed(self, chunk: np.ndarray, is_final: bool = False) -> list[list[int]]:
        """Segments (ms from the stream's start) that this chunk starts, ends or completes; ``is_final``
        flushes the stream (an empty final chunk too) and resets it for the next recording."""
        samples = to_float32(as_numpy(chunk), "chunk")
        if self._resampler is not None:
            samples = self._resampler(samples, self.sample_rate, last=is_final)
        audio = np.concatenate([self._pending, samples]) if self._pending.size else samples
        steps = len(audio) // self.stride + int(is_final)
        events: list[list[int]] = []
        for index in range(steps):
            if self.max_end_silence_ms is None:
                self._schedule_end_silence()
            found = self._step(audio[index * self.stride:(index + 1) * self.stride], is_final and index == steps - 1)
            if found:
                events.extend(found)
                self._speech_ms, self._in_speech = 0.0, False
        rest = 0 if is_final else len(audio) % self.stride
        self._pending = audio[len(audio) - rest:].copy()
        if is_final:
            self.reset()
        return events

    def _schedule_end_silence(self) -> None:
        """FunASR's end-silence schedule: the longer the speech so far, the shorter the silence ending it."""
        segmenter = self.segmenter
        if self._in_speech or segmenter.state is State.IN_SPEECH:
            self._speech_ms += self.chunk_ms
            self._in_speech = True
        for limit_ms, silence_ms in SILENCE_SCHEDULE:
            if self._speech_ms <= limit_ms:
                segmenter.end_silence_ms = max(silence_ms - self.vad.options.speech_to_sil_time_thres, 0)
                segmenter.speech_noise_thres = SCHEDULE_SPEECH_NOISE_THRES
                break

    def _step(self, samples: np.ndarray, is_final: bool) -> list[list[int]]:
        vad = self.vad
        self._unscored = np.concatenate([self._unscored, samples]) if self._unscored.size else samples
        features = self._features.accept(samples, is_final)
        if not len(features):
            return []
        decibels = self._decibels(len(features))
        with torch.inference_mode():
            posteriors, self._memory = vad.network(torch.from_numpy(features)[None], self._memory)
        silence = posteriors[0, :, vad.options.sil_pdf_ids].tolist()
        return self.segmenter.process(decibels, silence, is_final, self.partial)

    def _decibels(self, count: int) -> list[float]:
        """Energy (dB, FunASR's formula on [-1, 1] samples) of the next ``count`` frames' windows."""
        config = self.vad.frontend.config
        shift = int(config.frame_shift * config.fs / 1000) * config.lfr_n
        length = int(config.frame_length * config.fs / 1000)
        windows = self._unscored[np.arange(count)[:, None] * shift + np.arange(length)]
        self._unscored = self._unscored[count * shift:]
        return (10 * np.log10(np.sum(np.square(windows), axis=1) + 0.000001)).tolist()


def load_vad(model_dir: str | os.PathLike, **model_conf: Any) -> FsmnVad:
    """Load an FSMN-VAD model dir (hub layout: config.yaml, model.pt, am.mvn), strictly: every parameter of
    the config's architecture must be in ``model.pt`` with its shape. ``model_conf`` overrides config.yaml's
    VAD options, as FunASR's ``vad_kwargs`` do (e.g. ``max_single_segment_time=30000``)."""
    files = find_model_files(model_dir)
    source = str(files.config)
    raw = read_yaml(files.config)
    if raw.get("model") not in VAD_MODELS or raw.get("encoder") != "FSMN":
        raise ConfigError(f"{source}: model {raw.get('model')!r} with encoder {raw.get('encoder')!r} is not an "
                          "FSMN-VAD (expected model: FsmnVADStreaming, encoder: FSMN)")
    if files.weights is None:
        raise ModelDirError(f"{files.root}: model.pt not found (the FSMN-VAD weights)")
    if files.cmvn is None:
        raise ModelDirError(f"{files.root}: am.mvn not found (the feature normalisation the VAD was trained with)")
    conf = _encoder_conf(raw, source)
    unknown = sorted(set(model_conf) - {option.name for option in fields(VadOptions)})
    if unknown:
        known = sorted(option.name for option in fields(VadOptions))
        raise ConfigError(f"unknown FSMN-VAD option(s) {unknown} (vad_kwargs): the VAD takes {known}")
    options = VadOptions.from_config({**(raw.get("model_conf") or {}), **model_conf}, source)
    if max(options.sil_pdf_ids) >= conf["output_dim"] or min(options.sil_pdf_ids) < 0:
        raise ConfigError(f"{source}: model_conf.sil_pdf_ids {options.sil_pdf_ids} outside the "
                          f"{conf['output_dim']} output classes")
    frontend = Frontend(_frontend_config(raw, source), load_cmvn(files.cmvn))
    frontend_step = frontend.config.frame_shift * frontend.config.lfr_n
    if frontend.output_size != conf["input_dim"] or frontend_step != options.frame_in_ms:
        raise ConfigError(f"{source}: frontend_conf gives {frontend.output_size}-dim features every "
                          f"{frontend_step:g} ms, but encoder_conf.input_dim is {conf['input_dim']} and "
                          f"model_conf.frame_in_ms {options.frame_in_ms}")
    network = FsmnNetwork(conf, use_softmax=bool((raw.get("encoder_conf") or {}).get("use_softmax", True)))
    state, _ = read_state_dict(files.weights)
    check_state_dict(network, state, files.weights)
    network.load_state_dict(state, strict=True)
    logger.info("loaded FSMN-VAD (%.2fM parameters) from %s", sum(p.numel() for p in network.parameters()) / 1e6,
                files.root)
    return FsmnVad(network, frontend, options, str(Path(files.root)))
