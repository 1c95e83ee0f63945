"""Process maps: slices of items run by worker processes, both sides of the boundary.

Parent side (:func:`map_remote`): the plan, the broadcast inputs and what the
workers need to run the nodes (:class:`RemoteMap`) are pickled once per call;
each task carries that payload's bytes (a large payload is written once to a file
each worker reads once, see :mod:`.spill`) and its own slice of the items (zip
columns cut to its rows, a column of plain ints or floats as one buffer, see
:class:`~.payload.ShippedItems`; product columns whole). Slices come back as one column per
output (a column of plain ints or floats as one buffer, see
:class:`~.payload.SliceResult`), with the slice's events when the call has an
observer; as each slice arrives, its events are replayed on the calling thread and
its values put in place in the call's result lists. The worker pickles what it
sends back itself (an unpicklable output is named there); an exception that pickle
cannot rebuild here comes back as a :class:`~hypernodes.errors.RemoteError`.

Worker side (:func:`remote_batch`): the slice runs on the caller's core, through
the cores' batch loop or, with a node executor by name ("threaded", "async"),
through a node runner made in the worker; no engine is built there.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor
from types import ModuleType
from typing import Any

from .. import _core
from .._call import Items, MapCall
from .._errors import add_note
from .._events import EVENTS_ATTR, Lookup, RemoteObserver
from .._graph import Plan
from .._resources import Resource
from ..errors import WorkerDied
from ..executors import _loky
from ..executors._loop import CoroutineRunner, LoopThread
from ..executors._worker import check_parent
from ..executors.backends import Sequential, backend_for
from ..failures import Failure, unique
from .crashes import rerun
from .gather import died_note, gather
from .hits import Hits
from .items import run_items
from .nodes import node_runner
from .payload import (
    RESULT_ADVICE,
    ShippedItems,
    SliceResult,
    Spilled,
    WorkerLoop,
    carried,
    dumps,
    load,
    portable,
    slice_result,
    unpicklable_index,
)
from .runtime import FuncTable, Runtime
from .spill import payload_for

__all__ = ["RemoteMap", "map_remote", "remote_batch"]


_CRASHED = "(worker process died)"
"""The node name of a crashing item's Failure: which of its nodes was running is not known."""

PROGRESS_SLICES = 32
"""An observed process map is cut into at least this many slices, so that its callbacks (a progress
bar) hear from the workers every few percent of the map rather than once per worker's share (the
extra tasks cost ~0.3 ms each, only when a callback listens)."""


class RemoteMap:
    """What every worker of one process map needs; pickled once per call."""

    __slots__ = ("core", "keep_going", "lookup", "max_workers", "node_backend", "observer", "plan", "template")

    def __init__(
        self,
        plan: Plan,
        template: list[Any],
        node_backend: str,
        max_workers: int | None,
        core: str,
        observer: RemoteObserver | None,
        lookup: Lookup | None,
        keep_going: bool = False,
    ) -> None:
        self.plan = plan
        self.template = template
        self.node_backend = node_backend  # a portable backend's name, made anew in each worker
        self.max_workers = max_workers
        self.core = core  # the IMPLEMENTATION the caller runs on
        self.observer = observer  # records the slice's events, sent back with its results
        self.lookup = lookup
        self.keep_going = keep_going  # on_error="continue": failures come back as markers in the columns

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)


