"""Executors, executor specs and the backends made from them.

An executor spec is one of the names in :data:`EXECUTOR_NAMES` or any object with
the ``concurrent.futures.Executor`` interface (a callable ``submit``);
``backends.backend_for`` turns one into a backend object. :class:`AsyncExecutor`
is the ``concurrent.futures`` face of asyncio; :class:`SequentialExecutor` runs each
task in the caller (the notebook-era adapter). :data:`DEFAULT_WORKERS` is the size
each named executor gets when ``max_workers`` is None.
"""

from __future__ import annotations

from ._async import AsyncExecutor
from ._sequential import SequentialExecutor
from ._spec import DEFAULT_WORKERS, EXECUTOR_NAMES

__all__ = ["DEFAULT_WORKERS", "EXECUTOR_NAMES", "AsyncExecutor", "SequentialExecutor"]
