"""Backends: each executor kind as an object with one small interface.

An engine has two backends, one per level: who runs the nodes of one item, and
who runs the items of a map. :func:`backend_for` is the one place that turns an
executor spec (a name or an executor object) into a backend; everything below
asks the backend, never compares names.

=============  ===========================================  ==========  ========
backend        runs tasks on                                 in process  portable
=============  ===========================================  ==========  ========
Sequential     the calling thread                            yes         yes
Threads        a ``ThreadPoolExecutor`` it owns              yes         yes
Async          an :class:`AsyncExecutor` it owns             yes         yes
Processes      the shared loky pool of its size (``_loky``)  no          no
Given          the user's executor (never shut down here)    it depends  no
=============  ===========================================  ==========  ========

*In process*: tasks may share the call's values (threads, an event loop); other
backends get pickled, self-contained tasks. *Portable*: a worker process can make
its own from the name, so it may serve as the node level inside a process map.
A new backend (Dask, say) is one more subclass, in a module of its own
(``hypernodes.engines.dask``), passed to the engine as an instance; the drivers need no change.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ..errors import ExecutorSpecError
from . import _loky, _worker
from ._async import AsyncExecutor
from ._guard import is_task_of
from ._spec import DEFAULT_WORKERS, EXECUTOR_NAMES

__all__ = [
    "PROCESS_TASKS_PER_WORKER",
    "THREAD_TASKS_PER_WORKER",
    "Async",
    "Backend",
    "Given",
    "Processes",
    "Sequential",
    "Threads",
    "backend_for",
    "in_process",
    "worker_count",
]

THREAD_TASKS_PER_WORKER = 4
"""Slices per thread: enough to even out items of uneven cost, few enough to amortise a task."""

PROCESS_TASKS_PER_WORKER = 4
"""Slices per process: each carries the pickled plan and its share of the columns. Four
per worker let a worker that finishes early take more (loky hands tasks to free workers),
while the per-task cost (~0.3 ms) stays small against tiny items' pickling."""

# Python 3.14's subinterpreter pool subclasses ThreadPoolExecutor but shares no objects.
_NOT_IN_PROCESS: tuple[type, ...] = tuple(
    c for c in [getattr(concurrent.futures, "InterpreterPoolExecutor", None)] if isinstance(c, type)
)


def in_process(executor: Executor) -> bool:
    """Whether tasks run in this interpreter and may share the call's values (threads).

    Only thread pools and :class:`AsyncExecutor` are known to; every other
    executor (loky, processes, Dask, subinterpreters, anything else) gets
    pickled, self-contained tasks.
    """
    return isinstance(executor, AsyncExecutor) or (
        isinstance(executor, ThreadPoolExecutor) and not isinstance(executor, _NOT_IN_PROCESS)
    )


