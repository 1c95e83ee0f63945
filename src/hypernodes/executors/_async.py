"""AsyncExecutor: the ``concurrent.futures.Executor`` face of asyncio.

It owns one event loop in a thread of its own (started on first use) and a
thread pool of ``max_workers`` threads for synchronous functions. ``submit``
returns a ``concurrent.futures.Future`` either way:

* ``async def`` functions run as tasks on the loop, at most ``max_workers`` at
  once (a semaphore), so thousands of awaiting items cost no threads;
* plain functions go straight to the pool, sized ``max_workers`` -- not asyncio's
  default executor, whose small size was the notebook's 0.33 s vs 0.07 s gap.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..node import is_async_callable
from ._guard import as_task_of, is_task_of
from ._loop import LoopThread
from ._spec import DEFAULT_WORKERS, check_max_workers

if TYPE_CHECKING:
    import asyncio

# asyncio is imported on first use (it costs ~60 ms), as in _loop.py: the engine
# module checks isinstance(..., AsyncExecutor) without needing an event loop.

__all__ = ["AsyncExecutor"]


class AsyncExecutor(Executor):
    """Runs sync and ``async def`` callables concurrently, bounded by ``max_workers``."""

    DEFAULT_MAX_WORKERS = DEFAULT_WORKERS["async"]

    def __init__(self, max_workers: int = DEFAULT_MAX_WORKERS) -> None:
        """Args:
            max_workers: the most coroutines awaited at once, and the size of the
                thread pool for synchronous functions.

        Raises:
            ExecutorSpecError: ``max_workers`` is not a positive int.
        """
        check_max_workers(max_workers, "AsyncExecutor(max_workers=...)", allow_none=False)
        self.max_workers = max_workers
        self._loop_thread = LoopThread("hypernodes-async-loop")
        self._pool: ThreadPoolExecutor | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._closed = False
        # Stops the loop thread if the executor is dropped without shutdown().
        self._finalizer = weakref.finalize(self, self._loop_thread.close)

    def _check_open(self) -> None:
        # caller holds self._lock
        if self._closed:
            raise RuntimeError("cannot submit to an AsyncExecutor after shutdown()")

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="hypernodes-async")
            return self._pool

    async def _bounded(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import asyncio

        if self._semaphore is None:  # created on the loop thread, the only one touching it
            self._semaphore = asyncio.Semaphore(self.max_workers)
        async with self._semaphore:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; returns a ``concurrent.futures.Future``.

        Async callables (``async def``, async nodes) run on the loop, others on the pool.

        Raises:
            RuntimeError: the executor was shut down.
        """
        if is_async_callable(fn):
            with self._lock:  # held while submitting, so shutdown() cannot slip in and leak a new loop
                self._check_open()
                return self._loop_thread.submit(self._bounded(fn, args, kwargs))
        return self._thread_pool().submit(fn, *args, **kwargs)

    def _offload(self, fn: Callable[..., Any], /, *args: Any) -> asyncio.Future[Any]:
        """On the loop: run sync ``fn(*args)`` in the pool, as an awaitable (and as a task of this executor).

        It runs in a copy of the awaiting task's context, as ``asyncio.to_thread`` does: what the
        item's coroutine set there (a nested pipeline's callback scope) holds in the thread too.
        """
        import asyncio
        import contextvars

        context = contextvars.copy_context()
        return asyncio.wrap_future(self._thread_pool().submit(context.run, as_task_of, self, fn, *args))

    def _runs_on(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` runs this executor's event loop."""
        return self._loop_thread.thread is thread

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the pool (waiting for its running calls if ``wait``) and the loop thread,
        cancelling coroutines still awaiting on it. Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        try:
            if pool is not None:  # a pool thread cannot wait for itself
                pool.shutdown(wait=wait and not is_task_of(self), cancel_futures=cancel_futures)
        finally:
            self._loop_thread.close()
