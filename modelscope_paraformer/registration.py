"""Register the ModelScope classes as soon as modelscope loads its registries, and not before.

Importing modelscope's registries costs seconds (they pull in its model and pipeline machinery), so
``import modelscope_paraformer`` must not do it. :func:`install` puts a finder on ``sys.meta_path`` that
watches the modelscope packages holding the registries. When the outermost of them has finished executing
(earlier ones may sit half-initialised inside a later one's import), it imports our module that registers into
them: :mod:`.integration` for models, preprocessors and pipelines, :mod:`.integration.trainer` for trainers
(kept apart: modelscope's trainer machinery costs another second that pipeline users need not pay). So whichever
way a user reaches ``pipeline()``, ``Model.from_pretrained()`` or ``build_trainer()``, and in whichever order the
two packages are imported, our names are registered before the first lookup. Without modelscope nothing fires.
"""
from __future__ import annotations

import importlib
import importlib.abc
import logging
import sys
from typing import Optional

logger = logging.getLogger(__name__)

HOOKS = {  # modelscope package -> our module whose import registers into its registry
    "modelscope.models": "modelscope_paraformer.integration",
    "modelscope.preprocessors": "modelscope_paraformer.integration",
    "modelscope.pipelines": "modelscope_paraformer.integration",
    "modelscope.trainers": "modelscope_paraformer.integration.trainer",
}
_started: set[str] = set()


def register(target: str) -> None:
    """Import ``target`` once; a failure is logged, never raised into modelscope's own import."""
    if target in _started:
        return
    _started.add(target)
    if _started >= set(HOOKS.values()):  # nothing left to watch for
        for finder in [f for f in sys.meta_path if isinstance(f, RegistryWatcher)]:
            sys.meta_path.remove(finder)
    try:
        importlib.import_module(target)
    except Exception:  # a modelscope version we do not fit must not break modelscope itself
        logger.warning("could not register %s with modelscope", target, exc_info=True)


class RegistryWatcher(importlib.abc.MetaPathFinder):
    """Runs :func:`register` for each watched package once the outermost watched import has finished."""

    def __init__(self) -> None:
        self.loading: set[str] = set()
        self.pending: set[str] = set()

    def find_spec(self, fullname: str, path, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in HOOKS or HOOKS[fullname] in _started:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module) -> None:
            self.loading.add(fullname)
            try:
                execute(module)
            finally:
                self.loading.discard(fullname)
            self.pending.add(HOOKS[fullname])
            if not self.loading:
                targets, self.pending = self.pending, set()
                for name in sorted(targets):
                    register(name)

        spec.loader.exec_module = exec_module  # this loader instance serves only this one import
        return spec


def _imported(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def install() -> None:
    """Register for the modelscope packages already loaded; watch for the others."""
    for package, target in HOOKS.items():
        if _imported(package):
            register(target)
    if not _started >= set(HOOKS.values()) and not any(isinstance(f, RegistryWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, RegistryWatcher())
