"""How a worker process of ours starts: capped native thread pools, and a watch on its parent.

**Thread caps.** numpy's BLAS, OpenMP runtimes, MKL and numexpr each start one
thread per core in every process by default; two workers on two cores then run
four BLAS threads that fight for two cores, and BLAS-bound work runs many times
slower than on one process. Like joblib (loky), each worker gets
``max(1, cpu_count // workers)`` threads by default, through the environment
variables those libraries read when they load (:data:`THREAD_VARIABLES`, set when
the worker process is created, before any module is imported in it), and through
``threadpoolctl`` for libraries a worker already loaded (its main module's imports).

**Parent watch.** A worker whose parent died (SIGKILL, the OOM killer, a killed
kernel) must not run the queued slices on: they may be paid API calls or
database writes nobody will read. :func:`start` makes the worker exit within
:data:`WATCH_S` once its parent is gone: on Linux the kernel signals it at once
(``PR_SET_PDEATHSIG``), everywhere a daemon thread polls ``os.getppid()``, and
:func:`check_parent` is asked before each slice starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any

__all__ = [
    "AUTO",
    "THREAD_VARIABLES",
    "WATCH_S",
    "check_inner_threads",
    "check_parent",
    "resolve_threads",
    "start",
    "thread_env",
]

AUTO = "auto"
"""``inner_threads``' default: ``max(1, cpu_count // workers)`` native threads per worker."""

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",  # OpenMP (also torch and OpenBLAS built with it)
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",  # macOS Accelerate
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
"""The environment variables through which a worker's native thread pools are capped."""

WATCH_S = 0.25
"""How often a worker checks that its parent is alive (when no signal told it first)."""

_EXIT_CODE = 70  # what an orphaned worker exits with (EX_SOFTWARE): it was not asked to stop


def check_inner_threads(inner_threads: Any) -> None:
    """Raise ``ExecutorSpecError`` unless ``inner_threads`` is "auto", None or a positive int."""
    if inner_threads is None or (isinstance(inner_threads, str) and inner_threads == AUTO):
        return
    if isinstance(inner_threads, bool) or not isinstance(inner_threads, int) or inner_threads < 1:
        from ..errors import ExecutorSpecError

        raise ExecutorSpecError(
            f"inner_threads must be 'auto' (cpu_count // workers native threads per worker process), "
            f"a positive int, or None (leave the environment alone); got {inner_threads!r}."
        )


def resolve_threads(inner_threads: int | str | None, workers: int) -> int | None:
    """The native threads each of ``workers`` processes gets; None: the environment is left alone."""
    if inner_threads is None or isinstance(inner_threads, int):
        return inner_threads
    from loky import cpu_count  # the CPUs this process may use (affinity, cgroup quotas), as joblib counts them

    return max(1, int(cpu_count()) // workers)


def thread_env(threads: int | None, explicit: bool) -> dict[str, str]:
    """The environment a worker process starts with to run ``threads`` native threads.

    With ``explicit`` (the user asked for that number) it overrides the caller's own
    environment; otherwise a variable the caller set is kept, as joblib keeps it.
    """
    if threads is None:
        return {}
    return {name: str(threads) for name in THREAD_VARIABLES if explicit or name not in os.environ}


def start(threads: int | None) -> None:
    """A worker's initializer: cap the thread pools already loaded, and start watching the parent."""
    _watch_parent(os.getppid())
    if threads is not None:
        _limit_loaded(threads)


def _limit_loaded(threads: int) -> None:
    # Libraries that load later read the environment; only those the worker's main module
    # already imported need threadpoolctl (its import costs ~10 ms: only then).
    if not any(m in sys.modules for m in ("numpy", "scipy", "torch", "sklearn", "numexpr")):
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads)


_parent: int | None = None


def _watch_parent(parent: int) -> None:
    global _parent
    _parent = parent
    if sys.platform.startswith("linux"):
        _ask_kernel()
    threading.Thread(target=_poll, args=(parent,), name="hypernodes-parent-watch", daemon=True).start()
    check_parent()  # the parent may have died before the watch began


def _ask_kernel() -> None:
    """``PR_SET_PDEATHSIG``: the kernel sends SIGUSR1 when the thread that started us ends.

    That thread may end while its process lives on (a user's thread that made the
    first call), so the signal only prompts a check; SIGKILL would kill healthy workers.
    """
    import ctypes

    with contextlib.suppress(Exception):  # no libc, a kernel without prctl: the poll alone serves
        signal.signal(signal.SIGUSR1, _on_signal)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGUSR1), 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def _on_signal(signum: int, frame: Any) -> None:
    check_parent()


def _poll(parent: int) -> None:
    # A daemon thread: os._exit() from here stops the worker even while its main thread
    # is inside native code that never returns to the interpreter.
    event = threading.Event()
    while not event.wait(WATCH_S):
        if os.getppid() != parent:
            os._exit(_EXIT_CODE)


def check_parent() -> None:
    """Exit this worker at once if the process that started it is gone (called before each slice)."""
    if _parent is not None and os.getppid() != _parent:
        os._exit(_EXIT_CODE)
