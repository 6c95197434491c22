"""ModelScope adapters; importing this package registers them (model, preprocessor, pipeline, routing).

It imports modelscope's registries (several seconds); :mod:`modelscope_paraformer.registration` defers that
until modelscope itself loads them. The trainer adapter (:mod:`.trainer`) is registered separately, when
modelscope loads its trainers.
"""
from . import routing  # noqa: F401  (imports .pipeline, which imports .model and .preprocessor)
from .model import LEGACY_MODEL_NAME, MODEL_NAME, ParaformerForASR
from .pipeline import (LEGACY_PIPELINE_NAME, PIPELINE_NAME, ParaformerASRPipeline, ResultList,
                       StreamingUnsupportedError)
from .preprocessor import PREPROCESSOR_NAME, ParaformerAudioPreprocessor
from .vad_pipeline import VAD_PIPELINE_NAME, FsmnVadModel, FsmnVadPipeline
from .punc_pipeline import LEGACY_PUNC_PIPELINE_NAME, PUNC_PIPELINE_NAME, PunctuationModel, PunctuationPipeline

__all__ = ["LEGACY_MODEL_NAME", "LEGACY_PIPELINE_NAME", "MODEL_NAME", "PIPELINE_NAME", "PREPROCESSOR_NAME",
           "ParaformerASRPipeline", "ParaformerAudioPreprocessor", "ParaformerForASR", "ResultList",
           "StreamingUnsupportedError", "LEGACY_PUNC_PIPELINE_NAME", "PUNC_PIPELINE_NAME", "PunctuationModel",
           "PunctuationPipeline", "VAD_PIPELINE_NAME", "FsmnVadModel", "FsmnVadPipeline"]
