"""Submitting tasks, gathering their results, and stopping them when one fails.

The first task to fail raises its own exception; every task not yet started is
cancelled, running thread slices are told to stop (a flag they check), and the
call returns without waiting for the ones still running. Tasks left running in a
pool of worker processes are handed to ``_loky.abandon``, so shutting that pool
down does not wait for them.

A ``CancelledError`` that an async node raises itself travels out of its task in a
:class:`NodeCancelled` (raised as it is, asyncio would end the task cancelled and
lose it); whoever reads the task's future raises the original (:func:`unwrapped`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future
from functools import partial
from queue import SimpleQueue
from typing import Any

from .._errors import add_note
from ..executors import _loky

__all__ = ["NodeCancelled", "cancel", "concat", "died_note", "gather", "submit", "unwrapped"]


class NodeCancelled(Exception):
    """Carries a ``CancelledError`` that a node raised itself out of the task running it.

    Raised as it is, asyncio would take it for a cancellation of the task: the task's
    future would be cancelled and the node's exception, with its note, lost. The
    code reading that future raises :attr:`error` instead (see :func:`unwrapped`).
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def unwrapped(exc: BaseException) -> BaseException:
    """The exception a node raised: ``exc``, or the one a :class:`NodeCancelled` carries."""
    return exc.error if isinstance(exc, NodeCancelled) else exc


def _put(queue: SimpleQueue[int], index: int, _future: Future[Any]) -> None:
    queue.put(index)


def died_note(exc: BaseException, what: str) -> None:
    """Note on a ``BrokenExecutor`` that a worker process died while running ``what``."""
    if isinstance(exc, BrokenExecutor):
        add_note(
            exc,
            f"hypernodes: a worker process died while running {what}. Likely causes: a crash in native code "
            "(a segfault), os._exit() or sys.exit() called in a node, or the OS killing the worker for lack of "
            "memory. The next call starts fresh workers.",
        )


def submit(executor: Executor, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
    """``executor.submit(fn, *args)``, with a note when the executor refuses the task."""
    try:
        return executor.submit(fn, *args)
    except Exception as exc:
        add_note(
            exc,
            f"hypernodes: {type(executor).__name__}.submit() raised this, so the task never ran "
            "(an executor refuses tasks after its shutdown(), for one).",
        )
        raise


def cancel(executor: Executor, futures: Iterable[Future[Any]]) -> None:
    """Cancel the tasks not started; hand the ones still running to ``_loky.abandon``."""
    running = [f for f in futures if not f.cancel() and not f.done()]
    if running:
        _loky.abandon(executor, running)


def gather(
    executor: Executor,
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    on_error: Callable[[BaseException, int], None] | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[Any, int], Any] | None = None,
) -> list[Any]:
    """Submit ``fn(*args)`` for each of ``calls``; their results in order.

    ``on_result(result, index)``, when given, sees each result on the calling
    thread as soon as it arrives and returns what to keep of it. Returns as soon
    as one task fails (or the caller is interrupted), raising its exception
    (after ``on_error(exc, index)`` annotates it): every other task is cancelled
    if not yet started, and ``stop`` is set for the running ones that check it.
    """
    done: SimpleQueue[int] = SimpleQueue()
    futures: list[Future[Any]] = []
    with _loky.in_use(executor):
        try:
            for i, args in enumerate(calls):
                futures.append(submit(executor, fn, *args))
                futures[-1].add_done_callback(partial(_put, done, i))
            results: list[Any] = [None] * len(futures)
            for _ in range(len(futures)):
                i = done.get()
                try:
                    result = futures[i].result()
                except Exception as exc:
                    error = unwrapped(exc)
                    if on_error is not None:
                        on_error(error, i)
                    if error is not exc:
                        raise error from None
                    raise
                results[i] = result if on_result is None else on_result(result, i)
            return results
        except BaseException:
            if stop is not None:
                stop.set()
            cancel(executor, futures)
            raise


def concat(parts: list[list[list[Any]]]) -> list[list[Any]]:
    """One list per output from slices' lists per output, in slice order."""
    if len(parts) == 1:
        return parts[0]
    columns: list[list[Any]] = [[] for _ in parts[0]]
    for part in parts:
        for column, piece in zip(columns, part):
            column.extend(piece)
    return columns
