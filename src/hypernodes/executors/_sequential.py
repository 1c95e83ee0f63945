"""SequentialExecutor: the ``concurrent.futures`` face of "run it here, now"."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["SequentialExecutor"]


class SequentialExecutor(Executor):
    """Runs each task in the caller, inside ``submit()``, and returns its completed future.

    The notebook-era version's adapter, kept for code that submits to it directly.
    Engines do not need it: ``"sequential"`` runs nodes and items in the compiled
    loops without any executor.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Call ``fn(*args, **kwargs)`` now.

        Returns:
            A done future holding the result, or the exception ``fn`` raised (an
            ``Exception``; ``KeyboardInterrupt`` and ``SystemExit`` propagate).
        """
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to release: tasks ran inside ``submit()``."""
