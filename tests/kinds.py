"""The executors every executor test runs under, by kind.

Names are the engine's own executors; the others are user-passed instances: a
thread pool, an AsyncExecutor, a loky pool, ``PicklingExecutor`` -- an in-process
stand-in for a remote cluster that pickles every task and result, so the remote
path is tested without processes -- and a Dask cluster's executor (the session
``dask_client``, see conftest's ``make_executor``).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import cloudpickle
import loky

from hypernodes.executors import AsyncExecutor


class PicklingExecutor(Executor):
    """Runs tasks on threads, but pickles each task and result as a remote cluster would."""

    def __init__(self, max_workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="pickling")
        self.max_workers = max_workers  # what the engine sizes its slices by
        self.submitted = 0

    @staticmethod
    def _remote(data: bytes) -> bytes:
        fn, args, kwargs = pickle.loads(data)
        return cloudpickle.dumps(fn(*args, **kwargs))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        inner = self._pool.submit(self._remote, cloudpickle.dumps((fn, args, kwargs)))
        outer: Future[Any] = Future()

        def relay(f: Future[bytes]) -> None:
            if f.cancelled():
                outer.cancel()
            if not outer.set_running_or_notify_cancel():  # cancelled by the caller meanwhile
                return
            if f.exception() is not None:
                outer.set_exception(f.exception())
            else:
                outer.set_result(pickle.loads(f.result()))

        def forward_cancel(f: Future[Any]) -> None:
            if f.cancelled():
                inner.cancel()

        outer.add_done_callback(forward_cancel)
        inner.add_done_callback(relay)
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def make(kind: str) -> Any:
    """A fresh executor of ``kind``, or the name itself for the engine's own executors."""
    if kind == "ThreadPoolExecutor":
        return ThreadPoolExecutor(4)
    if kind == "AsyncExecutor":
        return AsyncExecutor(8)
    if kind == "loky":
        return loky.ProcessPoolExecutor(2)
    if kind == "PicklingExecutor":
        return PicklingExecutor(4)
    return kind  # a name


EXECUTOR_KINDS = ["sequential", "threaded", "async", "parallel", "ThreadPoolExecutor", "AsyncExecutor", "loky"]
EXECUTOR_KINDS += ["PicklingExecutor", "dask"]
NODE_EXECUTOR_KINDS = EXECUTOR_KINDS
