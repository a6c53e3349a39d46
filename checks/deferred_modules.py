"""Modules imported when first used, not when a library imports them: for the Great Expectations process.

GX imports every expectation class at startup, and one of them (``expect_column_kl_divergence_to_be_less_than``)
imports ``scipy.stats`` and ``altair`` at module level: 1.2 to 2 s of the child's 3.5 to 4.5 s import on the
benchmark machine, paid by every cold ``check`` (the import runs on the core the checks' DuckDB queries would use).
Only that expectation, the two KS-test ones and GX's chart rendering use them. A stand-in in ``sys.modules`` lets
``import altair as alt`` and ``from scipy import stats`` bind it cheaply; the first attribute read from it imports
the real module and the stand-in takes on its contents, so code holding the stand-in works unchanged.

The standard library's ``importlib.util.LazyLoader`` does not do here: on Python 3.11 the import statement itself
reads ``__spec__`` of a module found in ``sys.modules``, which makes a lazy module load at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterable
from typing import Any

_LOCK = threading.RLock()


class DeferredModule(types.ModuleType):
    """Stands in for a module until an attribute it does not have is read; then imports the real module and takes
    on its contents (attributes the real module gains later are read through, too)."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(load(self), attr)


def load(stub: DeferredModule) -> types.ModuleType:
    """The real module a stand-in is for, imported now if it was not (and put in the stand-in's place)."""
    with _LOCK:
        real = stub.__dict__.get("_deferred_real")
        if real is None:
            name = stub.__name__
            if sys.modules.get(name) is stub:
                del sys.modules[name]  # so the import below runs the module's own code
            real = importlib.import_module(name)
            stub.__dict__.update({k: v for k, v in real.__dict__.items() if k != "__class__"})
            stub.__dict__["_deferred_real"] = real
        return real


def defer(names: Iterable[str]) -> list[str]:
    """Put stand-ins in ``sys.modules`` for the modules `names` that are installed and not imported yet; returns
    the names deferred. A submodule's parent packages are imported (``scipy`` for ``scipy.stats``: milliseconds)."""
    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        stub = DeferredModule(name)
        stub.__spec__ = spec  # what the import system reads of a module found in sys.modules; not a load
        if spec.submodule_search_locations is not None:
            # A submodule import reads its parent's __path__ after deciding the submodule is not loaded: were that
            # a load, the real parent would import the submodule, and the import would then run it a second time.
            stub.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = stub
        deferred.append(name)
    return deferred


def is_loaded(name: str) -> bool:
    """Whether the module `name` was imported for real (not only deferred)."""
    module = sys.modules.get(name)
    if isinstance(module, DeferredModule):
        return module.__dict__.get("_deferred_real") is not None
    return module is not None
