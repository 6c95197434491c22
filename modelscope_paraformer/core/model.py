"""Paraformer: frontend -> SAN-M encoder -> CIF predictor -> SAN-M decoder -> characters.

One class serves the offline model (``Paraformer``) and the streaming one (``ParaformerStreaming``): they
share the network. Recognition runs in :mod:`.recognizer` over this network as a :class:`~.engines.torch_engine.
TorchEngine`; ``model.transcribe`` is a shortcut to it.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .decoder import ParaformerDecoder
from .encoder import SANMEncoder
from .engines.torch_engine import TorchEngine
from .frontend import Frontend
from .predictor import CifPredictor
from .recognizer import Recognizer
from .tokenizer import CharTokenizer
from .transcript import Transcript


class Paraformer(nn.Module):
    """The network plus its frontend and tokenizer; build with :func:`~.checkpoint.load_model`."""

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
        """Padded LFR+CMVN features (batch, frames, dim) and their lengths for 16 kHz waveforms (training)."""
        feats = [torch.from_numpy(self.frontend(w)) for w in waveforms]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        padded = nn.utils.rnn.pad_sequence(feats, batch_first=True) if feats else torch.zeros(0, 0, 0)
        return padded.to(self.device, self.dtype), lengths.to(self.device)

    @property
    def recognizer(self) -> Recognizer:
        """This network as a :class:`Recognizer` over the torch engine (cheap: it holds no state of its own)."""
        return Recognizer(TorchEngine(self), self.config, self.frontend, self.tokenizer)

    def transcribe(self, waveforms: Sequence[Any], keys: Optional[Sequence[str]] = None, batch_size: int = 8,
                   segment_over_seconds: Optional[float] = 60.0) -> list[Transcript]:
        """Recognise 16 kHz waveforms: :meth:`Recognizer.transcribe` on this network."""
        return self.recognizer.transcribe(waveforms, keys, batch_size, segment_over_seconds)

    def parameter_count(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

