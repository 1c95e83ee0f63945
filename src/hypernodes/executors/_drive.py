"""How the engine drives executors: nodes as they become ready, items as pre-planned slices.

Node level (:class:`NodeRunner`): the compiled core's ``ReadyQueue`` counts each
node's unfinished inputs; every node whose inputs are all done is submitted at
once, and each completion releases its successors. A slow node holds back only
the nodes that read its outputs. When exactly one node is ready and nothing is
in flight, an in-process runner calls it on the calling thread (nothing could
overlap with it), which makes a chain cost no executor round trips.

Map level (:func:`run_map`): ``core.plan_batches`` cuts the items into
contiguous slices, every worker gets work, and each task runs its whole slice
through the pipeline on the compiled batch loop. Threads get up to
:data:`THREAD_TASKS_PER_WORKER` slices per worker (one item per slice when there
are no more items than that: blocking I/O wants it), processes
:data:`PROCESS_TASKS_PER_WORKER`. Slices come back as one list per output and
are concatenated in input order.

Failure: the first task to fail raises its own exception (noted with the node
and the item); every task not yet started is cancelled and the call returns
without waiting for the ones still running.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ThreadPoolExecutor
from functools import partial
from queue import SimpleQueue
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import _core
from ..errors import add_note, note_node
from . import _loky, _tasks
from ._async import AsyncExecutor
from ._guard import as_task_of, is_task_of
from ._tasks import Items

if TYPE_CHECKING:
    from .._graph import Plan
    from ..engine import HypernodesEngine
    from ..pipeline import _MapCall

__all__ = [
    "PROCESS_TASKS_PER_WORKER",
    "THREAD_TASKS_PER_WORKER",
    "NodeRunner",
    "in_process",
    "run_items",
    "run_map",
    "runs_on_current_thread",
    "worker_count",
]

THREAD_TASKS_PER_WORKER = 4
"""Slices per thread: enough to even out items of uneven cost, few enough to amortise a task."""

PROCESS_TASKS_PER_WORKER = 4
"""Slices per process: each carries the pickled plan and its share of the columns. Four
per worker let a worker that finishes early take more (loky hands tasks to free workers),
while the per-task cost (~0.3 ms) stays small against tiny items' pickling."""

CHUNK_S = 0.02
"""A thread slice runs in chunks of about this long and checks between chunks whether the
call has failed or was interrupted; a slice that is no longer wanted stops there."""

MAX_CHUNK = 4096
"""The most items in one chunk: tiny items reach it (a check per 4,096 costs nothing), and
items that turn slow after fast ones delay a stop by at most that many."""

# Python 3.14's subinterpreter pool subclasses ThreadPoolExecutor but shares no objects.
_NOT_IN_PROCESS: tuple[type, ...] = tuple(
    c for c in [getattr(concurrent.futures, "InterpreterPoolExecutor", None)] if isinstance(c, type)
)


def in_process(executor: Executor) -> bool:
    """Whether tasks run in this interpreter and may share the call's values (threads).

    Only thread pools and :class:`AsyncExecutor` are known to; every other
    executor (loky, processes, Dask, subinterpreters, anything else) gets
    pickled, self-contained tasks.
    """
    return isinstance(executor, AsyncExecutor) or (
        isinstance(executor, ThreadPoolExecutor) and not isinstance(executor, _NOT_IN_PROCESS)
    )


