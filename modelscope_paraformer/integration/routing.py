"""Route FunASR-1.x Paraformer model dirs to :class:`ParaformerASRPipeline` instead of funasr.

Hub repos converted for FunASR 1.x name ``model: funasr`` and ``pipeline: funasr-pipeline`` in
configuration.json, so ``pipeline()`` would build modelscope's ``FunASRPipeline`` and hand everything to
funasr. Registering our class under ``funasr-pipeline`` is no option: modelscope imports its own module for that
name lazily, whose registration then fails on the duplicate name. Instead this module wraps
``modelscope.pipelines.builder.build_pipeline``, the function ``pipeline()`` calls, through the module global,
once it has resolved the local model dir and the pipeline name. The wrapper changes only one case: name
``funasr-pipeline``, task ``auto-speech-recognition``, and a dir whose config.yaml says ``model: Paraformer``
or ``ParaformerStreaming``; it renames the pipeline to ``paraformer-asr``, whose constructor builds our model
itself (never configuration.json's ``funasr`` model). Everything else, e.g. SenseVoice or VAD dirs, keeps
modelscope's behaviour. It also works for ``pipeline`` functions imported before this module.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

from modelscope.pipelines import builder
from modelscope.utils.constant import Tasks

from ..core.model_dir import ModelDirError, find_model_files
from ..core.config import OFFLINE_MODELS, STREAMING_MODELS, ConfigError, read_yaml
from .pipeline import PIPELINE_NAME

logger = logging.getLogger(__name__)

FUNASR_PIPELINE = "funasr-pipeline"


def is_paraformer_dir(model: Any) -> bool:
    """True for a local model dir whose config.yaml declares a Paraformer this package runs."""
    if not isinstance(model, (str, os.PathLike)) or not os.path.isdir(model):
        return False
    try:
        return read_yaml(find_model_files(model).config).get("model") in OFFLINE_MODELS | STREAMING_MODELS
    except (ModelDirError, ConfigError):
        return False


def route(build_pipeline: Callable) -> Callable:
    """Wrap modelscope's ``build_pipeline`` so Paraformer dirs named ``funasr-pipeline`` build ours."""
    @functools.wraps(build_pipeline)
    def build_paraformer_or_default(cfg: dict, task_name: str = None, default_args: dict = None):
        if (cfg.get("type") == FUNASR_PIPELINE and task_name == Tasks.auto_speech_recognition
                and is_paraformer_dir(cfg.get("model"))):
            logger.info("%s is a Paraformer: using %s instead of %s", cfg["model"], PIPELINE_NAME, FUNASR_PIPELINE)
            cfg = dict(cfg, type=PIPELINE_NAME)
        return build_pipeline(cfg, task_name=task_name, default_args=default_args)

    build_paraformer_or_default.routes_paraformer = True
    return build_paraformer_or_default


if not getattr(builder.build_pipeline, "routes_paraformer", False):  # a module reload must not wrap twice
    builder.build_pipeline = route(builder.build_pipeline)
