"""Where code lives, for code keys: the user's project (walked) or a library (keyed by its version).

A module is a library's when its top-level package is the standard library's, hypernodes'
own, or sits under the interpreter's library or site-packages folders; anything else (the
working directory, an editable checkout of the user's project, ``__main__``, a module made
at run time) is the user's.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import site
import sys
import sysconfig
from typing import Any

_OWN = __name__.partition(".")[0]  # hypernodes: keyed by its version, even from an editable checkout


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(getattr(site, "getsitepackages", list)())
    user = getattr(site, "getusersitepackages", lambda: None)()
    if user:
        roots.add(user)
    return tuple(sorted({os.path.realpath(r) for r in roots}))


_LIBRARY: dict[str, bool] = {}  # per top-level package


def _is_library(module: str | None) -> bool:
    """Whether ``module`` is the standard library's or an installed distribution's (not walked)."""
    if not module or module == "__main__":
        return False
    top = module.partition(".")[0]
    found = _LIBRARY.get(top)
    if found is None:
        found = _LIBRARY[top] = _locate(top)
    return found


def _locate(top: str) -> bool:
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top == _OWN:
        return True  # hypernodes itself too, even installed from a checkout (editable): keyed by its version
    mod = sys.modules.get(top)
    if mod is not None:
        where = getattr(mod, "__file__", None) or next(iter(getattr(mod, "__path__", None) or ()), None)
    else:  # not imported yet (a function imports it when it runs): where it would come from
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: found without importing anything
        except (ImportError, ValueError):
            spec = None
        where = None if spec is None else spec.origin or next(iter(spec.submodule_search_locations or ()), None)
    if not where or where in ("built-in", "frozen"):
        return False  # made at run time (types.ModuleType), exec'd code: the user's
    real = os.path.realpath(where)
    return any(real.startswith(root + os.sep) for root in _library_roots())


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    from importlib import metadata

    try:
        return dict(metadata.packages_distributions())
    except Exception:  # a broken installed distribution: versions fall back below
        return {}


@functools.cache
def _version(module: str) -> str:
    """The version a library module is keyed by: Python's for the standard library, else its distribution's."""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return "python " + sys.version
    from importlib import metadata

    found = []
    for dist in sorted(set(_distributions().get(top, ()))):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except Exception:  # metadata unreadable: the module's own __version__ below
            continue
    if not found:
        found.append(f"{top} {getattr(sys.modules.get(top), '__version__', '?')}")
    return "; ".join(found)


def _name_of(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    return f"{module}.{qualname}" if isinstance(module, str) and module != "__main__" else str(qualname)
