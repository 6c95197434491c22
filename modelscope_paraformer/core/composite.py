"""The model-card pipeline: VAD segments -> batched recognition -> punctuation -> sentences.

FunASR's ``AutoModel(model=ASR, vad_model=VAD, punc_model=PUNC)`` in native form. A :class:`Transcriber`
holds a recogniser (:class:`~.recognizer.Recognizer`, or a :class:`~.model.Paraformer`, any engine) and, when
given, an FSMN-VAD and a CT-Transformer. The VAD cuts each input into speech segments, the segments are decoded in
batches of at most ``batch_size_s`` padded seconds (shortest first; at most a fifth of a batch padding, as a
CPU pays for padding more than batching saves), their texts and timestamps are put back in
time order (timestamps made absolute), the punctuation model punctuates the whole text once, and with
``sentence_timestamp=True`` the punctuation cuts the timed tokens into ``sentence_info``. The result dicts have
FunASR's keys and values. Everything here is numpy: the models run wherever their engines run.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from .audio import SAMPLE_RATE, as_numpy, to_float32
from .batching import MAX_PADDING, group_by_length, padding_share
from .sentences import split_sentences
from .transcript import Transcript

logger = logging.getLogger(__name__)

SAMPLES_PER_MS = SAMPLE_RATE // 1000
DEFAULT_BATCH_SIZE_S = 300.0  # FunASR's default padded seconds per batch of segments
DEFAULT_BATCH_SIZE_THRESHOLD_S = 60.0  # a segment at least this long is decoded alone


class SpeechSegmenter(Protocol):
    """What the composite needs of a VAD: speech segments of a 16 kHz waveform as [[start_ms, end_ms], ...]."""

    def segments(self, waveform: np.ndarray) -> list[list[int]]: ...


class Punctuation(Protocol):
    """What the composite needs of a punctuation model: ``punctuate(text)`` with ``.text`` and ``.punc_array``."""

    def punctuate(self, text: str) -> Any: ...


def join_segment_texts(texts: Sequence[str]) -> str:
    """The punctuation model's input: segment texts joined, with a space only where a side is not CJK."""
    joined = ""
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if joined and not (_is_cjk(joined[-1]) and _is_cjk(text[0])):
            joined += " "
        joined += text
    return joined


