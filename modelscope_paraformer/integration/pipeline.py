"""The ModelScope ``auto-speech-recognition`` pipeline: offline batches and cache-dict streaming sessions.

Both call styles work::

    p(audio_in=chunk, param_dict={"cache": cache, "is_final": False, "chunk_size": [5, 10, 5]})  # model cards
    p(input=chunk, cache=cache, is_final=False, chunk_size=[0, 10, 5])                         # FunASR 1.x
    p("a.wav") / p(["a.wav", array]) / p("wav.scp", batch_size_s=60)                             # offline

The output is always a list of dicts: ``{"key", "text", "timestamp"}`` per utterance offline,
``[{"key", "text"}]`` with the text recognised by *this* call when streaming (a :class:`ResultList`, so the
old model-card code ``result["text"]`` keeps working). A streaming call that recognised nothing new answers
``[{"key", "text": ""}]`` in both call styles (the pre-1.x pipelines answered ``{}``; code written since indexes
``[0]["text"]``, and the model card's ``if len(rec_result) != 0`` loop works either way).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from modelscope.pipelines.base import Pipeline
from modelscope.pipelines.builder import PIPELINES
from modelscope.utils.constant import Frameworks, Tasks

from .. import DEMO_MODEL_DIR
from ..core import ChunkSizeError, StreamingDecoder
from ..core.audio import SAMPLE_RATE, Utterance
from ..core.batching import group_by_length
from ..core.chunking import check_chunk_size
from ..core.errors import ParaformerError
from ..composition import build_transcriber
from ..hub import resolve_model_dir
from .model import ParaformerForASR
from .preprocessor import ParaformerAudioPreprocessor

logger = logging.getLogger(__name__)

PIPELINE_NAME = "paraformer-asr"
LEGACY_PIPELINE_NAME = "asr-inference"  # what pre-FunASR-1.x hub repos name; modelscope no longer registers it
STREAMING_MODE = "paraformer_streaming"
SESSION_KEY = "session"  # where a streaming session lives inside the caller's cache dict
DECODER_OPTIONS = ("chunk_size", "encoder_chunk_look_back", "decoder_chunk_look_back")
STREAM_OPTIONS = ("cache", "is_final", *DECODER_OPTIONS)
COMPOSITE_OPTIONS = ("sentence_timestamp", "return_raw_text", "batch_size_threshold_s")
# accepted and needless here: timestamps always come with offline results
TIMESTAMP_FLAGS = ("output_timestamp", "pred_timestamp", "return_time_stamps")
KNOWN_OPTIONS = {*STREAM_OPTIONS, *COMPOSITE_OPTIONS, *TIMESTAMP_FLAGS, "fs", "key", "batch_size", "batch_size_s",
                 "hotword"}
DEFAULT_BATCH_SIZE = 8
ALIASES = {"audio_fs": "fs"}  # the pre-1.x pipeline's name for it


class StreamingUnsupportedError(ParaformerError, ValueError):
    """Streaming was asked of an offline (non-chunked) Paraformer."""


class ResultList(list):
    """A list of result dicts; a one-item list also answers ``result["text"]``, ``result.get("text")`` and
    ``"text" in result`` like the old dict results."""

    def _only(self, key: str) -> dict:
        if len(self) != 1:
            raise KeyError(f"{key!r}: this result list holds {len(self)} results; index it by position")
        return super().__getitem__(0)

    def __getitem__(self, index):
        return self._only(index)[index] if isinstance(index, str) else super().__getitem__(index)

    def __contains__(self, item) -> bool:
        if isinstance(item, str) and len(self) == 1:
            return item in super().__getitem__(0)
        return super().__contains__(item)

    def get(self, key: str, default: Any = None) -> Any:
        return self._only(key).get(key, default)

    def keys(self):
        return self._only("keys").keys()


def call_arguments(input: Any, audio_in: Any, param_dict: Optional[dict], options: dict, known: set[str]
                   ) -> tuple[Any, dict]:
    """The audio of a pipeline call (``input``, or the legacy ``audio_in``) and its options (the legacy
    ``param_dict`` merged in, legacy aliases renamed); options not in ``known`` are warned about."""
    if input is not None and audio_in is not None:
        raise TypeError("pass the audio once: as input= (or positionally) or as audio_in=, not both")
    audio = input if input is not None else audio_in
    if audio is None:
        raise TypeError("no audio given: call p(audio), p(input=audio) or p(audio_in=audio)")
    options = {**(param_dict or {}), **options}
    for alias, name in ALIASES.items():
        if alias in options:
            options.setdefault(name, options.pop(alias))
    if unknown := sorted(set(options) - known):
        logger.warning("ignoring options this pipeline does not use: %s", ", ".join(unknown))
    return audio, options


def decoder_options(options: dict) -> dict:
    """The :class:`StreamingDecoder` settings among the call's options."""
    return {name: options[name] for name in DECODER_OPTIONS if options.get(name) is not None}


