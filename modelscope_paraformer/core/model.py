"""Paraformer: frontend -> SAN-M encoder -> CIF predictor -> SAN-M decoder -> characters.

One class serves the offline model (``Paraformer``) and the streaming one (``ParaformerStreaming``):
they share the network; the streaming model decodes chunk by chunk (see :mod:`.streaming`), also when
given a whole file, exactly as FunASR does.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from .audio import as_numpy, to_float32
from .config import ModelConfig
from .decoder import ParaformerDecoder
from .encoder import SANMEncoder
from .frontend import Frontend
from .predictor import CifPredictor, timestamps_from_fires
from .segment import group_by_length, transcribe_long
from .tokenizer import CharTokenizer

logger = logging.getLogger(__name__)

BLANK_ID, SOS_ID, EOS_ID = 0, 1, 2
FRAME_MS = 60.0  # one LFR frame: 6 x 10 ms


@dataclass
class Transcript:
    """One recognised utterance: text, token ids and per-token [start_ms, end_ms]."""

    key: str
    text: str
    token_ids: list[int] = field(default_factory=list)
    timestamps: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The ModelScope/FunASR result shape: key, text, timestamp."""
        return {"key": self.key, "text": self.text, "timestamp": self.timestamps}


class Paraformer(nn.Module):
    """The network plus its frontend and tokenizer; build with :func:`modelscope_paraformer.core.checkpoint.load_model`."""

    checkpoint_map = None  # a CheckpointMap while the weights are views of a mapped model.pt (load_model(mmap=True))
    inference_only = False  # set by optimize_for_inference: packed/quantised weights that cannot be saved
    optimized_for: Optional[tuple[str, Optional[str], bool]] = None  # (dtype, quantize, pack) once optimised

    def __init__(self, config: ModelConfig, frontend: Optional[Frontend] = None,
                 tokenizer: Optional[CharTokenizer] = None):
        super().__init__()
        self.config = config
        enc, dec, pred = config.encoder, config.decoder, config.predictor
        self.encoder = SANMEncoder(config.input_size, enc.output_size, enc.attention_heads, enc.linear_units,
                                   enc.num_blocks, enc.kernel_size, enc.sanm_shift, enc.dropout_rate,
                                   enc.attention_dropout_rate)
        self.predictor = CifPredictor(enc.output_size, pred.l_order, pred.r_order, pred.threshold,
                                      pred.tail_threshold, pred.smooth_factor, pred.noise_threshold)
        self.decoder = ParaformerDecoder(config.vocab_size, enc.output_size, dec.attention_heads, dec.linear_units,
                                         dec.num_blocks, dec.att_layer_num, dec.kernel_size, dec.sanm_shift,
                                         dec.dropout_rate, dec.self_attention_dropout_rate,
                                         dec.src_attention_dropout_rate)
        if config.training.ctc_weight > 0.0:
            self.ctc = nn.Module()
            self.ctc.ctc_lo = nn.Linear(enc.output_size, config.vocab_size)
        self.frontend = frontend or Frontend(config.frontend)
        self.tokenizer = tokenizer

    @property
    def streaming(self) -> bool:
        """True for the chunked-encoder (online) architecture."""
        return self.config.streaming

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def features(self, waveforms: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded LFR+CMVN features (batch, frames, dim) and their lengths for 16 kHz waveforms."""
        feats = [torch.from_numpy(self.frontend(w)) for w in waveforms]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        padded = nn.utils.rnn.pad_sequence(feats, batch_first=True) if feats else torch.zeros(0, 0, 0)
        return padded.to(self.device, self.dtype), lengths.to(self.device)

    @torch.inference_mode()
    def recognize_features(self, features: torch.Tensor, lengths: torch.Tensor,
                           keys: Optional[Sequence[str]] = None, offsets_ms: Optional[Sequence[float]] = None
                           ) -> list[Transcript]:
        """Offline (full-context) decoding of a padded batch of features; greedy, as Paraformer is."""
        keys = list(keys) if keys is not None else [f"utt{i}" for i in range(features.size(0))]
        offsets_ms = list(offsets_ms) if offsets_ms is not None else [0.0] * features.size(0)
        results = [Transcript(key, "") for key in keys]
        nonempty = [i for i in range(features.size(0)) if int(lengths[i]) > 0]
        if not nonempty:
            return results
        index = torch.tensor(nonempty, device=features.device)
        features, lengths = features[index], lengths[index]
        features = features[:, : int(lengths.max())]
        encoded, lengths = self.encoder(features, lengths)
        cif = self.predictor(encoded, lengths)
        token_counts = cif.token_counts
        if int(token_counts.max()) > 0:
            logits = self.decoder(encoded, lengths, cif.embeddings, token_counts)
            best = logits.argmax(-1)
        for row, utt in enumerate(nonempty):
            count = int(token_counts[row])
            if count == 0:
                continue
            ids = [i for i in best[row, :count].tolist() if i not in (BLANK_ID, SOS_ID, EOS_ID)]
            result = results[utt]
            result.token_ids = ids
            if self.tokenizer is not None:
                tokens = self.tokenizer.decode_tokens(ids)
                result.text = self.tokenizer.join(tokens)
                alphas = cif.alphas[row, : int(lengths[row]) + 1]
                result.timestamps = timestamps_from_fires(alphas.float().cpu(), cif.fire_frames[row], len(tokens),
                                                          FRAME_MS, offsets_ms[utt])
        return results

    def transcribe(self, waveforms: Sequence[np.ndarray], keys: Optional[Sequence[str]] = None,
                   batch_size: int = 8, segment_over_seconds: Optional[float] = 60.0) -> list[Transcript]:
        """Recognise 16 kHz waveforms (float or integer PCM arrays or tensors, mono or (samples, channels));
        batches are formed from similar lengths.

        Inputs longer than ``segment_over_seconds`` are cut at pauses (energy VAD) and decoded in batches, so
        memory stays bounded and attention cost does not grow with the square of the length; timestamps stay
        absolute. ``None`` decodes every input in one piece.
        """
        waveforms = [to_float32(as_numpy(w), f"waveform {i}") for i, w in enumerate(waveforms)]  # arrays, tensors
        keys = list(keys) if keys is not None else [f"utt{i}" for i in range(len(waveforms))]
        if len(keys) != len(waveforms):
            raise ValueError(f"got {len(keys)} key(s) for {len(waveforms)} waveform(s): give one key per waveform")
        if self.streaming:
            from .streaming import StreamingDecoder

            return [StreamingDecoder(self).decode_all(w, key) for w, key in zip(waveforms, keys)]
        results: list[Optional[Transcript]] = [None] * len(waveforms)
        limit = None if segment_over_seconds is None else segment_over_seconds * self.frontend.config.fs
        if limit is not None:
            for i, waveform in enumerate(waveforms):
                if len(waveform) > limit:
                    results[i] = transcribe_long(self, waveform, keys[i], batch_size)
        todo = [i for i in range(len(waveforms)) if results[i] is None]
        size = max(1, batch_size)
        for group in group_by_length([len(waveforms[i]) for i in todo], lambda batch: len(batch) <= size):
            batch = [todo[j] for j in group]
            features, lengths = self.features([waveforms[i] for i in batch])
            for i, transcript in zip(batch, self.recognize_features(features, lengths, [keys[i] for i in batch])):
                results[i] = transcript
        return results  # type: ignore[return-value]

    def parameter_count(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