def map_remote(runtime: Runtime, call: MapCall, executor: Executor, hits: Hits | None = None) -> list[list[Any]]:
    """The items of ``call`` on the remote ``executor``; one list per output.

    With ``hits`` (:func:`~.hits.cached_first`), only its runs of items are sent, and
    their values fill its results.
    """
    observer = call.observer
    spec = RemoteMap(
        call.plan,
        call.values,
        runtime.nodes.name,
        runtime.max_workers,
        runtime.core.IMPLEMENTATION,
        None if observer is None else observer.remote(),
        call.lookup,
        call.keep_going,
    )
    workers, per_worker = runtime.items.workers(executor), runtime.items.tasks_per_worker
    if observer is not None:  # progress moves as slices arrive: at least every 1/PROGRESS_SLICES of the map
        per_worker = max(per_worker, -(-PROGRESS_SLICES // workers))
    if hits is None:
        slices = call.items.split(workers, per_worker)
    else:
        slices = _split_runs(call.items, hits.runs, workers * per_worker)
    with contextlib.ExitStack() as stack:
        try:  # a large payload: a file each worker maps once, not bytes in every task
            token, payload = stack.enter_context(payload_for(executor, spec))
        except Exception as exc:
            culprits = ", ".join(_unpicklable(call)) or "a node or an input"
            given = runtime.items.spec  # as the user wrote it: "parallel", or the executor's type
            shown = f'"{given}"' if isinstance(given, str) else repr(runtime.items)
            add_note(
                exc,
                f"hypernodes: {culprits} cannot be pickled. A map on {shown} sends the "
                "pipeline's nodes and its inputs to worker processes, so they must be picklable (with "
                "cloudpickle). Nothing was run.",
            )
            raise

        def tasks(pieces: list[Items]) -> list[tuple[Any, ...]]:
            return [(token, payload, part) for part in _shipped(runtime.core, call.items, pieces)]

        return _gather_slices(runtime, call, executor, slices, tasks, None if hits is None else hits.results)


def _split_runs(items: Items, runs: list[tuple[int, int]], tasks: int) -> list[Items]:
    """About ``tasks`` slices of the ``runs`` of ``items``, each run cut in proportion to its length."""
    total = sum(hi - lo for lo, hi in runs)
    return [s for lo, hi in runs for s in items.between(lo, hi).split(max(1, tasks * (hi - lo) // total))]


def _gather_slices(
    runtime: Runtime,
    call: MapCall,
    executor: Executor,
    slices: list[Items],
    tasks: Callable[[list[Items]], list[tuple[Any, ...]]],
    results: list[list[Any]] | None,
) -> list[list[Any]]:
    """Run the ``slices`` (``tasks`` gives their task arguments), putting each slice's values in place as it arrives.

    When a worker of our pool dies, the slices whose results did not come back run
    again on fresh workers until the items that kill their worker are found
    (:mod:`.crashes`): each is the item's :class:`~hypernodes.failures.Failure` (a
    :class:`~hypernodes.errors.WorkerDied`) with ``on_error="continue"``, or the
    error raised (naming it) otherwise.
    """
    observer = call.observer
    bisects = _loky.is_ours(executor)  # a pool of ours is replaced when broken; an executor of the user's is not

    def items_of(piece: Items) -> str:
        return f"map items {piece.base + piece.lo}..{piece.base + piece.hi - 1}"

    def on_error(exc: BaseException, piece: Items) -> None:
        if not (bisects and isinstance(exc, BrokenExecutor)):
            died_note(exc, items_of(piece))
        events = getattr(exc, EVENTS_ATTR, None)
        if observer is not None and events is not None:
            observer.replay(events)

    # Each slice's values go into place as it arrives, while the workers run the rest:
    # no joining pass after the last one.
    start = call.items.lo
    if results is None:
        results = [[None] * len(call.items) for _ in call.plan.result_names]
    arrived = [False] * len(slices)

    def on_result(data: SliceResult, piece: Items) -> None:
        try:
            columns, events = data.unpickled()
        except Exception as exc:
            add_note(
                exc,
                f"hypernodes: the results of {items_of(piece)} came back from a worker process but cannot be "
                "unpickled here (is every class they use importable in this process?).",
            )
            raise
        if observer is not None:
            observer.replay(events)
        data.place(columns, results, piece.lo - start, runtime.core.unpack_column)

    def on_slice(data: SliceResult, i: int) -> None:
        on_result(data, slices[i])
        arrived[i] = True

    try:
        gather(executor, remote_batch, tasks(slices), lambda exc, i: on_error(exc, slices[i]), on_result=on_slice)
    except BrokenExecutor as exc:
        if not (bisects and _loky.broken(executor)):
            raise
        died = exc

        def on_crash(piece: Items) -> None:
            item = piece.base + piece.lo
            error = WorkerDied(item)
            if not call.keep_going:
                raise error from died
            failure = Failure(error, _CRASHED, item)
            for out in results:
                out[piece.lo - start] = failure

        def pool() -> Executor:
            fresh = runtime.items.executor()  # our pool, a broken one replaced
            assert fresh is not None
            return fresh

        unfinished = [s for s, done in zip(slices, arrived) if not done]
        workers = runtime.items.workers(executor)
        if not rerun(unfinished, pool, tasks, remote_batch, on_result, on_error, on_crash, workers):
            warnings.warn(
                f"hypernodes: a worker process died while running this map ({type(died).__name__}); {len(unfinished)} "
                "slices of items whose results had not come back ran again on fresh workers and all completed, so "
                "the results are complete (the worker was likely killed from outside, e.g. by the OS for lack of "
                "memory). The nodes of those items ran twice: side effects included.",
                RuntimeWarning,
                stacklevel=2,
            )
    return results


def _shipped(core: ModuleType, items: Items, slices: list[Items]) -> list[Items] | list[ShippedItems]:
    """What each slice sends to its worker: zip columns of plain numbers packed once, then cut per slice."""
    if not items.product:
        # a numpy or Arrow column is not packed: its slices pickle as their buffers (_columns.LazyColumn)
        packed = [core.pack_column(c) for c in items.sources]
        if any(p is not None for p in packed):
            return [ShippedItems(s, packed) for s in slices]
    return [s.detached() for s in slices]


def remote_batch(token: str, payload: bytes | Spilled, part: Items | ShippedItems) -> SliceResult:
    """Worker side of a map slice: ``items`` through the pipeline; one column per output, ready to travel.

    Columns of plain ints or floats travel as one buffer each; the rest (and, with an
    observing caller, the slice's events) is pickled here (:func:`~.payload.slice_result`).
    A failure carries the events recorded before it on the exception (``EVENTS_ATTR``).
    The results are pickled here, not by the executor after the task returns, so a value
    that cannot be pickled (a client, a lock) is named with its output, node and item.
    An exception that pickle could not rebuild in the caller's process is raised as a
    :class:`~hypernodes.errors.RemoteError`.
    """
    check_parent()  # a slice queued before the caller died never starts
    items = part.items() if isinstance(part, ShippedItems) else part
    try:
        spec, core, result = _remote_batch(token, payload, items)
        return _results(core, spec.plan, result, spec.observer is not None, items.base + items.lo)
    except Exception as exc:
        # The events are checked apart from the exception: they may hold it (an error
        # event), or a value the callbacks asked for that cannot travel.
        events = vars(exc).pop(EVENTS_ATTR, None) if hasattr(exc, "__dict__") else None
        stand_in = portable(exc)
        error = exc if stand_in is None else stand_in
        if events is not None:
            events = carried(events, exc, error)
            if events is None:
                add_note(error, "hypernodes: the callback events of this slice cannot be pickled; they are lost.")
            else:
                setattr(error, EVENTS_ATTR, events)
        if stand_in is None:
            raise
        raise stand_in from exc


def _remote_batch(token: str, payload: bytes | Spilled, items: Items) -> tuple[RemoteMap, ModuleType, Any]:
    spec: RemoteMap = load(token, payload)
    core = _core.module(spec.core)
    recorder = None if spec.observer is None else spec.observer.remote()  # one per task: tasks may share a process
    nodes = backend_for(spec.node_backend, "node", spec.max_workers)
    # Blocking loops await async nodes on one loop: this thread's own when the nodes run
    # here, a loop thread when node tasks (threads) may await at once.
    loop: WorkerLoop | LoopThread = WorkerLoop() if isinstance(nodes, Sequential) else LoopThread("hypernodes-worker")
    runner: CoroutineRunner = loop
    funcs = FuncTable(runner)
    try:
        runtime = Runtime(nodes, Sequential("sequential"), funcs, spec.max_workers, core)
        node_level = node_runner(nodes, spec.plan, funcs(spec.plan), core, recorder, spec.lookup)
        columns = run_items(
            runtime, node_level, spec.plan, spec.template, items, recorder, spec.lookup, None, spec.keep_going
        )
    except BaseException as exc:
        if recorder is not None:
            # an exception that takes no attributes loses its events, never itself
            with contextlib.suppress(Exception):
                setattr(exc, EVENTS_ATTR, recorder.drain())
        raise
    finally:
        try:
            nodes.shutdown()
        finally:
            loop.close()
    events = None if recorder is None else recorder.drain()
    if spec.keep_going:
        assert columns is not None  # no stop flag here
        events = _portable_failures(core, columns, events)
    return spec, core, (columns if recorder is None else (columns, events))


def _portable_failures(core: ModuleType, columns: list[list[Any]], events: Any) -> Any:
    """Make every error marker of ``columns`` fit to travel back; the events, with the same swaps.

    A marker's traceback is formatted here (its frames stay in this process), and an
    exception pickle cannot rebuild in the caller is replaced, in the marker and in
    the events that report it, by its :class:`~hypernodes.errors.RemoteError` stand-in.
    """
    for failure in unique(core.find_failures(columns)):
        _ = failure.traceback  # formatted now, from the original exception
        stand_in = portable(failure.error)  # type: ignore[arg-type]
        if stand_in is not None:
            if events is not None:
                # the events that cannot travel even so are lost, never the results
                events = carried(events, failure.error, stand_in) or []
            failure.error = stand_in
    return events


def _results(core: ModuleType, plan: Plan, result: Any, with_events: bool, first: int) -> SliceResult:
    """``result`` ready to send back; on failure, the note names the output, node and item that cannot be pickled."""
    columns, events = result if with_events else (result, None)
    try:
        return slice_result(core.pack_column, columns, events)
    except Exception as exc:
        wiring = plan.wiring
        producer = {slot: wiring.names[k] for k in range(plan.n_nodes) for slot in wiring.outs[k]}
        for name, slot, column in zip(plan.result_names, wiring.result_slots, columns):
            i = unpicklable_index(column)
            if i >= 0:
                where = f"output `{name}` of node `{producer.get(slot, '?')}`, map item {first + i}"
                add_note(exc, f"hypernodes: {where}, cannot be pickled. {RESULT_ADVICE}")
                break
        else:
            if with_events:  # the outputs travel: a value the callbacks asked for does not
                add_note(
                    exc,
                    "hypernodes: the node events recorded for this call's callbacks (with the values they "
                    "asked for) cannot be pickled to send back from the worker process.",
                )
        raise


def _unpicklable(call: MapCall) -> list[str]:
    """What in ``call`` fails to pickle: ``input `x```, ``node `f```. Only for the error message."""
    items = call.items
    mapped = dict(zip(items.map_slots, items.columns))
    what = [(f"input `{name}`", mapped.get(slot, call.values[slot])) for name, slot in call.plan.input_pairs]
    what += [(f"node `{n.name}`", n) for n in call.plan.nodes]
    what = [
        (f"{label} (a Resource: its factory or arguments)" if isinstance(v, Resource) else label, v)
        for label, v in what
    ]
    found = []
    for label, value in what:
        try:
            dumps(value)
        except Exception:
            found.append(label)
    return found
