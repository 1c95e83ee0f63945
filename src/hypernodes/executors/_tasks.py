"""The units of work the engine hands to executors, and the worker side of them.

Two kinds of executor, two kinds of task:

* **In-process** (threads, :class:`AsyncExecutor`): a task shares the call's
  ``values`` list. :func:`call_node` / :func:`acall_node` run one node and store
  its outputs in place; a map slice runs on the compiled batch loop
  (``core.run_batch``) in the worker thread, or on :func:`run_slice_async` as
  one coroutine on an ``AsyncExecutor``'s loop.
* **Remote** (loky, ``ProcessPoolExecutor``, a Dask executor, any other
  ``Executor``): nothing is shared. The plan (or the nodes) is pickled once per
  call with cloudpickle into a *payload*; every task carries it as bytes with a
  token, and a worker unpickles each token once (:func:`_load`). A map slice
  sends only its share of the mapped columns and returns one list per output
  (:func:`remote_batch`); a node task sends the node's arguments and returns its
  result (:func:`remote_node`).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import pickle
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cloudpickle

from .. import _core
from .._graph import Wiring
from ..errors import note_node, unpack_row
from ..node import Node
from ._loop import AwaitOn

__all__ = [
    "Items",
    "acall_node",
    "call_node",
    "dumps",
    "remote_batch",
    "remote_node",
    "run_slice_async",
    "store",
]


def store(steps: Wiring, k: int, result: Any, values: list[Any]) -> None:
    """Put node ``k``'s ``result`` into its output slots (unpacking a tuple output)."""
    outs = steps.outs[k]
    if steps.unpack[k]:
        for slot, value in zip(outs, unpack_row(result, len(outs), steps.names[k])):
            values[slot] = value
    else:
        values[outs[0]] = result


def call_node(steps: Wiring, funcs: Sequence[Callable[..., Any]], values: list[Any], k: int, item: int) -> None:
    """Run node ``k`` on ``values`` in place (an in-process node task)."""
    try:
        store(steps, k, funcs[k](*[values[s] for s in steps.args[k]]), values)
    except Exception as exc:
        note_node(exc, steps.names[k], item)
        raise


async def acall_node(steps: Wiring, funcs: Sequence[Callable[..., Any]], values: list[Any], k: int, item: int) -> None:
    """Await async node ``k`` on ``values`` in place (a node task on an event loop)."""
    try:
        result = funcs[k](*[values[s] for s in steps.args[k]])
        if inspect.isawaitable(result):
            result = await result
        store(steps, k, result, values)
    except Exception as exc:
        note_node(exc, steps.names[k], item)
        raise


class Items:
    """The mapped columns of a call: puts item ``i``'s values into their slots."""

    __slots__ = ("columns", "lengths", "map_slots", "product")

    def __init__(self, map_slots: Sequence[int], columns: Sequence[Sequence[Any]], product: bool) -> None:
        self.map_slots = tuple(map_slots)
        self.columns = tuple(columns)
        self.lengths = tuple(len(c) for c in columns)
        self.product = product

    def fill(self, values: list[Any], i: int) -> None:
        if not self.product:
            for slot, column in zip(self.map_slots, self.columns):
                values[slot] = column[i]
            return
        for j in range(len(self.columns) - 1, -1, -1):  # last column fastest, as itertools.product
            i, idx = divmod(i, self.lengths[j])
            values[self.map_slots[j]] = self.columns[j][idx]


