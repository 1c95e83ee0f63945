"""Node level: the nodes of one item on a node executor, each as soon as its inputs are done.

The compiled core's ``ReadyQueue`` counts each node's unfinished inputs; every node
whose inputs are all done is submitted at once, and each completion releases its
successors. A slow node holds back only the nodes that read its outputs. When
exactly one node is ready and nothing is in flight, an in-process runner calls it
on the calling thread (nothing could overlap with it), so a chain costs no
executor round trips.

:func:`call_node` / :func:`acall_node` are the one place (outside the cores' own
loops) where a node is called, its outputs stored and its error noted.
"""

from __future__ import annotations

import inspect
import pickle
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future
from contextvars import copy_context
from functools import partial
from queue import SimpleQueue
from time import perf_counter
from types import CoroutineType, ModuleType
from typing import Any

from .._call import MapCall, RunCall
from .._errors import coroutine_returned, note_node, unpack_row
from .._events import EVENTS_ATTR, Observer
from .._graph import Wiring
from .._policy import bind
from ..executors import _loky
from ..executors._async import AsyncExecutor
from ..executors._guard import as_task_in
from ..executors.backends import Backend
from ..failures import Failure, failure_of
from .gather import NodeCancelled, cancel, died_note, submit
from .node_task import RETRIES_ATTR, remote_node
from .payload import dumps
from .tasks import NodeTask

__all__ = ["NodeRunner", "acall_node", "call_node", "marker_in", "node_runner", "outputs_of", "store", "store_marker"]


def store(steps: Wiring, k: int, result: Any, values: list[Any]) -> None:
    """Put node ``k``'s ``result`` into its output slots (unpacking a tuple output).

    Raises:
        NodeDefinitionError: the result is a coroutine (async nodes' results come awaited).
        OutputArityError: a tuple-output node's result does not unpack into its outputs.
    """
    if type(result) is CoroutineType:
        raise coroutine_returned(result, steps.names[k])
    outs = steps.outs[k]
    if steps.unpack[k]:
        for slot, value in zip(outs, unpack_row(result, len(outs), steps.names[k])):
            values[slot] = value
    else:
        values[outs[0]] = result


def store_marker(steps: Wiring, k: int, marker: Failure, values: list[Any]) -> None:
    """Put the error marker ``marker`` into every output slot of node ``k`` (``on_error="continue"``)."""
    for slot in steps.outs[k]:
        values[slot] = marker


def marker_in(values: list[Any], slots: Sequence[int]) -> Failure | None:
    """The first error marker among ``values[slots]`` (a node's arguments); None if there is none."""
    for slot in slots:
        value = values[slot]
        if type(value) is Failure:
            return value
    return None


def _failed(steps: Wiring, k: int, item: int, exc: Exception, values: list[Any]) -> Failure:
    marker = failure_of(exc, steps.names[k], item)
    store_marker(steps, k, marker, values)
    return marker


def outputs_of(steps: Wiring, k: int, values: list[Any]) -> Any:
    """What node ``k`` returned, read back from its output slots (the inverse of :func:`store`)."""
    outs = steps.outs[k]
    return tuple(values[s] for s in outs) if steps.unpack[k] else values[outs[0]]


def call_node(
    steps: Wiring,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    k: int,
    item: int,
    observer: Observer | None = None,
    keep_going: bool = False,
) -> Failure | None:
    """Run node ``k`` on ``values`` in place, reporting it to ``observer``.

    ``keep_going``: the node's exception becomes the error marker stored in its
    outputs and returned (None: it succeeded), instead of being raised.
    """
    events = observer if observer is not None and observer.node_events else None
    args = tuple([values[s] for s in steps.args[k]])
    if events is not None:
        events.node_start(k, item, args)
        started = perf_counter()
    try:
        result = funcs[k](*args)
        store(steps, k, result, values)
    except Exception as exc:
        note_node(exc, steps.names[k], item)
        if observer is not None:
            observer.node_error(k, item, exc)
        if keep_going:
            return _failed(steps, k, item, exc, values)
        raise
    if events is not None:
        events.node_end(k, item, perf_counter() - started, result)
    return None


