"""Set-up of the worker processes of a LocalCluster that DaskEngine starts (a Dask preload).

A terminal's Ctrl-C goes to the whole foreground process group: the script, and
the worker processes of the LocalCluster it started. The script stops its map (a
KeyboardInterrupt, its futures cancelled) and closes the cluster; the workers,
interrupted too, each printed a traceback, then distributed's log lines about the
tasks their closing cancelled. So they ignore SIGINT (their nanny closes them with
the cluster), and while a worker closes, the warning for each task that closing
cancels (expected then: "ended with CancelledError") is left out.
"""

from __future__ import annotations

import logging
import signal
import threading
import weakref
from typing import Any

__all__ = ["dask_setup"]

_CLOSING = frozenset({"closing", "closing_gracefully", "closed", "failed"})


class _WhileClosing(logging.Filter):
    """Leaves out the warnings for the tasks cancelled by the worker's closing, and only then."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self._worker = weakref.ref(worker)

    def filter(self, record: logging.LogRecord) -> bool:
        worker = self._worker()
        closing = worker is None or getattr(getattr(worker, "status", None), "name", "") in _CLOSING
        if not closing:
            return True
        message = record.getMessage()
        return not (message.startswith("Async instruction for") and message.endswith("ended with CancelledError"))


def dask_setup(worker: Any) -> None:
    """Called by Dask in each new worker process: ignore SIGINT (the script's Ctrl-C, not the worker's)."""
    if threading.current_thread() is threading.main_thread():  # where Python handles signals
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").addFilter(_WhileClosing(worker))