async def run_slice_async(
    steps: Wiring,
    funcs: Sequence[Callable[..., Any]],
    template: Sequence[Any],
    items: Items,
    lo: int,
    hi: int,
    offload: Callable[..., Awaitable[Any]],
) -> list[list[Any]]:
    """Items ``lo..hi-1`` as one coroutine: async nodes awaited, sync nodes offloaded.

    Used by an :class:`AsyncExecutor` map of a pipeline with ``async def`` nodes:
    thousands of awaiting items then cost no thread each. ``offload(f, *args)``
    runs a sync node in the executor's thread pool, so a blocking one does not
    stall the loop.
    """
    values = list(template)
    n_nodes = len(steps.args)
    results: list[list[Any]] = [[None] * (hi - lo) for _ in steps.result_slots]
    for i in range(lo, hi):
        items.fill(values, i)
        for k in range(n_nodes):
            args = [values[s] for s in steps.args[k]]
            try:
                if steps.is_async[k]:
                    result = funcs[k](*args)
                    if inspect.isawaitable(result):
                        result = await result
                else:
                    result = await offload(funcs[k], *args)
                store(steps, k, result, values)
            except Exception as exc:
                note_node(exc, steps.names[k], i)
                raise
        for out, slot in zip(results, steps.result_slots):
            out[i - lo] = values[slot]
    return results


# -- remote tasks -------------------------------------------------------------


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, plus: nodes defined in ``__main__`` (a notebook, a script) travel by value.

    ``Node.__reduce__`` pickles a module-level node by name, which a worker
    cannot resolve for ``__main__``; field by field, cloudpickle ships the function itself.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Node) and getattr(obj.func, "__module__", None) == "__main__":
            return obj._reduce_by_value()
        return super().reducer_override(obj)


def dumps(obj: Any) -> tuple[str, bytes]:
    """A fresh token and ``obj`` pickled for remote workers."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return uuid.uuid4().hex, buffer.getvalue()


_LOADED_MAX = 8
_loaded: dict[str, Any] = {}
_loaded_lock = threading.Lock()


def _load(token: str, payload: bytes) -> Any:
    """``payload`` unpickled, once per token in this process (the newest few are kept)."""
    found = _loaded.get(token)
    if found is None:
        found = pickle.loads(payload)
        with _loaded_lock:
            _loaded[token] = found
            while len(_loaded) > _LOADED_MAX:
                del _loaded[next(iter(_loaded))]
    return found


class _WorkerLoop:
    """Awaits async nodes in a worker: one event loop per task, not one per item.

    Items of one slice run one after another in a worker; their coroutines run
    to completion here. A thread that already runs a loop (rare in a worker)
    hands the coroutine to a helper thread instead.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
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


def remote_batch(token: str, payload: bytes, columns: Sequence[Sequence[Any]], lo: int, hi: int, base: int) -> Any:
    """Worker side of a map slice: items ``lo..hi-1`` of ``columns``; returns one list per output.

    The payload holds ``(plan, template, map_slots, product, node_spec, max_workers,
    core)``; ``base`` numbers the items in error notes when ``columns`` is a slice.
    """
    plan, template, map_slots, product, node_spec, max_workers, core = _load(token, payload)
    if node_spec != "sequential":  # a node executor by name ("threaded", "async"), made in this worker
        from ..engine import HypernodesEngine
        from ._drive import run_items

        module = _core.module(core)
        with HypernodesEngine(node_executor=node_spec, max_workers=max_workers) as engine:
            items = Items(map_slots, columns, product)
            runner = engine._node_runner(plan, module)
            return run_items(engine, runner, plan, template, items, lo, hi, base, core=module)
    loop = _WorkerLoop()
    try:
        funcs = tuple(AwaitOn(f, loop) if a else f for f, a in zip(plan.funcs, plan.is_async))
        return _core.module(core).run_batch(plan, funcs, list(template), map_slots, columns, lo, hi, product, base)
    finally:
        loop.close()


def remote_node(token: str, payload: bytes, k: int, args: tuple[Any, ...]) -> Any:
    """Worker side of a node task: node ``k`` of the pickled nodes, called on ``args``."""
    nodes: tuple[Node, ...] = _load(token, payload)
    loop = _WorkerLoop()  # started only if the node is async
    try:
        return AwaitOn(nodes[k]._call, loop)(*args)
    finally:
        loop.close()