async def acall_node(
    steps: Wiring,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    k: int,
    item: int,
    observer: Observer | None = None,
    offload: Callable[..., Any] | None = None,
    keep_going: bool = False,
) -> Failure | None:
    """Await node ``k`` on ``values`` in place, on an event loop; reports to ``observer``.

    A sync node goes through ``offload(f, *args)`` (a thread pool, so that a
    blocking one cannot stall the loop) when given, else it is called here.
    ``keep_going``: as for :func:`call_node` (a ``CancelledError`` is never kept).
    """
    events = observer if observer is not None and observer.node_events else None
    args = tuple([values[s] for s in steps.args[k]])
    seconds = -1.0
    if events is not None:
        events.node_start(k, item, args)
        started = perf_counter()
    try:
        if offload is not None and not steps.is_async[k]:
            if events is None:
                result = await offload(funcs[k], *args)
            else:  # timed in the thread: the time spent waiting for one is not the node's
                result, seconds = await offload(_timed, funcs[k], *args)
        else:
            result = funcs[k](*args)
            if inspect.isawaitable(result):
                result = await result
        store(steps, k, result, values)
    except Exception as exc:
        note_node(exc, steps.names[k], item)
        if observer is not None:
            observer.node_error(k, item, exc)
        if keep_going:
            return _failed(steps, k, item, exc, values)
        raise
    except BaseException as exc:  # a CancelledError is one; not noted (nor reported) unless the node raised it
        if _raised_by_node(exc):
            note_node(exc, steps.names[k], item)
            if observer is not None:
                observer.node_error(k, item, exc)
            raise NodeCancelled(exc) from None
        raise
    if events is not None:
        events.node_end(k, item, perf_counter() - started if seconds < 0 else seconds, result)
    return None


