"""An event loop running in a thread of its own.

Synchronous code (the scheduler, a notebook cell that is itself inside a running
loop) hands coroutines to it and blocks on the result. Running them on a loop of
our own, rather than ``asyncio.run`` per call, costs one thread hop instead of a
loop set-up per coroutine, and works whether or not the calling thread already
runs a loop.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

# asyncio is imported on first use (it costs ~60 ms): most pipelines have no async node.

__all__ = ["AwaitOn", "CoroutineRunner", "LoopThread", "WorkerLoop"]


class CoroutineRunner(Protocol):
    """Something that runs a coroutine to completion and returns its result."""

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any: ...


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class AwaitOn:
    """Calls an async node and blocks until what it returns is awaited by ``runner``.

    A result that is not awaitable (a sync wrapper of an ``async def`` that already
    resolves it) is returned as it is.
    """

    __slots__ = ("func", "runner")

    def __init__(self, func: Callable[..., Any], runner: CoroutineRunner) -> None:
        self.func = func
        self.runner = runner

    def __call__(self, *args: Any) -> Any:
        result = self.func(*args)
        if inspect.iscoroutine(result):
            return self.runner.run(result)
        if inspect.isawaitable(result):
            return self.runner.run(_await(result))
        return result


class LoopThread:
    """A lazily started event loop thread; ``close()`` stops and joins it."""

    def __init__(self, name: str = "hypernodes-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> asyncio.AbstractEventLoop:
        # caller holds self._lock
        import asyncio

        if self._loop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(target=self._serve, args=(loop, started), name=self._name, daemon=True)
            thread.start()
            started.wait()
            self._thread, self._loop = thread, loop
        return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        import asyncio

        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread while it runs, else None."""
        return self._thread

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the loop and block until it finishes; returns its result.

        If the caller is interrupted (KeyboardInterrupt) the coroutine is cancelled.
        Called from the loop's own thread (an async node that synchronously runs a
        pipeline with async nodes), waiting on the loop would deadlock it, so the
        coroutine then runs to completion on a short-lived loop in a helper thread.
        """
        import asyncio

        if self._thread is threading.current_thread():
            with ThreadPoolExecutor(1, thread_name_prefix="hypernodes-nested-loop") as helper:
                # in a copy of this context, as a task on the loop would be: the caller's context variables hold
                return helper.submit(contextvars.copy_context().run, asyncio.run, coro).result()
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Schedule ``coro`` on the loop (started if needed); returns a concurrent future."""
        import asyncio

        # Submitting under the lock orders it against close(): a coroutine is either
        # queued before the loop's stop (its task is then cancelled by the loop's
        # shutdown, so its future always settles) or submitted to a new loop.
        with self._lock:
            return asyncio.run_coroutine_threadsafe(coro, self._start())

    def close(self) -> None:
        """Stop the loop, cancel what still runs on it, and join the thread. Idempotent.

        From the loop's own thread (an async node, or a finalizer that runs there)
        the loop is told to stop and the thread ends by itself once the current
        callback returns; it cannot join itself.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()


class WorkerLoop:
    """Awaits async nodes in a worker: one event loop per task, not one per item.

    Items of one slice run one after another in a worker; their coroutines run
    to completion here. A thread that already runs a loop (rare in a worker)
    hands the coroutine to a helper thread instead.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: a worker thread or process has no loop
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(coro)
        with ThreadPoolExecutor(1, thread_name_prefix="hypernodes-worker-loop") as helper:
            return helper.submit(asyncio.run, coro).result()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            self._loop = None
