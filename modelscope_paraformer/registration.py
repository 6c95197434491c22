"""Register the ModelScope classes as soon as modelscope loads its registries, and not before.

Importing modelscope's registries costs seconds (they pull in its model and pipeline machinery), so
``import modelscope_paraformer`` must not do it. :func:`install` puts a finder on ``sys.meta_path`` that
watches the three modelscope packages holding the registries (models, preprocessors, pipelines). When the
outermost of them has finished executing (earlier ones may sit half-initialised inside a later one's import),
it imports :mod:`modelscope_paraformer.integration`, whose decorators register everything. So whichever way a
user reaches ``pipeline()`` / ``Model.from_pretrained()``, and in whichever order they import the two packages,
our names are registered before the first lookup. Without modelscope the finder never fires.
"""
from __future__ import annotations

import importlib
import importlib.abc
import logging
import sys
from typing import Optional

logger = logging.getLogger(__name__)

WATCHED = ("modelscope.models", "modelscope.preprocessors", "modelscope.pipelines")


def register() -> bool:
    """Import the integration package (registering its classes); a failure is logged, never raised into modelscope."""
    for finder in [f for f in sys.meta_path if isinstance(f, RegistryWatcher)]:
        sys.meta_path.remove(finder)  # first, so the imports below are not watched again
    try:
        importlib.import_module("modelscope_paraformer.integration")
    except Exception:  # a modelscope version we do not fit must not break modelscope itself
        logger.warning("could not register modelscope_paraformer with modelscope", exc_info=True)
        return False
    return True


class RegistryWatcher(importlib.abc.MetaPathFinder):
    """Runs :func:`register` after the outermost watched modelscope package has executed."""

    def __init__(self) -> None:
        self.loading: set[str] = set()

    def find_spec(self, fullname: str, path, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in WATCHED:
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
            if not self.loading:
                register()

        spec.loader.exec_module = exec_module  # this loader instance serves only this one import
        return spec


def _imported(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def install() -> None:
    """Register now if modelscope's registries are already loaded, else when they load."""
    if any(_imported(name) for name in WATCHED):
        register()
    elif not any(isinstance(finder, RegistryWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, RegistryWatcher())