def worker_count(executor: Executor) -> int:
    """How many tasks ``executor`` runs at once: its ``max_workers``, a Dask client's
    worker threads, or else the CPU count."""
    for attr in ("max_workers", "_max_workers"):
        n = getattr(executor, attr, None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    nthreads = getattr(getattr(executor, "_client", None), "nthreads", None)  # distributed.Client.get_executor()
    if callable(nthreads):
        try:
            n = sum(nthreads().values())
        except Exception:  # a client that cannot tell (closed, not connected): fall back
            n = 0
        if isinstance(n, int) and n > 0:
            return n
    return os.cpu_count() or 1


class Backend:
    """How one level of an engine runs its tasks.

    Attributes:
        name: the spec's name ("sequential", "threaded", "async", "parallel"), or
            "executor" for an executor object the user gave.
        spec: what the user gave: the name, or the executor object.
        in_process: tasks run in this interpreter and may share the call's values.
        inline: every task runs on the calling thread (no executor at all).
        portable: a worker process can make this backend itself from ``name``.
        tasks_per_worker: map slices per worker (see ``_run/maps.py``).
    """

    name = "sequential"
    inline = False
    in_process = True
    portable = True
    tasks_per_worker = THREAD_TASKS_PER_WORKER

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return repr(self.spec) if isinstance(self.spec, str) else type(self.spec).__name__

    def executor(self) -> Executor | None:
        """The executor tasks go to (started on first use); None to run on the calling thread."""
        return None

    def here(self) -> Executor | None:
        """The executor to submit to from the calling thread; None to run this level inline.

        Inline also when the calling thread is itself a task of that executor (a
        nested pipeline on the pool running the outer items): waiting on it could
        wait forever behind itself.
        """
        executor = self.executor()
        if executor is None or is_task_of(executor):
            return None
        if isinstance(executor, AsyncExecutor) and executor._runs_on(threading.current_thread()):
            return None
        return executor

    def workers(self, executor: Executor) -> int:
        """How many tasks ``executor`` (this backend's) runs at once."""
        return worker_count(executor)

    def interrupted(self) -> None:
        """After Ctrl-C: stop work that would otherwise run on (processes)."""

    def shutdown(self, wait: bool = True) -> None:
        """Release what this backend started (idempotent; it starts again on next use)."""


class Sequential(Backend):
    """Everything on the calling thread, in the compiled loops."""

    inline = True


class _Owned(Backend):
    """A backend that makes its executor on first use and shuts it down."""

    def __init__(self, spec: str, max_workers: int | None, role: str) -> None:
        super().__init__(spec)
        self.max_workers = max_workers
        self.role = role
        self._lock = threading.Lock()
        self._executor: Executor | None = None

    def _make(self) -> Executor:
        raise NotImplementedError

    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                self._executor = self._make()
            return self._executor

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:  # a task of this executor cannot wait for itself
            executor.shutdown(wait=wait and not is_task_of(executor), cancel_futures=True)


class Threads(_Owned):
    """A ``ThreadPoolExecutor(max_workers)`` of the engine's own (blocking I/O)."""

    name = "threaded"

    def _make(self) -> Executor:
        return ThreadPoolExecutor(
            self.max_workers or DEFAULT_WORKERS["threaded"], thread_name_prefix=f"hypernodes-{self.role}"
        )


class Async(_Owned):
    """An :class:`AsyncExecutor` of the engine's own (``async def`` nodes, mixed pipelines)."""

    name = "async"

    def _make(self) -> Executor:
        return AsyncExecutor(self.max_workers or DEFAULT_WORKERS["async"])


class Processes(Backend):
    """The loky process pool shared by every "parallel" backend of the same size and thread cap."""

    name = "parallel"
    in_process = False
    portable = False  # processes do not start processes
    tasks_per_worker = PROCESS_TASKS_PER_WORKER

    def __init__(self, max_workers: int | None, inner_threads: int | str | None = _worker.AUTO) -> None:
        super().__init__("parallel")
        self.max_workers = max_workers
        self.inner_threads = inner_threads  # native threads per worker (see executors/_worker.py)
        self._lock = threading.Lock()
        self._acquired = False

    def executor(self) -> Executor:
        # Asked each time: a pool broken by a dead worker, or killed after Ctrl-C, is replaced.
        with self._lock:
            pool = _loky.acquire(self.max_workers, self.inner_threads, first=not self._acquired)
            self._acquired = True
            return pool

    def interrupted(self) -> None:
        if self._acquired:  # tasks already running in the workers would run on: stop them
            _loky.kill(self.max_workers, self.inner_threads)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            acquired, self._acquired = self._acquired, False
        if acquired:
            _loky.release(self.max_workers, self.inner_threads, wait=wait)


class Given(Backend):
    """An executor object the user passed: used as it is, never shut down by us."""

    name = "executor"
    portable = False  # executor objects do not travel to other processes

    def __init__(self, executor: Executor) -> None:
        super().__init__(executor)
        self._executor = executor
        self.in_process = in_process(executor)
        self.tasks_per_worker = THREAD_TASKS_PER_WORKER if self.in_process else PROCESS_TASKS_PER_WORKER

    def executor(self) -> Executor:
        return self._executor


_ALLOWED = ", ".join(repr(n) for n in EXECUTOR_NAMES)


def backend_for(
    spec: Any, role: str, max_workers: int | None, inner_threads: int | str | None = _worker.AUTO
) -> Backend:
    """The backend for an executor spec: a name from ``EXECUTOR_NAMES`` or an executor object.

    Args:
        spec: "sequential", "threaded", "async", "parallel", an object with a callable
            ``submit``, or a :class:`Backend` (used as it is: how an engine module adds a kind).
        role: "node" or "map": names the argument in errors and the threads it starts.
        max_workers: the size of executors made from names (None: their defaults);
            checked by the caller.
        inner_threads: native threads per "parallel" worker process ("auto", an int,
            or None: the environment left alone); checked by the caller.

    Raises:
        ExecutorSpecError: an unknown name, a class instead of an instance, or an
            object without ``submit``.
    """
    where = f"{role}_executor"
    if isinstance(spec, Backend):
        return spec
    if isinstance(spec, str):
        if spec == "sequential":
            return Sequential(spec)
        if spec == "threaded":
            return Threads(spec, max_workers, role)
        if spec == "async":
            return Async(spec, max_workers, role)
        if spec == "parallel":
            return Processes(max_workers, inner_threads)
        raise ExecutorSpecError(
            f"Unknown {where} {spec!r}. Allowed: {_ALLOWED}, or an executor object with a submit() method "
            "(e.g. ThreadPoolExecutor, AsyncExecutor, a loky or Dask executor)."
        )
    if isinstance(spec, type):
        raise ExecutorSpecError(
            f"{where} got the class {spec.__name__}; pass an instance, e.g. {spec.__name__}(max_workers=8)."
        )
    if callable(getattr(spec, "submit", None)):
        return Given(spec)
    raise ExecutorSpecError(
        f"{where} must be one of {_ALLOWED} or an object with the "
        f"concurrent.futures.Executor interface (a submit() method); got {type(spec).__name__} {spec!r}."
    )
