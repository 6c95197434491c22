"""Paraformer training objective: label-smoothed CE on the decoder + CIF length (MAE) loss (+ optional CTC).

The offline model follows FunASR's ``Paraformer.forward`` term for term (the loss equals it for the same
weights and batch with the sampler off). The streaming model is trained through the very chunked
encoder used at inference (windows, overlap, look-back caches: one :class:`~..core.chunking.ChunkConfig`), and
its decoder sees each token's own window plus the frames the streaming decoder's cross-attention keeps
(``decoder_keep_frames``: none for a look-back of 0 or -1), so training and streaming decoding match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from ..core.chunking import ChunkConfig
from ..core.layers import lengths_to_mask
from ..core.model import Paraformer
from ..core.transcript import EOS_ID
from ..core.predictor import integrate_and_fire

IGNORE_ID = -1


@dataclass
class LossOutput:
    """Total loss and its parts (floats for logging)."""

    loss: torch.Tensor
    loss_att: float
    loss_pre: float
    loss_ctc: float
    accuracy: float
    tokens: int


def label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float, normalize_length: bool
                         ) -> torch.Tensor:
    """KL to a smoothed one-hot target (FunASR's LabelSmoothingLoss); padding (-1) is ignored."""
    vocab = logits.size(-1)
    flat_logits, flat_targets = logits.reshape(-1, vocab), targets.reshape(-1)
    ignore = flat_targets == IGNORE_ID
    with torch.no_grad():
        true_dist = torch.full_like(flat_logits, smoothing / (vocab - 1))
        true_dist.scatter_(1, flat_targets.masked_fill(ignore, 0)[:, None], 1.0 - smoothing)
    kl = nn.functional.kl_div(torch.log_softmax(flat_logits, dim=1), true_dist, reduction="none")
    denominator = int((~ignore).sum()) if normalize_length else logits.size(0)
    return kl.masked_fill(ignore[:, None], 0.0).sum() / max(denominator, 1)


def append_eos(targets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token sequences with IGNORE_ID after appending </s> (Paraformer's predictor_bias = 1)."""
    with_eos = [torch.cat([t, t.new_tensor([EOS_ID])]) for t in targets]
    lengths = torch.tensor([len(t) for t in with_eos], dtype=torch.long)
    return nn.utils.rnn.pad_sequence(with_eos, batch_first=True, padding_value=IGNORE_ID), lengths


def glancing_sample(model: Paraformer, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor,
                    target_lengths: torch.Tensor, acoustic: torch.Tensor, ratio: float,
                    cross_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Paraformer's sampler: replace ``ratio`` x (number of wrong first-pass tokens) acoustic embeddings
    by the target embeddings, so the decoder learns to use context."""
    valid = lengths_to_mask(target_lengths, targets.size(1))
    with torch.no_grad():
        predicted = model.decoder(memory, memory_lengths, acoustic, target_lengths, cross_mask).argmax(-1)
        wrong = ((predicted != targets) & valid).sum(1)
        keep_acoustic = torch.ones_like(valid)
        for row in range(targets.size(0)):
            count = int(wrong[row].float() * ratio)
            if count > 0:
                keep_acoustic[row, torch.randperm(int(target_lengths[row]), device=targets.device)[:count]] = False
        keep_acoustic &= valid
    target_embeddings = model.decoder.embed(targets.masked_fill(~valid, 0))
    mixed = torch.where(keep_acoustic[:, :, None], acoustic, target_embeddings)
    return mixed * valid[:, :, None]


def chunked_encode(model: Paraformer, features: torch.Tensor, lengths: torch.Tensor, chunk: ChunkConfig):
    """Run the streaming encoder over a padded batch exactly as inference does, window by window.

    Returns the hidden states and CIF weights of the frames each window owns (batch, frames, dim), their
    lengths, the decoder memory (all windows side by side), its validity and the window width.
    """
    left, stride, look_ahead = chunk.chunk_size
    batch, frames, _ = features.shape
    x = model.encoder.embed(features)
    overlap = left + look_ahead
    x = nn.functional.pad(x, (0, 0, overlap, stride + overlap))  # zero overlap before, padding after
    valid = nn.functional.pad(lengths_to_mask(lengths, frames), (overlap, stride + overlap), value=False)
    valid[:, :overlap] = True  # inference starts from a zero overlap buffer, which it treats as frames
    windows = max(1, -(-int(lengths.max()) // stride))
    width = overlap + stride
    caches: list = [None] * len(model.encoder.layers)
    look_back = chunk.encoder_keep_frames
    last_window = (lengths + stride - 1) // stride - 1  # index of each utterance's final window
    # CIF runs over window frames from ``left`` on: each window owns ``stride`` of them, the final one also
    # its look-ahead (inference flushes it); windows after an utterance's final one own nothing
    cif_frames = windows * stride + width - left
    hidden = x.new_zeros(batch, cif_frames, model.encoder.output_size)
    alphas = x.new_zeros(batch, cif_frames)
    memories, memory_valid = [], []
    positions = torch.arange(width - left, device=x.device)
    for k in range(windows):
        window_valid = valid[:, k * stride: k * stride + width]
        encoded = model.encoder.forward_chunk(x[:, k * stride: k * stride + width], window_valid, caches,
                                              look_ahead, look_back)
        # padding zeroed first: at inference the predictor's conv sees zeros after a stream's last frame
        weights = model.predictor.frame_weights(encoded * window_valid[:, :, None]) * window_valid
        owned = ((positions[None, :] < stride) | (last_window[:, None] == k)) & (last_window[:, None] >= k)
        span = slice(k * stride, k * stride + width - left)
        hidden[:, span] += encoded[:, left:] * owned[:, :, None]
        alphas[:, span] += weights[:, left:] * owned
        memories.append(encoded)
        memory_valid.append(window_valid & (k <= last_window)[:, None])
    return hidden, alphas, lengths + look_ahead, torch.cat(memories, dim=1), torch.cat(memory_valid, dim=1), width


def decoder_cross_mask(fire_frames: list[list[int]], tokens: int, chunk: ChunkConfig, width: int,
                       last_windows: list[int], memory_valid: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, memory) mask: a token sees its firing window and the frames before it that the streaming
    decoder's cross-attention cache holds (``chunk.decoder_keep_frames``)."""
    batch, memory_length = memory_valid.shape
    mask = torch.zeros(batch, tokens, memory_length, dtype=torch.bool, device=memory_valid.device)
    keep, stride = chunk.decoder_keep_frames, chunk.stride
    for row in range(batch):
        fires = fire_frames[row]
        for token in range(tokens):
            frame = fires[token] if token < len(fires) else (fires[-1] if fires else 0)
            window = min(frame // stride, last_windows[row])
            mask[row, token, window * width:(window + 1) * width] = True
            if keep:
                mask[row, token, max(0, window * width - keep):window * width] = True
    return mask & memory_valid[:, None, :]


def paraformer_loss(model: Paraformer, features: torch.Tensor, feature_lengths: torch.Tensor,
                    targets: Sequence[torch.Tensor], sampling_ratio: Optional[float] = None,
                    chunk_size: Sequence[int] = (0, 10, 5), encoder_look_back: int = 4,
                    decoder_look_back: int = 1) -> LossOutput:
    """Loss for one batch of LFR features and target token id sequences (without </s>)."""
    conf = model.config.training
    ratio = conf.sampling_ratio if sampling_ratio is None else sampling_ratio
    device = features.device
    ys, ys_lengths = append_eos(targets) if conf.predictor_bias == 1 else _pad(targets)
    ys, ys_lengths = ys.to(device), ys_lengths.to(device)
    cross_mask = None
    if model.streaming:
        chunk = ChunkConfig.create(chunk_size, encoder_look_back, decoder_look_back)
        hidden, alphas, cif_lengths, memory, memory_valid, width = chunked_encode(model, features, feature_lengths,
                                                                                  chunk)
        token_counts = alphas.sum(-1)
        scaled = alphas * (ys_lengths / token_counts.clamp(min=1e-8))[:, None]
        acoustic, _, fires = integrate_and_fire(hidden, scaled, model.predictor.threshold, int(ys_lengths.max()))
        last_windows = ((feature_lengths + chunk.stride - 1) // chunk.stride - 1).tolist()
        cross_mask = decoder_cross_mask(fires, ys.size(1), chunk, width, last_windows, memory_valid)
        memory_lengths = torch.full_like(feature_lengths, memory.size(1))
        encoded, encoded_lengths = hidden, cif_lengths
    else:
        encoded, encoded_lengths = model.encoder(features, feature_lengths)
        cif = model.predictor(encoded, encoded_lengths, target_lengths=ys_lengths.to(encoded.dtype))
        acoustic, token_counts = cif.embeddings, cif.token_counts
        memory, memory_lengths = encoded, encoded_lengths
    if ratio > 0.0:
        decoder_input = glancing_sample(model, memory, memory_lengths, ys, ys_lengths, acoustic, ratio, cross_mask)
    else:
        decoder_input = acoustic
    logits = model.decoder(memory, memory_lengths, decoder_input, ys_lengths, cross_mask)
    loss_att = label_smoothing_loss(logits, ys, conf.lsm_weight, conf.length_normalized_loss)
    normalizer = ys_lengths.sum().float() if conf.length_normalized_loss else float(ys_lengths.numel())
    loss_pre = (ys_lengths.to(token_counts.dtype) - token_counts).abs().sum() / normalizer
    loss = loss_att + conf.predictor_weight * loss_pre
    loss_ctc = torch.zeros(())
    if conf.ctc_weight > 0.0 and hasattr(model, "ctc"):
        loss_ctc = ctc_loss(model, encoded, encoded_lengths, targets)
        loss = conf.ctc_weight * loss_ctc + (1 - conf.ctc_weight) * loss_att + conf.predictor_weight * loss_pre
    valid = ys != IGNORE_ID
    accuracy = float(((logits.argmax(-1) == ys) & valid).sum()) / max(int(valid.sum()), 1)
    return LossOutput(loss, loss_att.item(), loss_pre.item(), loss_ctc.item(), accuracy, int(valid.sum()))


def ctc_loss(model: Paraformer, encoded: torch.Tensor, lengths: torch.Tensor, targets: Sequence[torch.Tensor]
             ) -> torch.Tensor:
    """CTC on the encoder output (blank id 0), summed and divided by the batch size as in FunASR."""
    log_probs = torch.log_softmax(model.ctc.ctc_lo(encoded), dim=-1).transpose(0, 1)
    flat = torch.cat(list(targets)).to(encoded.device)
    target_lengths = torch.tensor([len(t) for t in targets], device=encoded.device)
    loss = nn.functional.ctc_loss(log_probs, flat, lengths, target_lengths, blank=0, reduction="sum",
                                  zero_infinity=True)
    return loss / encoded.size(0)


def _pad(targets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    return nn.utils.rnn.pad_sequence(list(targets), batch_first=True, padding_value=IGNORE_ID), lengths
