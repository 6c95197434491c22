"""Paraformer: frontend -> SAN-M encoder -> CIF predictor -> SAN-M decoder -> characters.

One class serves the offline model (``Paraformer``), the streaming one (``ParaformerStreaming``), BiCif
(``BiCifParaformer``: a predictor with an upsampled timestamp head) and SeACo (``SeacoParaformer``: BiCif plus
a hotword branch, a bias encoder over hotword embeddings and a seaco decoder attending to them): they share the
network. Recognition runs in :mod:`.recognizer` over this network as a :class:`~.engines.torch_engine.
TorchEngine`; ``model.transcribe`` is a shortcut to it.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .config import ConfigError, DecoderConfig, ModelConfig
from .decoder import ParaformerDecoder
from .encoder import SANMEncoder
from .engines.torch_engine import TorchEngine
from .frontend import Frontend
from .hotwords import Hotwords
from .predictor import CifPredictor, TimestampCifPredictor
from .recognizer import Recognizer
from .tokenizer import CharTokenizer
from .transcript import Transcript


def _decoder(vocab_size: int, size: int, conf: DecoderConfig, embedding: bool = True, output_layer: bool = True
             ) -> ParaformerDecoder:
    return ParaformerDecoder(vocab_size, size, conf.attention_heads, conf.linear_units, conf.num_blocks,
                             conf.att_layer_num, conf.kernel_size, conf.sanm_shift, conf.dropout_rate,
                             conf.self_attention_dropout_rate, conf.src_attention_dropout_rate, embedding, output_layer)


class Paraformer(nn.Module):
    """The network plus its frontend and tokenizer; build with :func:`~.checkpoint.load_model`."""

    checkpoint_map = None  # a CheckpointMap while the weights are views of a mapped model.pt (load_model(mmap=True))
    inference_only = False  # set by optimize_for_inference: packed/quantised weights that cannot be saved
    optimized_for: Optional[tuple[str, Optional[str], bool]] = None  # (dtype, quantize, pack) once optimised
    seg_dict: Optional[dict[str, list[str]]] = None  # the model dir's seg_dict (hotword words -> tokens)

    def __init__(self, config: ModelConfig, frontend: Optional[Frontend] = None,
                 tokenizer: Optional[CharTokenizer] = None):
        super().__init__()
        self.config = config
        enc, dec, pred = config.encoder, config.decoder, config.predictor
        self.encoder = SANMEncoder(config.input_size, enc.output_size, enc.attention_heads, enc.linear_units,
                                   enc.num_blocks, enc.kernel_size, enc.sanm_shift, enc.dropout_rate,
                                   enc.attention_dropout_rate)
        predictor_args = (enc.output_size, pred.l_order, pred.r_order, pred.threshold, pred.tail_threshold,
                          pred.smooth_factor, pred.noise_threshold)
        if pred.timestamp_head:
            self.predictor = TimestampCifPredictor(*predictor_args, pred.upsample_times, pred.smooth_factor2,
                                                   pred.noise_threshold2, pred.use_cif1_cnn)
        else:
            self.predictor = CifPredictor(*predictor_args)
        self.decoder = _decoder(config.vocab_size, enc.output_size, dec)
        if config.training.ctc_weight > 0.0:
            self.ctc = nn.Module()
            self.ctc.ctc_lo = nn.Linear(enc.output_size, config.vocab_size)
        if config.seaco is not None:  # SeACo's hotword parts, named as in FunASR's checkpoints
            seaco = config.seaco
            if seaco.inner_dim != enc.output_size:
                raise ConfigError(f"model_conf.inner_dim {seaco.inner_dim} must equal the decoder's size "
                                  f"{enc.output_size}: hotwords are embedded with the decoder's token embedding")
            self.bias_encoder = nn.LSTM(seaco.inner_dim, seaco.inner_dim, 2, batch_first=True,
                                        bidirectional=seaco.bias_encoder_bid)
            self.lstm_proj = nn.Linear(seaco.inner_dim * 2, seaco.inner_dim) if seaco.bias_encoder_bid else None
            self.seaco_decoder = _decoder(config.vocab_size, seaco.inner_dim, seaco.decoder,
                                          seaco.decoder_embedding, seaco.decoder_output_layer)
            self.hotword_output_layer = nn.Linear(seaco.inner_dim, config.vocab_size)
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
        return Recognizer(TorchEngine(self), self.config, self.frontend, self.tokenizer, self.seg_dict)

    def transcribe(self, waveforms: Sequence[Any], keys: Optional[Sequence[str]] = None, batch_size: int = 8,
                   segment_over_seconds: Optional[float] = 60.0, hotwords: Optional[Hotwords] = None
                   ) -> list[Transcript]:
        """Recognise 16 kHz waveforms: :meth:`Recognizer.transcribe` on this network."""
        return self.recognizer.transcribe(waveforms, keys, batch_size, segment_over_seconds, hotwords)

    def parameter_count(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

