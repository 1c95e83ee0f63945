"""Which executor's task the current thread is running.

A task that submits to its own executor and waits for the result can wait
forever behind itself (a nested pipeline on the pool that runs the outer items,
with every worker busy). Tasks the engine submits to in-process executors run
through :func:`as_task_of`, so :func:`is_task_of` can tell the engine to run
that level inline instead.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

__all__ = ["as_task_in", "as_task_of", "is_task_of"]

_running = threading.local()


def as_task_of(executor: Executor, fn: Callable[..., Any], /, *args: Any) -> Any:
    """Run ``fn(*args)`` remembering, for this thread, that it is a task of ``executor``."""
    stack: list[Executor] = _running.__dict__.setdefault("executors", [])
    stack.append(executor)
    try:
        return fn(*args)
    finally:
        stack.pop()


def as_task_in(context: contextvars.Context, executor: Executor, fn: Callable[..., Any], /, *args: Any) -> Any:
    """:func:`as_task_of` inside ``context``: the caller's ``copy_context()``, made when the task was
    submitted, so the context variables the caller set hold in the task (as ``asyncio.to_thread`` does)."""
    return context.run(as_task_of, executor, fn, *args)


def is_task_of(executor: Executor) -> bool:
    """Whether the current thread is inside a task of ``executor`` (see :func:`as_task_of`)."""
    return any(e is executor for e in getattr(_running, "executors", ()))
