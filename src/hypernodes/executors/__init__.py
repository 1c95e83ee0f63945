"""Executors, executor specs and the backends made from them.

An executor spec is one of the names in :data:`EXECUTOR_NAMES` or any object with
the ``concurrent.futures.Executor`` interface (a callable ``submit``);
``backends.backend_for`` turns one into a backend object. :class:`AsyncExecutor`
is the ``concurrent.futures`` face of asyncio.
"""

from __future__ import annotations

from ._async import AsyncExecutor
from ._spec import EXECUTOR_NAMES, check_max_workers

__all__ = ["EXECUTOR_NAMES", "AsyncExecutor", "check_max_workers"]
