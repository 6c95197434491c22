"""SeACo-Paraformer's hotword branch on a decoded batch (torch): bias the tokens towards the given hotwords.

Each hotword's token embeddings (the decoder's own embedding) run through the bias encoder (an LSTM); its last
state represents the hotword. The seaco decoder attends from the tokens to those representations twice, once
from the CIF embeddings and once from the decoder's hidden states; the sum gives hotword-token scores. Where
their best token is ``NO_BIAS`` the decoder's token is kept, elsewhere the hotword branch's. Over 50 hotwords,
the 50 the seaco decoder attends to most (its last layer's attention, summed over heads and tokens) are kept,
with the ``<s>`` entry.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from .model import Paraformer

HOTWORD_FILTER = 50  # more hotwords than this are filtered per utterance


def hotword_vectors(model: "Paraformer", hotwords: Sequence[Sequence[int]]) -> torch.Tensor:
    """One vector per hotword (hotwords, size): the bias encoder's output at the hotword's last token."""
    device = model.device
    lengths = torch.tensor([len(ids) for ids in hotwords], dtype=torch.long)
    ids = nn.utils.rnn.pad_sequence([torch.tensor(list(h), dtype=torch.long) for h in hotwords], batch_first=True)
    embedded = model.decoder.embed(ids.to(device))
    packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    output = nn.utils.rnn.pad_packed_sequence(model.bias_encoder(packed)[0], batch_first=True)[0]
    if model.lstm_proj is not None:
        output = model.lstm_proj(output)
    return output[torch.arange(len(hotwords)), lengths - 1]


def _filtered(model: "Paraformer", vectors: torch.Tensor, hidden: torch.Tensor, count: int) -> torch.Tensor:
    """The hotwords one utterance's tokens (``hidden`` (1, tokens, size)) attend to most, then ``<s>``."""
    seaco = model.seaco_decoder
    context = vectors[None]
    lengths = torch.tensor([len(vectors)], device=vectors.device)
    weights = seaco.cross_attention_weights(context, lengths, hidden[:, :count],
                                            torch.tensor([count], device=vectors.device), len(seaco.decoders) - 1)
    scores = weights[0].sum(0).sum(0)
    keep = torch.topk(scores, min(HOTWORD_FILTER, len(vectors) - 1))[1].tolist() + [len(vectors) - 1]
    return vectors[keep]


@torch.inference_mode()
def biased_token_ids(model: "Paraformer", memory: torch.Tensor, memory_lengths: torch.Tensor,
                     embeddings: torch.Tensor, counts: Sequence[int],
                     hotwords: Sequence[Sequence[int]]) -> list[list[int]]:
    """Best token ids per utterance with the hotword branch (``hotwords`` end with the ``<s>`` entry)."""
    device = memory.device
    token_lengths = torch.tensor(list(counts), device=device)
    hidden = model.decoder.hidden(memory, memory_lengths, embeddings, token_lengths)
    decoder_scores = torch.log_softmax(model.decoder.output_layer(hidden), dim=-1)
    vectors = hotword_vectors(model, hotwords)
    if len(vectors) > HOTWORD_FILTER:
        context = torch.stack([_filtered(model, vectors, hidden[row:row + 1], count)
                               for row, count in enumerate(counts)])
    else:
        context = vectors[None].expand(len(counts), -1, -1)
    context_lengths = torch.full((len(counts),), context.size(1), device=device)
    seaco = model.seaco_decoder
    attended = (seaco.hidden(context, context_lengths, embeddings, token_lengths)
                + seaco.hidden(context, context_lengths, hidden, token_lengths))
    hotword_scores = torch.log_softmax(model.hotword_output_layer(attended), dim=-1)
    no_bias = (hotword_scores.argmax(-1) == model.config.seaco.no_bias_id)[:, :, None]
    best = torch.where(no_bias, decoder_scores, hotword_scores).argmax(-1)
    return [row[:count] for row, count in zip(best.tolist(), counts)]
