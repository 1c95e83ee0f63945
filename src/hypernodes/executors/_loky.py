"""The "parallel" executor: loky process pools shared by every engine of this process.

Worker processes cost 0.1-0.4 s to start (an interpreter plus the user's imports),
so engines with the same ``max_workers`` share one pool: a notebook that builds a
new engine per cell finds the workers warm. A pool is shut down (its workers
joined) when the last engine using it shuts down; idle workers exit after
:data:`IDLE_TIMEOUT_S` and come back on demand.

The pools are our own ``loky.ProcessPoolExecutor`` objects, not loky's
process-wide reusable executor: that one is also the user's (``loky`` or joblib
code in the same process may hold it, resize it or pass it to an engine), and an
executor the user holds is never resized or shut down by us.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["IDLE_TIMEOUT_S", "abandon", "acquire", "kill", "release"]

IDLE_TIMEOUT_S = 300
"""Idle workers exit after this long (loky's default, 10 s, is shorter than a pause in a notebook)."""

_lock = threading.Lock()
_pools: dict[int, Executor | None] = {}  # workers -> the pool (None: killed, made again on demand)
_users: dict[int, int] = {}  # workers -> engines that acquired that pool and did not release it
_abandoned: dict[int, list[Future[Any]]] = {}  # workers -> tasks of failed calls that may still run


def _size(max_workers: int | None) -> int:
    return max_workers if max_workers is not None else (os.cpu_count() or 1)


def _usable(executor: Executor | None) -> bool:
    flags = getattr(executor, "_flags", None)
    return executor is not None and not (getattr(flags, "broken", None) or getattr(flags, "shutdown", False))


def acquire(max_workers: int | None, *, first: bool) -> Executor:
    """The shared pool of ``max_workers`` processes (None: one per CPU), started if needed.

    ``first`` is True on an engine's first use: it then counts as a user of that
    pool until it calls :func:`release`. A pool broken by a dead worker is replaced.
    """
    from loky import ProcessPoolExecutor

    size = _size(max_workers)
    with _lock:
        executor = _pools.get(size)
        if not _usable(executor):
            executor = _pools[size] = ProcessPoolExecutor(max_workers=size, timeout=IDLE_TIMEOUT_S)
            _abandoned.pop(size, None)
        if first:
            _users[size] = _users.get(size, 0) + 1
        assert executor is not None
        return executor


def abandon(executor: Executor, futures: Iterable[Future[Any]]) -> None:
    """Record tasks that a failed or interrupted call left running on ``executor``.

    Nobody waits for their results. If ``executor`` is one of these pools, its
    last engine's :func:`release` terminates the workers instead of waiting for
    them: a task that hangs (or runs for hours) must not hang ``shutdown()``.
    """
    with _lock:
        for size, pool in _pools.items():
            if pool is executor:
                still = [f for f in _abandoned.get(size, ()) if not f.done()]
                _abandoned[size] = still + list(futures)
                return


def release(max_workers: int | None) -> None:
    """An engine is done with its pool; the last one out shuts it down and joins its workers
    (terminating them if abandoned tasks still run)."""
    size = _size(max_workers)
    with _lock:
        users = _users.get(size, 0) - 1
        if users > 0:
            _users[size] = users
            return
        _users.pop(size, None)
        executor = _pools.pop(size, None)
        abandoned = any(not f.done() for f in _abandoned.pop(size, ()))
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=abandoned)  # type: ignore[call-arg]


def kill(max_workers: int | None) -> None:
    """Terminate that pool's workers now (after Ctrl-C): running tasks are abandoned.

    Engines keep working: the next call starts fresh workers.
    """
    size = _size(max_workers)
    with _lock:
        executor = _pools.get(size)
        if size in _pools:
            _pools[size] = None
        _abandoned.pop(size, None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)  # type: ignore[call-arg]