def _timed(func: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(func(*args), seconds it took)``."""
    started = perf_counter()
    result = func(*args)
    return result, perf_counter() - started


def _raised_by_node(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``CancelledError`` the node raised, not a cancellation of the running task.

    A task being cancelled (by a failed call, or the loop's shutdown) must end
    cancelled. ``Task.cancelling()`` tells them apart (3.11+); on 3.10 every
    ``CancelledError`` counts as the node's.
    """
    import asyncio  # loaded already: this runs on an event loop

    if not isinstance(exc, asyncio.CancelledError):
        return False
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is None or not cancelling()


class NodeRunner:
    """Runs the nodes of one item on a node executor, each as soon as its inputs are done."""

    __slots__ = (
        "afuncs",
        "core",
        "executor",
        "funcs",
        "inherit",
        "is_async_executor",
        "keep_going",
        "lookup",
        "observer",
        "payload",
        "plan",
        "steps",
    )

    def __init__(
        self,
        call: RunCall | MapCall,
        executor: Executor,
        remote: bool,
        funcs: Sequence[Callable[..., Any]],
        core: ModuleType,
    ) -> None:
        plan, observer, lookup = call.plan, call.observer, call.lookup
        self.core = core
        self.plan = plan
        self.steps = plan.wiring
        self.executor = executor
        self.is_async_executor = isinstance(executor, AsyncExecutor)
        self.funcs = funcs  # for this process's threads: async nodes awaited on the engine loop
        self.afuncs = bind(plan.funcs, observer)  # for the executor's own loop: coroutines awaited there
        self.observer = observer
        self.lookup = lookup
        self.keep_going = call.keep_going  # on_error="continue": a failing node leaves its marker, the item goes on
        # A lookup may wrap what runs elsewhere (a thread, a process) so that a nested pipeline
        # there sees what the call passes down (the cache): see _events.Lookup.
        self.inherit: Callable[[Any], Any] | None = None if lookup is None else lookup.inherit
        # Pickled per call, not cached: cloudpickle copies a notebook function's globals,
        # and a later call must see the notebook's later values.
        self.payload = dumps(plan.nodes) if remote else None

    def _submit(self, k: int, values: list[Any], item: int) -> Future[Any]:
        steps = self.steps
        if self.payload is not None:
            token, data = self.payload
            args = tuple(values[s] for s in steps.args[k])
            if self.observer is not None and self.observer.node_events:
                self.observer.node_start(k, item, args)
            run = remote_node if self.inherit is None else self.inherit(remote_node)
            observed = self.observer is not None  # then its retries come back too
            if self.observer is not None and self.plan.nodes[k].nested:  # and the nested call's events
                run = self.observer.nested_task(k, item, run)
            return submit(self.executor, run, NodeTask(token, data, k, steps.names[k], item, args, observed))
        keep_going = self.keep_going
        if self.is_async_executor and steps.is_async[k]:  # a coroutine on the executor's own loop (never nested)
            return submit(
                self.executor, acall_node, steps, self.afuncs, values, k, item, self.observer, None, keep_going
            )
        # In a copy of the submitting thread's context, as asyncio.to_thread runs a call: the caller's
        # context variables hold in the node (an async node's coroutine gets its copy from asyncio).
        task = as_task_in if self.inherit is None else self.inherit(as_task_in)
        return submit(
            self.executor,
            task,
            copy_context(),
            self.executor,
            call_node,
            steps,
            self.funcs,
            values,
            k,
            item,
            self.observer,
            keep_going,
        )

    def _finish(self, k: int, future: Future[Any], values: list[Any], item: int, submitted: float) -> Failure | None:
        if self.payload is None:
            try:
                marker = future.result()  # the task stored the outputs (or a marker), or noted and raised the error
            except NodeCancelled as exc:
                raise exc.error from None
            if marker is not None:
                return marker  # type: ignore[no-any-return]
        else:
            name = self.steps.names[k]
            try:
                sent = future.result()
                if self.observer is not None and self.plan.nodes[k].nested:  # see _submit
                    sent, events = sent
                    self._replay(k, item, events)
                if type(sent) is tuple:  # an observed call: (the pickled result, the retried attempts)
                    sent, attempts = sent
                    self._retried(k, item, attempts)
                result = pickle.loads(sent)  # remote_node pickled it
                store(self.steps, k, result, values)
            except BrokenExecutor as exc:
                died_note(exc, f"node `{name}`" + (f", map item {item}" if item >= 0 else ""))
                raise
            except Exception as exc:
                note_node(exc, name, item)
                if self.observer is not None:
                    if self.plan.nodes[k].nested and hasattr(exc, "__dict__"):
                        self._replay(k, item, vars(exc).pop(EVENTS_ATTR, []))
                    attempts = vars(exc).pop(RETRIES_ATTR, None) if hasattr(exc, "__dict__") else None
                    self._retried(k, item, attempts or ())
                    self.observer.node_error(k, item, exc)
                if self.keep_going:
                    return _failed(self.steps, k, item, exc, values)
                raise
            if self.observer is not None and self.observer.node_events:
                self.observer.node_end(k, item, perf_counter() - submitted, result)
        if self.lookup is not None:
            self.lookup.put(k, item, self._args(k, values), outputs_of(self.steps, k, values))
        return None

    def _replay(self, k: int, item: int, events: Any) -> None:
        # A nested pipeline's events, recorded in the worker process that ran node k's task.
        assert self.observer is not None
        if events is None:
            warnings.warn(
                f"hypernodes: the callback events of the pipeline nested in node `{self.steps.names[k]}`"
                + (f" (map item {item})" if item >= 0 else "")
                + " could not come back from the worker process (a value in them cannot be pickled):"
                " callbacks miss them.",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.observer.replay(events)

    def _retried(self, k: int, item: int, attempts: Sequence[tuple[Exception, int, float]]) -> None:
        # A node task's retried attempts in a worker process, reported here once the task is over
        # (only an observed call's tasks send them).
        assert self.observer is not None
        for exc, attempt, delay in attempts:
            self.observer.node_retry(k, item, exc, attempt, delay)

    def _args(self, k: int, values: list[Any]) -> tuple[Any, ...]:
        # A node's argument slots are final once its producers are done: read them again.
        return tuple(values[s] for s in self.steps.args[k])

    def _from_lookup(self, k: int, values: list[Any], item: int) -> bool:
        assert self.lookup is not None
        hit = self.lookup.get(k, item, self._args(k, values))
        if hit is None:
            return False
        store(self.steps, k, hit[0], values)
        if self.observer is not None and self.observer.node_events:
            self.observer.node_cached(k, item, hit[0])
        return True

    def run(self, values: list[Any], item: int = -1) -> Failure | None:
        """Run every node on ``values`` (filled in place); ``item`` numbers notes and events.

        A call that keeps going (``on_error="continue"``): a node that fails leaves its error marker
        in its outputs, a node reading a marker is not run and passes it on, and the
        item's first marker is returned (None: no node failed); otherwise the first
        failure is raised.
        """
        if self.payload is not None:
            with _loky.in_use(self.executor):  # a pool of ours is not stopped under this call
                return self._run(values, item)
        return self._run(values, item)

    def _run(self, values: list[Any], item: int) -> Failure | None:
        keep_going = self.keep_going
        steps = self.steps
        queue = self.core.ReadyQueue(self.plan)
        done: SimpleQueue[int] = SimpleQueue()
        running: dict[int, tuple[Future[Any], float]] = {}
        inline = self.payload is None
        failed: Failure | None = None
        try:
            while True:
                ready = queue.get_ready()
                passed: list[int] = []
                if keep_going and ready:  # a node reading a marker is not run: it passes the marker on
                    for k in ready:
                        marker = marker_in(values, steps.args[k])
                        if marker is not None:
                            store_marker(steps, k, marker, values)
                            failed = failed or marker
                            passed.append(k)
                    if passed:
                        queue.done(*passed)
                        ready = tuple(k for k in ready if k not in passed)
                hits: tuple[int, ...] = ()
                if self.lookup is not None and ready:
                    hits = tuple(k for k in ready if self._from_lookup(k, values, item))
                    if hits:
                        queue.done(*hits)
                        ready = tuple(k for k in ready if k not in hits)
                if inline and len(ready) == 1 and not running and not hits:
                    marker = call_node(steps, self.funcs, values, ready[0], item, self.observer, keep_going)
                    if marker is not None:
                        failed = failed or marker
                    elif self.lookup is not None:
                        self.lookup.put(
                            ready[0], item, self._args(ready[0], values), outputs_of(steps, ready[0], values)
                        )
                    queue.done(ready[0])
                    continue
                for k in ready:
                    future = self._submit(k, values, item)
                    running[k] = (future, perf_counter())
                    future.add_done_callback(partial(_put, done, k))
                if hits or passed:
                    continue  # the nodes they released are ready now: submit them before waiting
                if not running:
                    return failed
                k = done.get()
                future, submitted = running.pop(k)
                marker = self._finish(k, future, values, item, submitted)
                if marker is not None:
                    failed = failed or marker
                queue.done(k)
        except BaseException:
            cancel(self.executor, [future for future, _ in running.values()])
            raise


def _put(queue: SimpleQueue[int], index: int, _future: Future[Any]) -> None:
    queue.put(index)


def node_runner(
    backend: Backend, call: RunCall | MapCall, funcs: Sequence[Callable[..., Any]], core: ModuleType
) -> NodeRunner | None:
    """How to run the nodes of ``call``'s items on ``backend``: None for the cores' sequential loop.

    The runner reads the call's plan, observer, lookup and ``keep_going``; ``funcs`` are
    the callables for this process's threads (``FuncTable``)."""
    executor = backend.here()
    if executor is None:
        return None
    if call.plan.n_nodes < 2 and backend.in_process:
        return None  # nothing to overlap, and this thread is as good as a pool's
    return NodeRunner(call, executor, not backend.in_process, funcs, core)
