"""Process maps, the parent side: slices of items sent to worker processes, their results put in place.

:func:`map_remote` pickles what the workers need once per call (the call's remote
form, ``MapCall.remote``, in a :class:`~.slices.SlicePayload`); each task is a
:class:`~.tasks.SliceTask` carrying that payload's bytes (a large payload is written
once to a file each worker reads once, see :mod:`.spill`) and its own slice of the
items (zip columns cut to its rows, a column of plain ints or floats as one buffer,
see :class:`~.slices.ShippedItems`; product columns whole). Slices come back as one
column per output (see :class:`~.slices.SliceResult`), with the slice's events when
the call has an observer; as each slice arrives, its events are replayed on the
calling thread and its values put in place in the call's result lists. The worker
side is :func:`~.slices.remote_batch`.
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor
from types import ModuleType
from typing import Any

from .._call import Items, MapCall
from .._errors import add_note
from .._events import EVENTS_ATTR
from .._resources import Resource
from ..errors import WorkerDied
from ..executors import _loky
from ..failures import Failure
from .crashes import rerun
from .gather import died_note, gather
from .hits import Hits
from .payload import dumps
from .runtime import Runtime
from .slices import SlicePayload, SliceResult, remote_batch
from .spill import payload_for
from .tasks import ShippedItems, SliceTask

__all__ = ["map_remote"]


_CRASHED = "(worker process died)"
"""The node name of a crashing item's Failure: which of its nodes was running is not known."""

PROGRESS_SLICES = 32
"""An observed process map is cut into at least this many slices, so that its callbacks (a progress
bar) hear from the workers every few percent of the map rather than once per worker's share (the
extra tasks cost ~0.3 ms each, only when a callback listens)."""


def map_remote(runtime: Runtime, call: MapCall, executor: Executor, hits: Hits | None = None) -> list[list[Any]]:
    """The items of ``call`` on the remote ``executor``; one list per output.

    With ``hits`` (:func:`~.hits.cached_first`), only its runs of items are sent, and
    their values fill its results.
    """
    observer = call.observer
    spec = SlicePayload(call.remote(), runtime.nodes.name, runtime.max_workers, runtime.core.IMPLEMENTATION)
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

        def tasks(pieces: list[Items]) -> list[tuple[SliceTask]]:
            return [(SliceTask(token, payload, part),) for part in _shipped(runtime.core, call.items, pieces)]

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

    When a worker of our pool dies (or a Dask task's workers died until its
    ``allowed-failures`` ran out), the slices whose results did not come back run
    again on fresh workers until the items that kill their worker are found
    (:mod:`.crashes`): each is the item's :class:`~hypernodes.failures.Failure` (a
    :class:`~hypernodes.errors.WorkerDied`) with ``on_error="continue"``, or the
    error raised (naming it) otherwise.
    """
    observer = call.observer
    bisects = _loky.is_ours(executor)  # a pool of ours is replaced when broken; an executor of the user's is not
    # An executor whose cluster replaces dead workers itself (Dask) says which errors mean a worker died.
    worker_died: Callable[[BaseException], bool] | None = getattr(executor, "worker_died", None)

    def items_of(piece: Items) -> str:
        return f"map items {piece.base + piece.lo}..{piece.base + piece.hi - 1}"

    def on_error(exc: BaseException, piece: Items) -> None:
        if not (bisects and isinstance(exc, BrokenExecutor)) and not (worker_died is not None and worker_died(exc)):
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
    except Exception as exc:
        on_cluster = worker_died is not None and worker_died(exc)
        if not (on_cluster or (isinstance(exc, BrokenExecutor) and bisects and _loky.broken(executor))):
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
            if on_cluster:
                return executor  # the cluster replaced its dead workers
            fresh = runtime.items.executor()  # our pool, a broken one replaced
            assert fresh is not None
            return fresh

        unfinished = [s for s, done in zip(slices, arrived) if not done]
        workers = runtime.items.workers(executor)
        lost = worker_died if on_cluster else None
        if not rerun(unfinished, pool, _renamed(tasks) if on_cluster else tasks, remote_batch, on_result, on_error,
                     on_crash, workers, lost):  # fmt: skip
            warnings.warn(
                f"hypernodes: a worker process died while running this map ({type(died).__name__}); {len(unfinished)} "
                "slices of items whose results had not come back ran again on fresh workers and all completed, so "
                "the results are complete (the worker was likely killed from outside, e.g. by the OS for lack of "
                "memory). The nodes of those items ran twice: side effects included.",
                RuntimeWarning,
                stacklevel=2,
            )
    return results


def _renamed(tasks: Callable[[list[Items]], list[tuple[Any, ...]]]) -> Callable[[list[Items]], list[tuple[Any, ...]]]:
    """``tasks`` under a fresh token at each call: a cluster keys a task by token and first item,
    and would answer a piece run again under an old key with that key's old result (its death)."""

    def renamed(pieces: list[Items]) -> list[tuple[Any, ...]]:
        token = uuid.uuid4().hex
        return [(SliceTask(token, task.payload, task.items),) for (task,) in tasks(pieces)]

    return renamed


def _shipped(core: ModuleType, items: Items, slices: list[Items]) -> list[Items] | list[ShippedItems]:
    """What each slice sends to its worker: zip columns of plain numbers packed once, then cut per slice."""
    if not items.product:
        # a numpy or Arrow column is not packed: its slices pickle as their buffers (_columns.LazyColumn)
        packed = [core.pack_column(c) for c in items.sources]
        if any(p is not None for p in packed):
            return [ShippedItems(s, packed) for s in slices]
    return [s.detached() for s in slices]


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
