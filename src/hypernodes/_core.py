"""The one place that picks the scheduling core.

``hypernodes._sched`` (compiled) is used when it is built; ``_sched_py`` (its pure
Python twin and spec) otherwise, or when ``HYPERNODES_NO_EXTENSIONS=1``. Nothing
else in the package imports either core or branches on which one is loaded.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = [
    "API_VERSION",
    "IMPLEMENTATION",
    "ReadyQueue",
    "find_failures",
    "map_zip",
    "pack_column",
    "plan_batches",
    "run_batch",
    "run_batch_continue",
    "run_dict",
    "run_one",
    "unpack_column",
]

# The two cores are one contract (the test suite checks it); mypy sees them as
# distinct modules, hence the ignores on the alternative imports.
if os.environ.get("HYPERNODES_NO_EXTENSIONS", "") not in ("", "0"):
    from ._sched_py import (
        API_VERSION,
        IMPLEMENTATION,
        ReadyQueue,
        find_failures,
        map_zip,
        pack_column,
        plan_batches,
        run_batch,
        run_batch_continue,
        run_dict,
        run_one,
        unpack_column,
    )
else:
    try:
        from ._sched import (  # type: ignore[assignment]
            API_VERSION,
            IMPLEMENTATION,
            ReadyQueue,
            find_failures,
            map_zip,
            pack_column,
            plan_batches,
            run_batch,
            run_batch_continue,
            run_dict,
            run_one,
            unpack_column,
        )
    except ImportError:  # not built (a pure-Python install): the twin is the same contract
        from ._sched_py import (
            API_VERSION,
            IMPLEMENTATION,
            ReadyQueue,
            find_failures,
            map_zip,
            pack_column,
            plan_batches,
            run_batch,
            run_batch_continue,
            run_dict,
            run_one,
            unpack_column,
        )


def module(implementation: str) -> ModuleType:
    """The core whose ``IMPLEMENTATION`` is ``implementation`` ("cython" or "python").

    A worker process runs a map's items on the core the calling process used.
    Falls back to the twin where the compiled core is not built.
    """
    if implementation == "cython":
        try:
            return importlib.import_module("hypernodes._sched")
        except ImportError:
            pass
    return importlib.import_module("hypernodes._sched_py")
