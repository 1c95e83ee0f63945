"""Executor specs: the names an engine accepts, and the check of ``max_workers``."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ExecutorSpecError

__all__ = ["DEFAULT_WORKERS", "EXECUTOR_NAMES", "check_max_workers"]

EXECUTOR_NAMES = ("sequential", "threaded", "async", "parallel")

DEFAULT_WORKERS: dict[str, int] = {
    "sequential": 1,
    "async": 100,  # awaiting tasks are cheap: I/O-bound concurrency
    "threaded": min(32, (os.cpu_count() or 1) + 4),  # ThreadPoolExecutor's own default
    "parallel": os.cpu_count() or 1,  # one process per CPU
}
"""The worker count each named executor gets when ``max_workers`` is None (``backends`` reads it)."""


def check_max_workers(max_workers: Any, where: str, *, allow_none: bool) -> None:
    """Raise ExecutorSpecError unless ``max_workers`` is a positive int (or None, if allowed)."""
    if max_workers is None and allow_none:
        return
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        expected = "a positive int or None" if allow_none else "a positive int"
        raise ExecutorSpecError(f"{where} must be {expected}, got {max_workers!r}.")
