"""The ModelScope ``voice-activity-detection`` pipeline over the native FSMN-VAD (:mod:`..core.fsmn_vad`).

Call styles (the results are FunASR's: ``[{"key", "value": [[beg_ms, end_ms], ...]}]``, one per input)::

    p("a.wav") / p(array) / p(["a.wav", array])                           # whole recordings
    p(input=chunk, cache=cache, is_final=False, chunk_size=200)           # streaming, FunASR 1.x: cache = {}
    p(audio_in=chunk, param_dict={"cache": cache, "is_final": False, "chunk_size": 200})   # older cards

A streaming call answers the segment events that chunk produced: ``[beg, -1]`` when a segment starts,
``[-1, end]`` when it ends, ``[beg, end]`` for one that both starts and ends in the chunk (steps of 15 s and
more report complete segments only, as FunASR). ``max_end_silence_time`` (ms) fixes the silence that ends a
segment; without it FunASR's schedule applies (2 s at first, shorter as the speech goes on).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelscope.models.base import TorchModel
from modelscope.pipelines.base import Pipeline
from modelscope.pipelines.builder import PIPELINES
from modelscope.utils.constant import Frameworks, Tasks

from ..core.audio import Utterance
from ..core.errors import ParaformerError
from ..core.fsmn_vad import OFFLINE_CHUNK_MS, FsmnVad, VadError, VadStream, load_vad
from ..hub import resolve_model_dir
from .pipeline import ResultList, call_arguments
from .preprocessor import ParaformerAudioPreprocessor

logger = logging.getLogger(__name__)

VAD_PIPELINE_NAME = "fsmn-vad"
STREAM_KEY = "vad_stream"  # where a stream lives inside the caller's cache dict
KNOWN_OPTIONS = {"cache", "is_final", "chunk_size", "max_end_silence_time", "fs", "key"}


class FsmnVadModel(TorchModel):
    """A ModelScope ``Model`` holding an :class:`FsmnVad` (what modelscope's ``Pipeline`` expects to hold)."""

    def __init__(self, model_dir: str, device: str | None = "cpu", **kwargs: Any):
        super().__init__(model_dir, device="cpu")  # a 0.4M-parameter network: the CPU is the fast place
        self.vad = load_vad(model_dir)
        self.network = self.vad.network  # a submodule, so that .to() / .eval() reach the weights
        logger.debug("ignored model options: %s", sorted(kwargs))

    def forward(self, samples: Any, max_end_silence_ms: float | None = None) -> list[list[int]]:
        return self.vad.segments(samples, max_end_silence_ms)


@PIPELINES.register_module(Tasks.voice_activity_detection, module_name=VAD_PIPELINE_NAME)
class FsmnVadPipeline(Pipeline):
    """Voice activity detection with a native FSMN-VAD (``iic/speech_fsmn_vad_zh-cn-16k-common-pytorch``).

    A stream's state is the caller's ``cache`` dict: the pipeline keeps a :class:`VadStream` in it,
    ``is_final=True`` flushes the stream and empties the dict for the next recording.
    """

    def __init__(self, model: FsmnVadModel | str, device: str = "gpu", **kwargs: Any):
        if not isinstance(model, FsmnVadModel):
            model = FsmnVadModel(str(resolve_model_dir(model, kwargs.get("model_revision"))), device=device)
        if not (Path(model.model_dir) / "configuration.json").is_file() and "config_file" not in kwargs:
            raise ParaformerError(f"{model.model_dir} has no configuration.json; use "
                                  "modelscope_paraformer.core.load_vad for a bare FunASR dir")
        super().__init__(model=model, preprocessor=ParaformerAudioPreprocessor(model.model_dir), device="cpu",
                         **kwargs)

    def _get_framework(self) -> str:
        return Frameworks.torch  # always; modelscope's version reads configuration.json again

    @property
    def vad(self) -> FsmnVad:
        """The core VAD (for use without the pipeline's call conventions)."""
        return self.model.vad

    def __call__(self, input: Any = None, *, audio_in: Any = None, param_dict: dict | None = None,
                 **options: Any) -> ResultList:
        """Segment ``input`` (or the legacy ``audio_in``); options may also come in the legacy ``param_dict``.

        Modelscope's own ``Pipeline.__call__`` is bypassed, as in the ASR pipeline: a stream needs the very
        ``cache`` object of each call.
        """
        audio, options = call_arguments(input, audio_in, param_dict, options, KNOWN_OPTIONS)
        cache = options.get("cache")
        if cache is not None and not isinstance(cache, dict):
            raise TypeError(f"cache must be a dict that holds the VAD stream, got {type(cache).__name__}")
        keys = options.get("key")
        utterances = self.preprocessor(audio, fs=options.get("fs"), keys=[keys] if isinstance(keys, str) else keys,
                                       resample_to_16k=cache is None)  # a stream resamples statefully
        end_silence = options.get("max_end_silence_time")
        if cache is not None:
            return ResultList([self._stream(utterances, cache, options, end_silence)])
        return ResultList({"key": u.key, "value": self.vad.segments(u.samples, end_silence)} for u in utterances)

    def _stream(self, utterances: list[Utterance], cache: dict, options: dict,
                end_silence: float | None) -> dict:
        """Feed one chunk to the stream kept in ``cache``; return the segment events it produced."""
        if len(utterances) != 1:
            raise VadError(f"a streaming call takes one chunk of one stream, got {len(utterances)} inputs")
        chunk = utterances[0]
        chunk_ms = options.get("chunk_size", OFFLINE_CHUNK_MS)  # FunASR's default step, with a cache too
        stream = cache.get(STREAM_KEY)
        if stream is None:
            stream = cache[STREAM_KEY] = self.vad.stream(chunk_ms, end_silence, sample_rate=chunk.sample_rate)
        elif not isinstance(stream, VadStream) or stream.vad is not self.vad:
            raise VadError(f"cache[{STREAM_KEY!r}] is not a stream of this pipeline; pass a new dict (or one that "
                           "finished with is_final=True)")
        elif (stream.chunk_ms, stream.max_end_silence_ms) != (chunk_ms, end_silence):
            raise VadError(f"chunk_size / max_end_silence_time changed mid-stream ({stream.chunk_ms}, "
                           f"{stream.max_end_silence_ms} -> {chunk_ms}, {end_silence}); finish the stream with "
                           "is_final=True or use a new cache dict to change them")
        final = bool(options.get("is_final"))
        try:
            segments = stream.feed(chunk.samples, is_final=final)
        finally:
            if final:
                cache.clear()  # the dict is ready for the next recording, even after an error
        return {"key": chunk.key, "value": segments}