def worker_count(executor: Executor) -> int:
    """How many tasks ``executor`` runs at once: its ``max_workers``, a Dask client's
    worker threads, or else the CPU count."""
    for attr in ("max_workers", "_max_workers"):
        n = getattr(executor, attr, None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    nthreads = getattr(getattr(executor, "_client", None), "nthreads", None)  # distributed.Client.get_executor()
    if callable(nthreads):
        try:
            n = sum(nthreads().values())
        except Exception:  # a client that cannot tell (closed, not connected): fall back
            n = 0
        if isinstance(n, int) and n > 0:
            return n
    return os.cpu_count() or 1


def runs_on_current_thread(executor: Executor) -> bool:
    """Whether the calling thread is running a task of ``executor`` (or is its event loop).

    A task that submits to its own pool and waits could wait forever behind
    itself (a nested pipeline on the pool running the outer items); the engine
    then runs that level inline instead.
    """
    if is_task_of(executor):
        return True
    return isinstance(executor, AsyncExecutor) and executor._runs_on(threading.current_thread())


def _put(queue: SimpleQueue[int], index: int, _future: Future[Any]) -> None:
    queue.put(index)


def _died_note(exc: BaseException, what: str) -> None:
    if isinstance(exc, BrokenExecutor):
        add_note(
            exc,
            f"hypernodes: a worker process died while running {what}. Likely causes: a crash in native code "
            "(a segfault), os._exit() or sys.exit() called in a node, or the OS killing the worker for lack of "
            "memory. The next call starts fresh workers.",
        )


def _gather(
    executor: Executor,
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    on_error: Callable[[BaseException, int], None] | None = None,
    stop: threading.Event | None = None,
) -> list[Any]:
    """Submit ``fn(*args)`` for each of ``calls``; their results in order.

    Returns as soon as one fails (or the caller is interrupted), raising its
    exception (after ``on_error(exc, index)`` annotates it): every other task is
    cancelled if not yet started, and ``stop`` is set for the running ones that
    check it. Tasks still running in a pool of worker processes are handed to
    :func:`_loky.abandon`, so shutting that pool down does not wait for them.
    """
    done: SimpleQueue[int] = SimpleQueue()
    futures: list[Future[Any]] = []
    with _loky.in_use(executor):
        try:
            for i, args in enumerate(calls):
                futures.append(_submit(executor, fn, *args))
                futures[-1].add_done_callback(partial(_put, done, i))
            results: list[Any] = [None] * len(futures)
            for _ in range(len(futures)):
                i = done.get()
                try:
                    results[i] = futures[i].result()
                except Exception as exc:
                    if on_error is not None:
                        on_error(exc, i)
                    raise
            return results
        except BaseException:
            if stop is not None:
                stop.set()
            _cancel(executor, futures)
            raise


def _submit(executor: Executor, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
    try:
        return executor.submit(fn, *args)
    except Exception as exc:
        add_note(
            exc,
            f"hypernodes: {type(executor).__name__}.submit() raised this, so the task never ran "
            "(an executor refuses tasks after its shutdown(), for one).",
        )
        raise


def _cancel(executor: Executor, futures: Iterable[Future[Any]]) -> None:
    """Cancel the tasks not started; hand the ones still running to :func:`_loky.abandon`."""
    running = [f for f in futures if not f.cancel() and not f.done()]
    if running:
        _loky.abandon(executor, running)


def _concat(parts: list[list[list[Any]]]) -> list[list[Any]]:
    if len(parts) == 1:
        return parts[0]
    columns: list[list[Any]] = [[] for _ in parts[0]]
    for part in parts:
        for column, piece in zip(columns, part):
            column.extend(piece)
    return columns


class NodeRunner:
    """Runs the nodes of one item on a node executor, each as soon as its inputs are done."""

    __slots__ = ("core", "executor", "funcs", "is_async_executor", "payload", "plan", "remote", "steps")

    def __init__(
        self, engine: HypernodesEngine, plan: Plan, executor: Executor, core: ModuleType | None = None
    ) -> None:
        self.core = _core if core is None else core  # a worker process uses its caller's core
        self.plan = plan
        self.steps = plan.wiring
        self.executor = executor
        self.remote = not in_process(executor)
        self.is_async_executor = isinstance(executor, AsyncExecutor)
        self.funcs = engine._funcs(plan)  # for this process's threads: async nodes awaited on the engine loop
        # Pickled per call, not cached: cloudpickle copies a notebook function's globals,
        # and a later call must see the notebook's later values.
        self.payload = _tasks.dumps(plan.nodes) if self.remote else None

    def _submit(self, k: int, values: list[Any], item: int) -> Future[Any]:
        steps = self.steps
        if self.payload is not None:
            token, data = self.payload
            return _submit(self.executor, _tasks.remote_node, token, data, k, tuple(values[s] for s in steps.args[k]))
        if self.is_async_executor and steps.is_async[k]:  # a coroutine on the executor's own loop
            return _submit(self.executor, _tasks.acall_node, steps, self.plan.funcs, values, k, item)
        return _submit(self.executor, as_task_of, self.executor, _tasks.call_node, steps, self.funcs, values, k, item)

    def _finish(self, k: int, future: Future[Any], values: list[Any], item: int) -> None:
        if not self.remote:
            future.result()  # the task stored the outputs, or noted and raised the node's error
            return
        name = self.steps.names[k]
        try:
            _tasks.store(self.steps, k, future.result(), values)
        except BrokenExecutor as exc:
            _died_note(exc, f"node `{name}`" + (f", map item {item}" if item >= 0 else ""))
            raise
        except Exception as exc:
            note_node(exc, name, item)
            raise

    def run(self, values: list[Any], item: int = -1) -> None:
        """Run every node on ``values`` (filled in place); ``item`` numbers error notes."""
        if self.remote:
            with _loky.in_use(self.executor):  # a pool of ours is not stopped under this call
                self._run(values, item)
        else:
            self._run(values, item)

    def _run(self, values: list[Any], item: int) -> None:
        steps = self.steps
        queue = self.core.ReadyQueue(self.plan)
        done: SimpleQueue[int] = SimpleQueue()
        running: dict[int, Future[Any]] = {}
        inline = not self.remote
        try:
            while True:
                ready = queue.get_ready()
                if inline and len(ready) == 1 and not running:
                    _tasks.call_node(steps, self.funcs, values, ready[0], item)
                    queue.done(ready[0])
                    continue
                for k in ready:
                    future = self._submit(k, values, item)
                    running[k] = future
                    future.add_done_callback(partial(_put, done, k))
                if not running:
                    return
                k = done.get()
                self._finish(k, running.pop(k), values, item)
                queue.done(k)
        except BaseException:
            _cancel(self.executor, running.values())
            raise


def run_items(
    engine: HypernodesEngine,
    runner: NodeRunner | None,
    plan: Plan,
    template: Sequence[Any],
    items: Items,
    lo: int,
    hi: int,
    base: int = 0,
    stop: threading.Event | None = None,
    core: ModuleType | None = None,
) -> list[list[Any]] | None:
    """Items ``lo..hi-1`` on this thread; one list per output. ``base`` numbers error notes.

    With ``stop``, the items run in chunks of about :data:`CHUNK_S` each, and the
    slice returns None (its result unwanted) once ``stop`` is set. ``core``: the
    scheduling core to run on (a worker process uses its caller's).
    """
    if runner is None:
        funcs = engine._funcs(plan)
        run_batch: Callable[..., list[list[Any]]] = (_core if core is None else core).run_batch
        slots, columns, product = items.map_slots, items.columns, items.product

        def run(i: int, j: int) -> list[list[Any]]:
            return run_batch(plan, funcs, list(template), slots, columns, i, j, product, base)

        return run(lo, hi) if stop is None else _run_chunked(run, lo, hi, stop)
    result_slots = runner.steps.result_slots
    results: list[list[Any]] = [[None] * (hi - lo) for _ in result_slots]
    for i in range(lo, hi):
        if stop is not None and stop.is_set():
            return None
        values = list(template)
        items.fill(values, i)
        runner.run(values, base + i)
        for out, slot in zip(results, result_slots):
            out[i - lo] = values[slot]
    return results


def _run_chunked(
    run: Callable[[int, int], list[list[Any]]], lo: int, hi: int, stop: threading.Event
) -> list[list[Any]] | None:
    # The first chunk is one item; each next one is sized from the last one's pace to take
    # about CHUNK_S, growing at most 16x a step and to MAX_CHUNK items (an unusually fast
    # first item must not commit a slow slice to one long chunk). Slow items are then
    # checked between every item, tiny ones every MAX_CHUNK items after a few steps (the
    # check and the extra batch calls cost well under 1% of the work).
    parts: list[list[list[Any]]] = []
    size = 1
    i = lo
    while i < hi:
        if stop.is_set():
            return None
        j = min(hi, i + size)
        started = time.perf_counter()
        parts.append(run(i, j))
        elapsed = time.perf_counter() - started
        size = max(1, min(16 * size, MAX_CHUNK, int(size * CHUNK_S / elapsed) if elapsed > 0 else MAX_CHUNK))
        i = j
    return _concat(parts) if parts else run(lo, hi)


def run_map(engine: HypernodesEngine, call: _MapCall, executor: Executor | None) -> Any:
    """The items of ``call`` on the map ``executor`` (None: this thread); one list per output."""
    if executor is not None and not in_process(executor):
        return _map_remote(engine, call, executor)  # each worker runs the nodes of its items itself
    plan = call.plan
    runner = engine._node_runner(plan)
    items = Items(call.map_slots, call.columns, call.product)
    if executor is None:
        return run_items(engine, runner, plan, call.values, items, 0, call.n_items)
    if isinstance(executor, AsyncExecutor) and plan.has_async and runner is None:
        slices = _core.plan_batches(call.n_items, executor.max_workers)
        coroutines = [(plan.wiring, plan.funcs, call.values, items, lo, hi, executor._offload) for lo, hi in slices]
        return _concat(_gather(executor, _tasks.run_slice_async, coroutines))
    slices = _core.plan_batches(call.n_items, worker_count(executor), THREAD_TASKS_PER_WORKER)
    stop = threading.Event()
    calls = [(executor, run_items, engine, runner, plan, call.values, items, lo, hi, 0, stop) for lo, hi in slices]
    return _concat(_gather(executor, as_task_of, calls, stop=stop))


def _map_remote(engine: HypernodesEngine, call: _MapCall, executor: Executor) -> Any:
    plan = call.plan
    spec = (plan, call.values, call.map_slots, call.product, engine.node_executor, engine.max_workers)
    try:
        token, payload = _tasks.dumps((*spec, _core.IMPLEMENTATION))
    except Exception as exc:
        culprits = ", ".join(_unpicklable(call)) or "a node or an input"
        add_note(
            exc,
            f"hypernodes: {culprits} cannot be pickled. A map on {type(executor).__name__} sends the "
            "pipeline's nodes and its inputs to worker processes, so they must be picklable (with "
            "cloudpickle). Nothing was run.",
        )
        raise
    slices = _core.plan_batches(call.n_items, worker_count(executor), PROCESS_TASKS_PER_WORKER)
    if call.product:  # the columns are short (their product is long): every slice gets all of them
        calls = [(token, payload, call.columns, lo, hi, 0) for lo, hi in slices]
    else:
        calls = [(token, payload, tuple(c[lo:hi] for c in call.columns), 0, hi - lo, lo) for lo, hi in slices]

    def on_error(exc: BaseException, i: int) -> None:
        lo, hi = slices[i]
        _died_note(exc, f"map items {lo}..{hi - 1}")

    return _concat(_gather(executor, _tasks.remote_batch, calls, on_error))


def _unpicklable(call: _MapCall) -> list[str]:
    """What in ``call`` fails to pickle: ``input `x```, ``node `f```. Only for the error message."""
    mapped = dict(zip(call.map_slots, call.columns))
    what = [(f"input `{name}`", mapped.get(slot, call.values[slot])) for name, slot in call.plan.input_pairs]
    what += [(f"node `{n.name}`", n) for n in call.plan.nodes]
    found = []
    for label, value in what:
        try:
            _tasks.dumps(value)
        except Exception:
            found.append(label)
    return found
