"""Route FunASR-1.x model dirs of the networks this package implements to its pipelines instead of funasr.

Hub repos converted for FunASR 1.x name ``model: funasr`` and ``pipeline: funasr-pipeline`` in
configuration.json, so ``pipeline()`` would build modelscope's ``FunASRPipeline`` and hand everything to
funasr. Registering our classes under ``funasr-pipeline`` is no option: modelscope imports its own module for that
name lazily, whose registration then fails on the duplicate name. Instead this module wraps
``modelscope.pipelines.builder.build_pipeline``, the function ``pipeline()`` calls, through the module global,
once it has resolved the local model dir and the pipeline name. The wrapper changes only one case: name
``funasr-pipeline`` and a dir whose config.yaml ``model:`` is a network this package runs for that task
(:data:`ROUTES`: Paraformers, FSMN-VAD, CT-Transformer); it renames the pipeline to ours, whose constructor builds
our model itself (never configuration.json's ``funasr`` model). Everything else, e.g. SenseVoice, keeps
modelscope's behaviour. It also works for ``pipeline`` functions imported before this module.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable, Optional

from modelscope.pipelines import builder
from modelscope.utils.constant import Tasks

from ..core.model_dir import ModelDirError, find_model_files
from ..core.fsmn_vad import VAD_MODELS
from ..core.punctuation import MODELS as PUNCTUATION_MODELS
from ..core.config import OFFLINE_MODELS, STREAMING_MODELS, ConfigError, read_yaml
from .pipeline import PIPELINE_NAME
from .punc_pipeline import PUNC_PIPELINE_NAME
from .vad_pipeline import VAD_PIPELINE_NAME

logger = logging.getLogger(__name__)

FUNASR_PIPELINE = "funasr-pipeline"


# task -> (config.yaml model names, our pipeline for them)
ROUTES = {
    Tasks.auto_speech_recognition: (OFFLINE_MODELS | STREAMING_MODELS, PIPELINE_NAME),
    Tasks.voice_activity_detection: (VAD_MODELS, VAD_PIPELINE_NAME),
    Tasks.punctuation: (set(PUNCTUATION_MODELS), PUNC_PIPELINE_NAME),
}


def declared_model(model: Any) -> Optional[str]:
    """config.yaml's ``model:`` of a local model dir (None for anything else)."""
    if not isinstance(model, (str, os.PathLike)) or not os.path.isdir(model):
        return None
    try:
        return read_yaml(find_model_files(model).config).get("model")
    except (ModelDirError, ConfigError):
        return None


def is_paraformer_dir(model: Any) -> bool:
    """True for a local model dir whose config.yaml declares a Paraformer this package runs."""
    return declared_model(model) in ROUTES[Tasks.auto_speech_recognition][0]


def route(build_pipeline: Callable) -> Callable:
    """Wrap modelscope's ``build_pipeline`` so dirs of our networks named ``funasr-pipeline`` build ours."""
    @functools.wraps(build_pipeline)
    def build_paraformer_or_default(cfg: dict, task_name: str = None, default_args: dict = None):
        if cfg.get("type") == FUNASR_PIPELINE and task_name in ROUTES:
            names, ours = ROUTES[task_name]
            declared = declared_model(cfg.get("model"))
            if declared in names:
                logger.info("%s is a %s: using %s instead of %s", cfg["model"], declared, ours, FUNASR_PIPELINE)
                cfg = dict(cfg, type=ours)
        return build_pipeline(cfg, task_name=task_name, default_args=default_args)

    build_paraformer_or_default.routes_paraformer = True
    return build_paraformer_or_default


if not getattr(builder.build_pipeline, "routes_paraformer", False):  # a module reload must not wrap twice
    builder.build_pipeline = route(builder.build_pipeline)