def _is_cjk(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff"


def timed_units(transcript: Transcript, tokenizer: Any) -> list[str]:
    """The tokens that ``transcript.timestamps`` time, BPE pieces (``@@``) glued into words when that is how
    they are timed; what sentences are built from."""
    tokens = tokenizer.decode_tokens(transcript.token_ids) if tokenizer is not None else []
    if len(tokens) == len(transcript.timestamps):
        return tokens
    words = re.sub(r"@@ ?", "", " ".join(tokens)).split()
    return words if len(words) == len(transcript.timestamps) else tokens


class Transcriber:
    """Recognition with optional VAD segmentation and punctuation; FunASR's composite call, natively."""

    def __init__(self, recognizer: Any, vad: Optional[SpeechSegmenter] = None,
                 punctuator: Optional[Punctuation] = None):
        self.recognizer = recognizer.recognizer  # a Paraformer hands out its Recognizer; a Recognizer is itself
        self.vad = vad
        self.punctuator = punctuator

    @property
    def streaming(self) -> bool:
        return self.recognizer.streaming

    def transcribe(self, waveforms: Sequence[Any], keys: Optional[Sequence[str]] = None,
                   batch_size_s: float = DEFAULT_BATCH_SIZE_S,
                   batch_size_threshold_s: float = DEFAULT_BATCH_SIZE_THRESHOLD_S, sentence_timestamp: bool = False,
                   return_raw_text: bool = False, batch_size: int = 8, **decode_options: Any) -> list[dict]:
        """One FunASR-shaped dict per 16 kHz waveform: ``key``, ``text``, ``timestamp`` (ms, absolute), and
        ``raw_text`` (the text before punctuation) / ``sentence_info`` when asked for. ``decode_options`` (e.g.
        ``hotwords``) go to the recogniser. Without a VAD each input is decoded whole (long inputs are still cut
        at pauses by the recogniser), then punctuated."""
        waveforms = [to_float32(as_numpy(w), f"waveform {i}") for i, w in enumerate(waveforms)]
        keys = list(keys) if keys is not None else [f"utt{i}" for i in range(len(waveforms))]
        if len(keys) != len(waveforms):
            raise ValueError(f"got {len(keys)} key(s) for {len(waveforms)} waveform(s): give one key per waveform")
        if self.vad is None:
            transcripts = self.recognizer.transcribe(waveforms, keys, batch_size, **decode_options)
            return [self._finish(key, [t], [[0, len(w) // SAMPLES_PER_MS]], sentence_timestamp, return_raw_text)
                    for key, w, t in zip(keys, waveforms, transcripts)]
        results = []
        for key, waveform in zip(keys, waveforms):
            spans = self.vad.segments(waveform)
            logger.debug("%s: %d speech segments", key, len(spans))
            transcripts = self._decode_segments(waveform, spans, batch_size_s, batch_size_threshold_s,
                                                decode_options)
            results.append(self._finish(key, transcripts, spans, sentence_timestamp, return_raw_text))
        return results

    def _decode_segments(self, waveform: np.ndarray, spans: list[list[int]], batch_size_s: float,
                         threshold_s: float, decode_options: dict) -> list[Transcript]:
        """Each VAD segment decoded, in time order, with absolute timestamps."""
        starts = [int(start) for start, _ in spans]
        lengths = [int(end) - int(start) for start, end in spans]
        pieces = [waveform[start * SAMPLES_PER_MS:(start + length) * SAMPLES_PER_MS]  # a slice stops at the end
                  for start, length in zip(starts, lengths)]
        budget_ms = max(batch_size_s * 1000.0, float(min(lengths, default=0)))

        def fits(batch: list[int]) -> bool:  # FunASR's budget, and little padding (the last index is the longest)
            longest = lengths[batch[-1]]
            return (longest < threshold_s * 1000.0 and longest * len(batch) <= budget_ms
                    and padding_share(lengths, batch) <= MAX_PADDING)

        transcripts: list[Optional[Transcript]] = [None] * len(spans)
        for batch in group_by_length(lengths, fits):
            samples, keys = [pieces[i] for i in batch], [f"seg{i}" for i in batch]
            if self.streaming:  # each segment streamed, its timestamps then made absolute
                decoded = self.recognizer.transcribe(samples, keys, len(batch), segment_over_seconds=None,
                                                     **decode_options)
                for i, transcript in zip(batch, decoded):
                    offset = starts[i]
                    transcript.timestamps = [[start + offset, end + offset] for start, end in transcript.timestamps]
            else:  # offsets applied before clipping at 0: a token may start just before its segment's cut
                decoded = self.recognizer.recognize(samples, keys, [starts[i] for i in batch],
                                                    **decode_options)
            for i, transcript in zip(batch, decoded):
                transcripts[i] = transcript
        return transcripts  # type: ignore[return-value]

    def _finish(self, key: str, pieces: list[Transcript], spans: list[list[int]], sentence_timestamp: bool,
                return_raw_text: bool) -> dict:
        """Join the pieces of one input, punctuate, cut sentences."""
        tokenizer = self.recognizer.tokenizer
        texts = [piece.text for piece in pieces]
        timestamps = [stamp for piece in pieces for stamp in piece.timestamps]
        units = [unit for piece in pieces for unit in timed_units(piece, tokenizer)]
        raw = " ".join(text for text in texts if text)
        result: dict = {"key": key, "text": raw, "timestamp": timestamps}
        punctuation = None
        if self.punctuator is not None and raw:
            punctuated = self.punctuator.punctuate(join_segment_texts(texts))
            result["text"] = punctuated.text
            punctuation = [int(p) for p in punctuated.punc_array]
            if return_raw_text:
                result["raw_text"] = raw
        if sentence_timestamp:
            result["sentence_info"] = self._sentences(pieces, spans, units, timestamps, punctuation,
                                                      return_raw_text)
        return result

    def _sentences(self, pieces: list[Transcript], spans: list[list[int]], units: list[str],
                   timestamps: list[list[int]], punctuation: Optional[list[int]], raw_text: bool) -> list[dict]:
        if self.punctuator is None:
            return segment_sentences(pieces, spans)
        if punctuation is not None and len(punctuation) != len(timestamps):
            logger.warning("punctuation covers %d tokens but %d are timed: sentences are the VAD segments",
                           len(punctuation), len(timestamps))
            return segment_sentences(pieces, spans)
        return split_sentences(units, timestamps, punctuation, raw_text)


def segment_sentences(pieces: Sequence[Transcript], spans: Sequence[Sequence[int]]) -> list[dict]:
    """Without punctuation each VAD segment that has text is a sentence (FunASR's fallback)."""
    sentences = []
    for piece, (start, end) in zip(pieces, spans):
        if piece.text:
            stamps = [list(t) for t in piece.timestamps]
            sentences.append({"start": stamps[0][0] if stamps else start, "end": stamps[-1][1] if stamps else end,
                              "text": piece.text, "sentence": piece.text, "timestamp": stamps})
    return sentences
