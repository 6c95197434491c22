"""Recognition over an engine: offline batches, long audio cut at pauses, streaming sessions.

A :class:`Recognizer` is what :func:`~.loading.load_model` gives for any model dir (a :class:`~.model.Paraformer`
hands out one over its torch engine as ``model.recognizer``): the frontend and tokenizer of the model, its
configuration, and an engine (:mod:`.engine`) that runs the network. Everything here is numpy.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, Optional, Sequence, Union

import numpy as np

from .audio import SAMPLE_RATE, as_numpy, to_float32
from .batching import group_by_length, length_batches
from .cif import fire_utterance, paraformer_timestamps, upsampled_timestamps
from .config import ModelConfig
from .engine import Engine
from .frontend import Frontend
from .hotwords import HotwordError, Hotwords, hotword_ids
from .scheduler import BatchedStreamer, StreamingDecoder
from .tokenizer import SPECIAL_TOKENS, CharTokenizer
from .transcript import SPECIAL_IDS, Transcript
from .vad import split_long_audio

logger = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def _warn_hotwords_ignored(model_name: Optional[str]) -> None:
    """Warn once per model type: FunASR ignores hotwords given to a model without hotword support, silently."""
    logger.warning("%s does not support hotwords (SeacoParaformer does): they are ignored", model_name)


class Recognizer:
    """A model ready to recognise: ``transcribe`` whole inputs, ``stream`` chunk by chunk (online models)."""

    def __init__(self, engine: Engine, config: ModelConfig, frontend: Frontend,
                 tokenizer: Optional[CharTokenizer] = None, seg_dict: Optional[dict[str, list[str]]] = None):
        self.engine = engine
        self.config = config
        self.frontend = frontend
        self.tokenizer = tokenizer
        self.seg_dict = seg_dict  # the model dir's word -> tokens map for hotwords (SeACo hub dirs have one)

    @property
    def recognizer(self) -> "Recognizer":
        """Itself: a :class:`~.model.Paraformer` and a recognizer are both accepted wherever a model is."""
        return self

    @property
    def streaming(self) -> bool:
        """True for the chunked-encoder (online) architecture."""
        return self.config.streaming

    def transcribe(self, waveforms: Sequence[Any], keys: Optional[Sequence[str]] = None, batch_size: int = 8,
                   segment_over_seconds: Optional[float] = 60.0, hotwords: Optional[Hotwords] = None
                   ) -> list[Transcript]:
        """Recognise 16 kHz waveforms (float or integer PCM arrays or tensors, mono or (samples, channels)).

        Offline models decode batches of similar lengths; inputs longer than ``segment_over_seconds`` are cut
        at pauses (energy VAD) and decoded in batches, so memory stays bounded and attention cost does not grow
        with the square of the length; timestamps stay absolute (``None``: every input in one piece). Online
        models stream each input chunk by chunk, as FunASR does for a whole file.

        ``hotwords`` (SeACo-Paraformer): a string of space-separated hotwords, a ``.txt`` file with one per line,
        or a list (see :mod:`.hotwords`); models without hotword support ignore them with a warning, as FunASR
        does silently.
        """
        waveforms = [to_float32(as_numpy(w), f"waveform {i}") for i, w in enumerate(waveforms)]
        keys = list(keys) if keys is not None else [f"utt{i}" for i in range(len(waveforms))]
        if len(keys) != len(waveforms):
            raise ValueError(f"got {len(keys)} key(s) for {len(waveforms)} waveform(s): give one key per waveform")
        ids = self.hotword_ids(hotwords)
        if self.streaming:
            return [StreamingDecoder(self).decode_all(w, key) for w, key in zip(waveforms, keys)]
        results: list[Optional[Transcript]] = [None] * len(waveforms)
        limit = None if segment_over_seconds is None else segment_over_seconds * self.frontend.config.fs
        if limit is not None:
            for i, waveform in enumerate(waveforms):
                if len(waveform) > limit:
                    results[i] = self.transcribe_long(waveform, keys[i], batch_size, hotwords=ids)
        todo = [i for i in range(len(waveforms)) if results[i] is None]
        size = max(1, batch_size)
        for group in group_by_length([len(waveforms[i]) for i in todo], lambda batch: len(batch) <= size):
            batch = [todo[j] for j in group]
            decoded = self.recognize([waveforms[i] for i in batch], [keys[i] for i in batch], hotwords=ids)
            for i, transcript in zip(batch, decoded):
                results[i] = transcript
        return results  # type: ignore[return-value]

    def hotword_ids(self, hotwords: Union[Hotwords, list[list[int]], None]) -> Optional[list[list[int]]]:
        """Hotwords as token id lists ending with ``[<s>]`` (see :mod:`.hotwords`); ``None`` when there are none
        or the model cannot use them (then a warning, once). Already converted lists pass through."""
        if hotwords is None:
            return None
        if not self.config.supports_hotwords:
            _warn_hotwords_ignored(self.config.raw.get("model"))
            return None
        if isinstance(hotwords, list) and all(isinstance(h, list) for h in hotwords) and hotwords:
            return hotwords  # type: ignore[return-value]
        if self.tokenizer is None:
            raise HotwordError("hotwords need the model's token list (tokens.json)")
        return hotword_ids(hotwords, self.tokenizer, self.seg_dict)

    def recognize(self, waveforms: Sequence[np.ndarray], keys: Sequence[str],
                  offsets_ms: Optional[Sequence[float]] = None,
                  hotwords: Union[Hotwords, list[list[int]], None] = None) -> list[Transcript]:
        """Offline (full-context) decoding of one batch of 16 kHz float32 waveforms; greedy, as Paraformer is.

        Timestamps are FunASR's (:mod:`.cif`), offset by ``offsets_ms`` (whole ms, as FunASR offsets VAD
        segments); tokens that are not text (``<unk>``) have none, so they pair with the text's tokens.
        """
        ids_of_hotwords = self.hotword_ids(hotwords)
        offsets_ms = list(offsets_ms) if offsets_ms is not None else [0.0] * len(waveforms)
        results = [Transcript(key, "") for key in keys]
        features = [self.frontend(w) for w in waveforms]
        nonempty = [i for i, f in enumerate(features) if len(f)]
        if not nonempty:
            return results
        encoded = self.engine.encode([features[i] for i in nonempty])
        predictor = self.config.predictor
        fired = [(i, output, *fire_utterance(output.hidden, output.alphas, predictor.threshold,
                                             predictor.tail_threshold, predictor.timestamp_head))
                 for i, output in zip(nonempty, encoded)]
        fired = [item for item in fired if len(item[2])]
        if not fired:
            return results
        if ids_of_hotwords is None:
            token_ids = self.engine.decode([item[1] for item in fired], [item[2] for item in fired])
        else:
            token_ids = self.engine.decode([item[1] for item in fired], [item[2] for item in fired],
                                           ids_of_hotwords)
        for (i, output, embeddings, _, alphas), ids in zip(fired, token_ids):
            result = results[i]
            result.token_ids = [t for t in ids if t not in SPECIAL_IDS]
            if self.tokenizer is not None:
                tokens = [self.tokenizer.tokens[t] if 0 <= t < len(self.tokenizer) else "" for t in result.token_ids]
                text_tokens = self.tokenizer.decode_tokens(result.token_ids)
                result.text = self.tokenizer.join(text_tokens)
                if output.timestamp_alphas is not None:
                    stamps = upsampled_timestamps(output.timestamp_alphas, len(embeddings), len(tokens),
                                                  predictor.upsample_times)
                else:
                    stamps = paraformer_timestamps(alphas, len(tokens))
                offset = int(offsets_ms[i])
                result.timestamps = [[max(0, start + offset), max(0, end + offset)]  # never before the input
                                     for (start, end), token in zip(stamps, tokens) if token not in SPECIAL_TOKENS]
        return results

    def transcribe_long(self, samples: np.ndarray, key: str = "utt", batch_size: int = 8, max_seconds: float = 20.0,
                        segments: Optional[list[tuple[int, int]]] = None,
                        hotwords: Union[Hotwords, list[list[int]], None] = None) -> Transcript:
        """Recognise a long waveform segment by segment (cut at pauses); one Transcript, absolute timestamps.

        Offline models decode length-sorted batches of segments; online models stream every segment, up to
        ``batch_size`` streams stepped together (token-identical to one at a time in float32).
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        segments = split_long_audio(samples, max_seconds) if segments is None else segments
        logger.debug("%s: %d segments", key, len(segments))
        if self.streaming:
            pieces = self._stream_segments(samples, segments, max(1, batch_size))
        else:
            pieces = self._recognize_segments(samples, segments, max(1, batch_size), self.hotword_ids(hotwords))
        token_ids = [i for piece in pieces for i in piece.token_ids]
        timestamps = [stamp for piece in pieces for stamp in piece.timestamps]
        text = self.tokenizer.decode(token_ids) if self.tokenizer is not None else ""
        return Transcript(key, text, token_ids, timestamps)

    def stream(self, **options: Any) -> StreamingDecoder:
        """A new streaming session; ``options`` are :class:`StreamingDecoder`'s (chunk_size, look-backs, key)."""
        return StreamingDecoder(self, **options)

    def _recognize_segments(self, samples: np.ndarray, segments: list[tuple[int, int]], batch_size: int,
                            hotwords: Optional[list[list[int]]] = None) -> list[Transcript]:
        results: list = [None] * len(segments)
        for batch in length_batches([end - start for start, end in segments], batch_size):
            decoded = self.recognize([samples[segments[i][0]:segments[i][1]] for i in batch],
                                     [f"seg{i}" for i in batch],
                                     [segments[i][0] * 1000 // SAMPLE_RATE for i in batch], hotwords)
            for i, transcript in zip(batch, decoded):
                results[i] = transcript
        return results

    def _stream_segments(self, samples: np.ndarray, segments: list[tuple[int, int]], batch_size: int
                         ) -> list[Transcript]:
        order = sorted(range(len(segments)), key=lambda i: segments[i][1] - segments[i][0])
        results: list = [None] * len(segments)
        for first in range(0, len(order), batch_size):  # ragged lengths cost nothing: finished streams leave
            streamer = BatchedStreamer(self)
            batch = order[first:first + batch_size]
            for i in batch:
                streamer.open(i)
                streamer.feed(i, samples[segments[i][0]:segments[i][1]], is_final=True)
            streamer.run_until_idle()
            for i in batch:
                transcript = streamer.close(i)
                offset = segments[i][0] * 1000 // SAMPLE_RATE  # whole ms, as offline segments
                transcript.timestamps = [[start + offset, end + offset] for start, end in transcript.timestamps]
                results[i] = transcript
        return results
