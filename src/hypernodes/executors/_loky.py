"""The "parallel" executor: loky's reusable process pool, shared by every engine.

Worker processes cost 0.1-0.4 s to start (an interpreter plus the user's imports),
so all engines use loky's one reusable executor: a notebook that builds a new
engine per cell finds the workers warm. The executor is shut down (its workers
joined) when the last engine that used it is shut down; an engine asking for a
different ``max_workers`` resizes it. A broken executor (a worker died) is
replaced by loky on the next call.
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import Executor

__all__ = ["IDLE_TIMEOUT_S", "acquire", "kill", "release"]

IDLE_TIMEOUT_S = 300
"""Idle workers exit after this long (loky's default, 10 s, is shorter than a pause in a notebook)."""

_lock = threading.Lock()
_users = 0
_seen: weakref.WeakSet[Executor] = weakref.WeakSet()


def acquire(max_workers: int | None, *, first: bool) -> Executor:
    """The reusable executor sized ``max_workers`` (None: one worker per CPU).

    ``first`` is True on an engine's first use: it then counts as a user until
    it calls :func:`release`.
    """
    from loky import get_reusable_executor

    global _users
    with _lock:
        executor: Executor = get_reusable_executor(max_workers=max_workers, timeout=IDLE_TIMEOUT_S)
        _seen.add(executor)
        if first:
            _users += 1
        return executor


def _shutdown_seen(kill_workers: bool) -> None:
    # caller holds _lock: nobody can fetch the executor while it goes down
    for executor in list(_seen):
        executor.shutdown(wait=True, kill_workers=kill_workers)  # type: ignore[call-arg]
    _seen.clear()


def release() -> None:
    """One engine is done with the pool; the last one out shuts it down and joins its workers."""
    global _users
    with _lock:
        _users -= 1
        if _users <= 0:
            _users = 0
            _shutdown_seen(kill_workers=False)


def kill() -> None:
    """Terminate the workers now (after Ctrl-C): running tasks are abandoned.

    Engines keep working: the next call starts fresh workers.
    """
    with _lock:
        _shutdown_seen(kill_workers=True)
