"""The "parallel" executor: loky process pools shared by every engine of this process.

Worker processes cost 0.1-0.4 s to start (an interpreter plus the user's imports),
so engines with the same ``max_workers`` share one pool: a notebook that builds a
new engine per cell finds the workers warm (engines that cap their workers' native
threads differently, ``inner_threads``, get pools of their own). A pool is shut down (its workers
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
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from functools import partial
from typing import Any

from . import _worker
from ._spec import DEFAULT_WORKERS

__all__ = ["IDLE_TIMEOUT_S", "abandon", "acquire", "broken", "in_use", "is_ours", "kill", "release"]

IDLE_TIMEOUT_S = 300
"""Idle workers exit after this long (loky's default, 10 s, is shorter than a pause in a notebook)."""

FEEDER_JOIN_S = 5.0
"""How long a waited shutdown waits for the pool's call-queue feeder thread (see :func:`_stop`)."""


class _Pool:
    """A pool of ours, the calls using it right now, and the tasks failed calls left running."""

    __slots__ = ("abandoned", "calls", "executor", "hooked")

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.calls = 0
        self.abandoned: set[Future[Any]] = set()
        self.hooked = False  # whether _at_exit is registered after loky's exit hook for this pool


# Re-entrant: an engine's finalizer (which releases its pool) may run on any thread, at any
# allocation, including inside one of these critical sections.
_lock = threading.RLock()
_idle = threading.Condition(_lock)  # notified when a call ends
# A pool's key: (workers, native threads per worker or None); see _key.
_pools: dict[tuple[int, int | None], _Pool | None] = {}  # key -> the pool (None: killed, made again on demand)
_users: dict[tuple[int, int | None], int] = {}  # key -> engines that acquired that pool and did not release it
_ours: dict[int, _Pool] = {}  # id(executor) -> its pool, while it may still run tasks


def _key(max_workers: int | None, inner_threads: int | str | None) -> tuple[int, int | None]:
    size = max_workers if max_workers is not None else DEFAULT_WORKERS["parallel"]
    return size, _worker.resolve_threads(inner_threads, size)


def broken(executor: Executor) -> bool:
    """Whether ``executor`` (a loky pool) is broken: one of its workers died, every pending task failed."""
    return bool(getattr(getattr(executor, "_flags", None), "broken", None))


def _usable(pool: _Pool | None) -> bool:
    flags = getattr(pool.executor, "_flags", None) if pool is not None else None
    return pool is not None and not (getattr(flags, "broken", None) or getattr(flags, "shutdown", False))


def acquire(max_workers: int | None, inner_threads: int | str | None = _worker.AUTO, *, first: bool) -> Executor:
    """The shared pool of ``max_workers`` processes (None: one per CPU), started if needed.

    ``inner_threads`` caps each worker's native thread pools (see :mod:`._worker`).
    ``first`` is True on an engine's first use: it then counts as a user of that
    pool until it calls :func:`release`. A pool broken by a dead worker is replaced.
    """
    key = _key(max_workers, inner_threads)
    with _lock:
        pool = _pools.get(key)
        if not _usable(pool):
            if pool is not None:  # broken by a dead worker: nothing runs on it any more
                _ours.pop(id(pool.executor), None)
            pool = _pools[key] = _Pool(_start(key, explicit=isinstance(inner_threads, int)))
            _ours[id(pool.executor)] = pool
        if first:
            _users[key] = _users.get(key, 0) + 1
        assert pool is not None
        return pool.executor


# loky restarts a worker whose memory grew by 300 MB since its first task, taking it for a
# leak; ours grow by design (a call's large shared inputs, kept while it runs), and a restart
# throws away what the worker loaded. A limit the user set in the environment is kept.
_NO_RECYCLING = {} if "LOKY_MAX_MEMORY_LEAK_SIZE" in os.environ else {"LOKY_MAX_MEMORY_LEAK_SIZE": str(1 << 62)}


def _start(key: tuple[int, int | None], explicit: bool) -> Executor:
    from loky import ProcessPoolExecutor

    size, threads = key
    executor: Executor = ProcessPoolExecutor(
        max_workers=size,
        timeout=IDLE_TIMEOUT_S,
        env={**_worker.thread_env(threads, explicit), **_NO_RECYCLING},  # set before the worker imports anything
        initializer=_worker.start,
        initargs=(threads,),
    )
    return executor


def _pool_of(executor: Executor) -> _Pool | None:
    """The pool of ours that ``executor`` is, if it is one."""
    pool = _ours.get(id(executor))
    return pool if pool is not None and pool.executor is executor else None


def is_ours(executor: Executor) -> bool:
    """Whether ``executor`` is one of our pools (its workers run on this machine)."""
    return _pool_of(executor) is not None


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
            if not pool.hooked:
                _hook(pool)


def abandon(executor: Executor, futures: Iterable[Future[Any]]) -> None:
    """Record tasks that a failed or interrupted call left running on ``executor``.

    Nobody waits for their results, and each is forgotten when it finishes (its
    result with it). If tasks are still running when the pool's last engine
    releases it, :func:`release` terminates the workers instead of waiting for
    them: a task that hangs (or runs for hours) must not hang ``shutdown()``,
    nor the interpreter's exit (:func:`_at_exit`).
    """
    pool = _pool_of(executor)
    if pool is None:
        return
    futures = list(futures)
    with _lock:
        pool.abandoned.update(futures)
    for future in futures:
        future.add_done_callback(partial(_forget, pool))  # runs at once if already done
    with _lock:
        if not pool.hooked:
            _hook(pool)


def _hook(pool: _Pool) -> None:
    """Register :func:`_at_exit` after the exit hook loky registered for ``pool`` (under ``_lock``).

    Interpreter-exit hooks run last-registered first. loky registers one (which
    joins every loky pool's manager thread, so waits for every running task,
    abandoned ones included) each time a pool's manager thread starts, at its first
    task; ours must come after it to run before it, so each pool registers it once
    that thread exists. Running it twice is harmless: the second run finds nothing.
    Private, both: ``threading._register_atexit`` is what concurrent.futures uses.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None or getattr(pool.executor, "_executor_manager_thread", None) is None:
        return
    try:
        register(_at_exit)
    except RuntimeError:  # the interpreter is already shutting down
        return
    pool.hooked = True


def _at_exit() -> None:
    """At interpreter exit, stop every pool of ours still running, before loky's own hook.

    Pools that abandoned tasks still running get their workers terminated (those tasks
    must not hang the exit); the others are shut down waiting for their tasks, as
    loky's hook would. Either way :func:`_stop` waits for the pool's feeder thread.
    """
    with _lock:
        pools = list(_ours.values())
        _ours.clear()
        for key, pool in list(_pools.items()):
            if pool in pools:
                _pools[key] = None
    for pool in pools:
        if pool.abandoned:
            _terminate(pool.executor, wait=True)
        else:
            _stop(pool.executor, wait=True, kill_workers=False)


def _forget(pool: _Pool, future: Future[Any]) -> None:
    with _lock:
        pool.abandoned.discard(future)


def release(max_workers: int | None, inner_threads: int | str | None = _worker.AUTO, *, wait: bool = True) -> None:
    """An engine is done with its pool; the last one out shuts it down.

    With ``wait``, calls still running on the pool (from other threads) are
    waited for; then its workers are joined, or terminated if abandoned tasks
    still run on them. Without (an engine's finalizer, which must never block):
    the pool is told to shut down once its running tasks finish, and its workers
    are terminated at once if only abandoned tasks run on it.
    """
    key = _key(max_workers, inner_threads)
    with _lock:
        users = _users.get(key, 0) - 1
        if users > 0:
            _users[key] = users
            return
        _users.pop(key, None)
        pool = _pools.pop(key, None)
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
        _stop(pool.executor, wait=wait, kill_workers=False)


def kill(max_workers: int | None, inner_threads: int | str | None = _worker.AUTO) -> None:
    """Terminate that pool's workers now (after Ctrl-C): running tasks are abandoned.

    Engines keep working: the next call starts fresh workers.
    """
    key = _key(max_workers, inner_threads)
    with _lock:
        pool = _pools.get(key)
        if key in _pools:
            _pools[key] = None
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
    _stop(executor, wait=wait, kill_workers=True)


def _stop(executor: Executor, *, wait: bool, kill_workers: bool) -> None:
    """``executor.shutdown``; with ``wait``, also wait for its call-queue feeder thread.

    loky joins that (daemon) thread only in processes that did not create the queue,
    so after ``shutdown(wait=True)`` it may still be finishing, holding the last
    references to the queue. If the interpreter exits meanwhile, the thread is frozen
    while it runs the queue's semaphore finalizers: the semaphore is unlinked but never
    unregistered, and loky's resource tracker warns at exit about a "leaked semlock"
    (seen at the exit of a script whose node called ``sys.exit()``). Waiting for the
    thread lets those finalizers finish first. The wait is bounded: a feeder blocked
    on a pipe that dead workers no longer read never finishes, and then never runs
    the finalizers either.
    """
    feeder = getattr(getattr(executor, "_call_queue", None), "_thread", None)
    executor.shutdown(wait=wait, kill_workers=kill_workers)  # type: ignore[call-arg]
    if wait and isinstance(feeder, threading.Thread) and feeder is not threading.current_thread():
        feeder.join(FEEDER_JOIN_S)
