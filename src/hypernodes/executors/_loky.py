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

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from functools import partial
from typing import Any

from ._spec import DEFAULT_WORKERS

__all__ = ["IDLE_TIMEOUT_S", "abandon", "acquire", "in_use", "kill", "release"]

IDLE_TIMEOUT_S = 300
"""Idle workers exit after this long (loky's default, 10 s, is shorter than a pause in a notebook)."""


class _Pool:
    """A pool of ours, the calls using it right now, and the tasks failed calls left running."""

    __slots__ = ("abandoned", "calls", "executor")

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.calls = 0
        self.abandoned: set[Future[Any]] = set()


# Re-entrant: an engine's finalizer (which releases its pool) may run on any thread, at any
# allocation, including inside one of these critical sections.
_lock = threading.RLock()
_idle = threading.Condition(_lock)  # notified when a call ends
_exit_hook = False  # whether _at_exit is registered
_pools: dict[int, _Pool | None] = {}  # workers -> the pool (None: killed, made again on demand)
_users: dict[int, int] = {}  # workers -> engines that acquired that pool and did not release it
_ours: dict[int, _Pool] = {}  # id(executor) -> its pool, while it may still run tasks


def _size(max_workers: int | None) -> int:
    return max_workers if max_workers is not None else DEFAULT_WORKERS["parallel"]


def _usable(pool: _Pool | None) -> bool:
    flags = getattr(pool.executor, "_flags", None) if pool is not None else None
    return pool is not None and not (getattr(flags, "broken", None) or getattr(flags, "shutdown", False))


def acquire(max_workers: int | None, *, first: bool) -> Executor:
    """The shared pool of ``max_workers`` processes (None: one per CPU), started if needed.

    ``first`` is True on an engine's first use: it then counts as a user of that
    pool until it calls :func:`release`. A pool broken by a dead worker is replaced.
    """
    from loky import ProcessPoolExecutor

    size = _size(max_workers)
    with _lock:
        pool = _pools.get(size)
        if not _usable(pool):
            if pool is not None:  # broken by a dead worker: nothing runs on it any more
                _ours.pop(id(pool.executor), None)
            pool = _pools[size] = _Pool(ProcessPoolExecutor(max_workers=size, timeout=IDLE_TIMEOUT_S))
            _ours[id(pool.executor)] = pool
        if first:
            _users[size] = _users.get(size, 0) + 1
        assert pool is not None
        return pool.executor


def _pool_of(executor: Executor) -> _Pool | None:
    """The pool of ours that ``executor`` is, if it is one."""
    pool = _ours.get(id(executor))
    return pool if pool is not None and pool.executor is executor else None


@contextmanager
def in_use(executor: Executor) -> Iterator[None]:
    """Counts a call as using ``executor`` while the block runs (a no-op for executors not ours).

    :func:`release` waits for such calls before it decides how to stop the pool.
    """
    pool = _pool_of(executor)
    if pool is None:
        yield
        return
    with _lock:
        pool.calls += 1
    try:
        yield
    finally:
        with _lock:
            pool.calls -= 1
            _idle.notify_all()


def abandon(executor: Executor, futures: Iterable[Future[Any]]) -> None:
    """Record tasks that a failed or interrupted call left running on ``executor``.

    Nobody waits for their results, and each is forgotten when it finishes (its
    result with it). If tasks are still running when the pool's last engine
    releases it, :func:`release` terminates the workers instead of waiting for
    them: a task that hangs (or runs for hours) must not hang ``shutdown()``,
    nor the interpreter's exit (:func:`_at_exit`).
    """
    global _exit_hook
    pool = _pool_of(executor)
    if pool is None:
        return
    futures = list(futures)
    with _lock:
        pool.abandoned.update(futures)
    for future in futures:
        future.add_done_callback(partial(_forget, pool))  # runs at once if already done
    with _lock:
        if not _exit_hook:
            # Hooks run last-registered first, and loky registered its own (which joins
            # every pool's manager thread, so waits for running tasks) when this pool
            # started: ours runs before it. Private, but what concurrent.futures uses.
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                try:
                    register(_at_exit)
                    _exit_hook = True
                except RuntimeError:  # the interpreter is already shutting down
                    pass


def _at_exit() -> None:
    """At interpreter exit: terminate the workers of pools that abandoned tasks still run on."""
    with _lock:
        stuck = [pool for pool in _ours.values() if pool.abandoned]
    for pool in stuck:
        _terminate(pool.executor, wait=True)


def _forget(pool: _Pool, future: Future[Any]) -> None:
    with _lock:
        pool.abandoned.discard(future)


def release(max_workers: int | None, *, wait: bool = True) -> None:
    """An engine is done with its pool; the last one out shuts it down.

    With ``wait``, calls still running on the pool (from other threads) are
    waited for; then its workers are joined, or terminated if abandoned tasks
    still run on them. Without (an engine's finalizer, which must never block):
    the pool is told to shut down once its running tasks finish, and its workers
    are terminated at once if only abandoned tasks run on it.
    """
    size = _size(max_workers)
    with _lock:
        users = _users.get(size, 0) - 1
        if users > 0:
            _users[size] = users
            return
        _users.pop(size, None)
        pool = _pools.pop(size, None)
        if pool is None:
            return
        try:
            while wait and pool.calls:
                _idle.wait()
        except BaseException:  # interrupted while waiting: do not leave the pool running unowned
            _ours.pop(id(pool.executor), None)
            _terminate(pool.executor, wait=False)
            raise
        terminate = bool(pool.abandoned) and not pool.calls
        del _ours[id(pool.executor)]
    if terminate:
        _terminate(pool.executor, wait=wait)
    else:
        pool.executor.shutdown(wait=wait)


def kill(max_workers: int | None) -> None:
    """Terminate that pool's workers now (after Ctrl-C): running tasks are abandoned.

    Engines keep working: the next call starts fresh workers.
    """
    size = _size(max_workers)
    with _lock:
        pool = _pools.get(size)
        if size in _pools:
            _pools[size] = None
        if pool is not None:
            _ours.pop(id(pool.executor), None)
    if pool is not None:
        _terminate(pool.executor, wait=True)


def _terminate(executor: Executor, *, wait: bool) -> None:
    """Shut a pool of ours down terminating its workers, without loky's manager thread crashing.

    With ``kill_workers``, loky's manager thread calls ``set_exception`` on every task
    still in its pending table, without the guard against cancelled futures that it
    uses elsewhere. A task we cancelled (a failed or interrupted call cancels what has
    not started) stays in that table until the manager reaches it, which it does only
    as workers free up; ``set_exception`` then raises ``InvalidStateError`` and the
    manager thread dies printing a traceback (after a plain Ctrl-C, or at the exit of
    a script whose node called ``sys.exit()``). Each such entry gets a fresh future
    first: nobody holds it, and the task goes with the workers either way.
    """
    pending = getattr(executor, "_pending_work_items", None)
    if isinstance(pending, dict):
        for _ in range(3):  # the manager thread may change the table while we copy it (free-threaded builds)
            try:
                items = list(pending.values())
                break
            except RuntimeError:
                items = []
        for item in items:
            future = getattr(item, "future", None)
            if isinstance(future, Future) and future.cancelled():
                item.future = Future()
    executor.shutdown(wait=wait, kill_workers=True)  # type: ignore[call-arg]
