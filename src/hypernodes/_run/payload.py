"""What travels to worker processes, and the worker side of a node task.

Remote executors (loky, ``ProcessPoolExecutor``, a Dask executor, any ``Executor``
that is not a thread pool) share nothing with the caller. What a call needs there
(the plan or the nodes, the broadcast inputs) is pickled once per call with
cloudpickle into a *payload*; every task carries it as bytes with a token, and a
worker unpickles each token once (:func:`load`).
"""

from __future__ import annotations

import functools
import io
import pickle
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..executors._loop import AwaitOn
from ..node import Node

if TYPE_CHECKING:
    import asyncio

# cloudpickle (~30 ms) and asyncio (~60 ms) are imported on first use: a pipeline
# that never runs on processes, or has no async node, pays for neither.

__all__ = ["WorkerLoop", "dumps", "load", "remote_node"]


@functools.cache
def _pickler() -> type:
    import cloudpickle

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        """cloudpickle, plus: nodes defined in ``__main__`` (a notebook, a script) travel by value.

        ``Node.__reduce__`` pickles a module-level node by name, which a worker
        cannot resolve for ``__main__``; field by field, cloudpickle ships the function itself.
        """

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, Node) and getattr(obj.func, "__module__", None) == "__main__":
                return obj._reduce_by_value()
            return super().reducer_override(obj)

    return Pickler


def dumps(obj: Any) -> tuple[str, bytes]:
    """A fresh token and ``obj`` pickled for remote workers."""
    buffer = io.BytesIO()
    _pickler()(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return uuid.uuid4().hex, buffer.getvalue()


_LOADED_MAX = 8
_loaded: dict[str, Any] = {}
_loaded_lock = threading.Lock()


def load(token: str, payload: bytes) -> Any:
    """``payload`` unpickled, once per token in this process (the newest few are kept)."""
    found = _loaded.get(token)
    if found is None:
        found = pickle.loads(payload)
        with _loaded_lock:
            _loaded[token] = found
            while len(_loaded) > _LOADED_MAX:
                del _loaded[next(iter(_loaded))]
    return found


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


def remote_node(token: str, payload: bytes, k: int, args: tuple[Any, ...]) -> Any:
    """Worker side of a node task: node ``k`` of the pickled nodes, called on ``args``."""
    nodes: tuple[Node, ...] = load(token, payload)
    loop = WorkerLoop()  # started only if the node is async
    try:
        return AwaitOn(nodes[k]._call, loop)(*args)
    finally:
        loop.close()