def plan_batches(lengths: Sequence[int], batch_size: Optional[int], batch_size_s: Optional[float]) -> list[list[int]]:
    """Indices grouped by similar length: at most ``batch_size`` items and ``batch_size_s`` padded seconds each."""
    def fits(batch: list[int]) -> bool:  # the last index is the longest
        return ((not batch_size or len(batch) <= batch_size)
                and (not batch_size_s or len(batch) * lengths[batch[-1]] / SAMPLE_RATE <= batch_size_s))

    return group_by_length(lengths, fits)


@PIPELINES.register_module(Tasks.auto_speech_recognition, module_name=PIPELINE_NAME)
@PIPELINES.register_module(Tasks.auto_speech_recognition, module_name=LEGACY_PIPELINE_NAME)
class ParaformerASRPipeline(Pipeline):
    """Speech recognition with a native Paraformer; ``mode="paraformer_streaming"`` insists on an online model.

    A streaming session is the caller's ``cache`` dict: the pipeline keeps a :class:`StreamingDecoder` in it,
    ``is_final=True`` flushes the tail and empties the dict for the next utterance, and any number of dicts
    stream independently. Without a cache an online model decodes the whole input (streaming internally).

    ``vad_model`` / ``punc_model`` (hub ids, FunASR's short names or dirs; ``*_model_revision``, ``*_kwargs``), or
    the ones the model dir's configuration.json names, make offline calls FunASR's composite: VAD-segmented,
    batched by ``batch_size_s``, punctuated, ``sentence_info`` with ``sentence_timestamp=True``.
    """

    def __init__(self, model: Union[ParaformerForASR, str], preprocessor: Optional[ParaformerAudioPreprocessor] = None,
                 device: str = "gpu", mode: Optional[str] = None, **kwargs: Any):
        composition = {key: kwargs.pop(key) for key in list(kwargs) if key.startswith(("vad_", "punc_", "spk_"))}
        if not isinstance(model, ParaformerForASR):
            # Built here rather than by modelscope, which would build configuration.json's model type
            # (``funasr`` for FunASR-1.x repos, i.e. funasr itself).
            model_dir = resolve_model_dir(model, kwargs.get("model_revision"))
            model = ParaformerForASR(str(model_dir), device=device, **kwargs)
        if mode == STREAMING_MODE and not model.streaming:
            raise StreamingUnsupportedError(f"mode={STREAMING_MODE!r} needs an online Paraformer, but "
                                            f"{model.model_dir} is an offline one")
        if not (Path(model.model_dir) / "configuration.json").is_file() and "config_file" not in kwargs:
            # modelscope's Pipeline reads configuration.json; a bare FunASR dir (config.yaml, model.pt, ...) has
            # none: the demo model's is the same routing template
            kwargs["config_file"] = str(DEMO_MODEL_DIR / "configuration.json")
        super().__init__(model=model, preprocessor=preprocessor or ParaformerAudioPreprocessor(model.model_dir),
                         device=device, **kwargs)
        self.transcriber = build_transcriber(self.model.paraformer, self.model.model_dir, composition)
        if self.model.streaming and self.transcriber.punctuator is not None:
            logger.warning("punc_model punctuates whole-input (offline) calls only; streaming calls stay unpunctuated")

    def _get_framework(self) -> str:
        return Frameworks.torch  # always; modelscope's version reads configuration.json again

    def __call__(self, input: Any = None, *, audio_in: Any = None, param_dict: Optional[dict] = None,
                 **options: Any) -> ResultList:
        """Recognise ``input`` (or the legacy ``audio_in``); options may also come in the legacy ``param_dict``.

        Modelscope's own ``Pipeline.__call__`` is bypassed on purpose: it pops ``batch_size``, splits list inputs
        into single calls and has no notion of a session that must see the same ``cache`` object every call.
        """
        audio, options = call_arguments(input, audio_in, param_dict, options, KNOWN_OPTIONS)
        for name, cast in (("batch_size", int), ("batch_size_s", float)):
            if options.get(name) is not None:
                try:
                    options[name] = cast(options[name])
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be a number, got {options[name]!r}") from None
        cache = options.get("cache")
        if cache is not None and not isinstance(cache, dict):
            raise TypeError(f"cache must be a dict that holds the streaming session, got {type(cache).__name__}")
        if not self.model.streaming and any(options.get(name) is not None for name in STREAM_OPTIONS):
            raise StreamingUnsupportedError(
                f"{self.model.model_dir} is an offline Paraformer: cache / is_final / chunk_size need an online "
                "model (the ...-online hub models); call p(audio) without them for offline recognition")
        keys = options.get("key")
        utterances = self.preprocessor(audio, fs=options.get("fs"), keys=[keys] if isinstance(keys, str) else keys,
                                       resample_to_16k=cache is None)  # a session resamples statefully
        if cache is not None:
            return self._stream(utterances, cache, options)
        return self._decode(utterances, options)

    def _decode(self, utterances: list[Utterance], options: dict) -> ResultList:
        """Whole inputs: batched offline decoding, or chunk-by-chunk decoding of each input for online models."""
        if self.model.streaming:
            settings = decoder_options(options)
            transcripts = [self.model.stream(**settings).decode_all(u.samples, u.key) for u in utterances]
        elif self.transcriber.vad is not None or self.transcriber.punctuator is not None:
            return ResultList(self._compose(utterances, options))
        else:
            batch_size = options.get("batch_size") or (None if options.get("batch_size_s") else DEFAULT_BATCH_SIZE)
            transcripts = [None] * len(utterances)
            for batch in plan_batches([len(u.samples) for u in utterances], batch_size, options.get("batch_size_s")):
                decoded = self.model.transcribe([utterances[i].samples for i in batch],
                                                [utterances[i].key for i in batch], len(batch),
                                                hotwords=options.get("hotword"))
                for i, transcript in zip(batch, decoded):
                    transcripts[i] = transcript
        return ResultList(t.as_dict() for t in transcripts)

    def _compose(self, utterances: list[Utterance], options: dict) -> list[dict]:
        """FunASR's composite call: VAD segments in ``batch_size_s`` batches, punctuation, sentences."""
        settings = {name: options[name] for name in COMPOSITE_OPTIONS if options.get(name) is not None}
        if options.get("batch_size_s") is not None:
            settings["batch_size_s"] = options["batch_size_s"]
        if options.get("hotword") is not None:
            settings["hotwords"] = options["hotword"]
        return self.transcriber.transcribe([u.samples for u in utterances], [u.key for u in utterances],
                                           batch_size=options.get("batch_size") or DEFAULT_BATCH_SIZE, **settings)

    def _stream(self, utterances: list[Utterance], cache: dict, options: dict) -> ResultList:
        """Feed one chunk to the session kept in ``cache``; return the text this chunk added."""
        if len(utterances) != 1:
            raise ValueError(f"a streaming call takes one chunk of one stream, got {len(utterances)} inputs")
        chunk = utterances[0]
        if options.get("hotword") and SESSION_KEY not in cache:
            logger.warning("hotword is for offline SeACo Paraformers; this streaming session ignores it")
        session = cache.get(SESSION_KEY)
        requested = decoder_options(options)
        if session is None:
            session = cache[SESSION_KEY] = self.model.stream(key=chunk.key, **requested)
        else:
            self._check_session(session, requested)
        before, final = session.text, bool(options.get("is_final"))
        try:
            session.feed(chunk.samples, is_final=final, sample_rate=chunk.sample_rate)
        finally:
            if final:
                cache.clear()  # the dict is ready for the next utterance, even after an error
        after = session.result.text if final else session.text
        # The text difference, not decode(new ids): joining latin words adds spaces between calls.
        return ResultList([{"key": session.key, "text": after[len(before):]}])

    def _check_session(self, session: Any, requested: dict) -> None:
        if not isinstance(session, StreamingDecoder) or session.model is not self.model.paraformer:
            raise ValueError(f"cache[{SESSION_KEY!r}] is not a session of this pipeline; pass a new dict "
                             "(or one that finished with is_final=True)")
        current = {"chunk_size": session.chunk_size, "encoder_chunk_look_back": session.encoder_look_back,
                   "decoder_chunk_look_back": session.decoder_look_back}
        wanted = {**current, **requested}
        wanted["chunk_size"] = check_chunk_size(wanted["chunk_size"], wanted["encoder_chunk_look_back"],
                                                wanted["decoder_chunk_look_back"])
        if wanted != current:
            raise ChunkSizeError(f"streaming settings changed mid-utterance ({current} -> {wanted}); finish the "
                                 "utterance with is_final=True or use a new cache dict to change them")
