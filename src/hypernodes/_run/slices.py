"""A map slice on its way to a worker process, run there, and its results on their way back.

The parent side (``remote.py``) pickles what every worker of a call needs once
(:class:`SlicePayload`: the call's remote form, ``MapCall.remote``, and how to run
its nodes there) and sends each slice as a :class:`~.tasks.SliceTask`: zip columns
cut to its rows (a column of plain ints or floats as one buffer,
:class:`~.tasks.ShippedItems`; product columns whole). :func:`remote_batch` runs it in the
worker, on the caller's core, through the cores' batch loop or, with a node executor
by name ("threaded", "async"), through a node runner made in the worker; no engine
is built there. Its columns come back as a :class:`SliceResult` (a column of plain
ints or floats as one buffer), with the slice's events when the caller observes.
"""

from __future__ import annotations

import contextlib
import operator
import pickle
import sys
from array import array
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, SupportsIndex

from .. import _core
from .._call import Items, MapCall
from .._errors import add_note
from .._events import EVENTS_ATTR
from .._graph import Plan
from ..executors._loop import CoroutineRunner, LoopThread, WorkerLoop
from ..executors._worker import check_parent
from ..executors.backends import Sequential, backend_for
from ..failures import unique
from .items import run_items
from .nodes import node_runner
from .payload import RESULT_ADVICE, carried, load, pickled, portable, unpicklable_index
from .runtime import FuncTable, Runtime
from .tasks import ShippedItems, SliceTask

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12 on

__all__ = ["SlicePayload", "SliceResult", "remote_batch", "slice_result"]


class SlicePayload:
    """What every worker of one process map needs; pickled once per call.

    ``call`` is the call's remote form (``MapCall.remote``: no items, the observer's
    recording twin); each task adds its slice (``MapCall.on``).
    """

    __slots__ = ("call", "core", "max_workers", "node_backend")

    def __init__(self, call: MapCall, node_backend: str, max_workers: int | None, core: str) -> None:
        self.call = call
        self.node_backend = node_backend  # a portable backend's name, made anew in each worker
        self.max_workers = max_workers
        self.core = core  # the IMPLEMENTATION the caller runs on

    def __getstate__(self) -> tuple[Any, ...]:
        return self.call, self.node_backend, self.max_workers, self.core

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.call, self.node_backend, self.max_workers, self.core = state


def _values(code: str, data: Buffer, order: str) -> list[Any]:
    """The values ``array(code)`` holds in ``data`` (written in ``order``'s byte order), as a list."""
    if order == sys.byteorder:
        view: memoryview[Any] = memoryview(data).cast("B").cast(code)  # type: ignore[call-overload]
        return view.tolist()
    swapped = array(code)
    swapped.frombytes(data)
    swapped.byteswap()
    return swapped.tolist()


class SliceResult:
    """What a worker sends back for a map slice: its outputs, one buffer per column where the values allow.

    A column of plain ints or floats travels as one buffer (``core.pack_column``:
    no per-item objects are pickled, nor unpickled here); the other columns, and the
    slice's events when the caller observes, are pickled together in ``head``, with
    protocol 5: large buffers in them (numpy arrays, say) travel out of band, beside
    ``head`` rather than copied into it, and the arrays rebuilt here use them in place.
    """

    __slots__ = ("columns", "head", "oob", "order")

    def __init__(
        self, head: bytes, columns: tuple[tuple[int, str, Buffer], ...], oob: tuple[Buffer, ...], order: str
    ) -> None:
        self.head = head  # pickled (the columns, None where packed; the events or None)
        self.columns = columns  # (output index, array typecode, buffer) of each packed column
        self.oob = oob  # the head's out-of-band buffers, in order
        self.order = order  # the worker's byte order

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # Out-of-band buffers are PickleBuffers (protocol 5 only): a pickler of an older
        # protocol (a ProcessPoolExecutor before 3.14) gets copies, as writable as the original.
        oob = self.oob
        if operator.index(protocol) < 5:
            oob = tuple(_copy(b) for b in oob)
        return SliceResult, (self.head, self.columns, oob, self.order)

    def opened(self) -> tuple[list[list[Any]], Any]:
        """``(columns, events)``: one list per output, and the events (None if not recorded)."""
        columns, events = self.unpickled()
        for j, code, data in self.columns:
            columns[j] = _values(code, data, self.order)
        return columns, events

    def unpickled(self) -> tuple[list[Any], Any]:
        """``(columns, events)`` as :meth:`opened` gives them, but None in place of each packed column."""
        columns, events = pickle.loads(self.head, buffers=self.oob)
        return columns, events

    def place(self, columns: list[Any], results: list[list[Any]], at: int, unpack: Callable[..., None]) -> None:
        """Put output ``j``'s values in ``results[j][at:]``: ``columns`` (from :meth:`unpickled`), and the
        packed ones made straight into their places by ``unpack`` (the core's ``unpack_column``)."""
        packed = set()
        if self.order == sys.byteorder:
            for j, code, data in self.columns:
                unpack(code, data, results[j], at)
                packed.add(j)
        else:
            for j, code, data in self.columns:
                columns[j] = _values(code, data, self.order)
        for j, (out, column) in enumerate(zip(results, columns)):
            if j not in packed:
                out[at : at + len(column)] = column


def _copy(buffer: Buffer) -> bytes | bytearray:
    view = memoryview(buffer)
    return bytes(view) if view.readonly else bytearray(view)


def slice_result(pack: Callable[[Any], tuple[str, bytes] | None], columns: list[Any], events: Any) -> SliceResult:
    """A slice's ``columns`` (one list per output) and ``events``, ready to send back.

    ``pack`` is the core's ``pack_column``. Raises what pickling the rest raises
    (the caller names the culprit).
    """
    rest = list(columns)
    packed = []
    for j, column in enumerate(columns):
        found = pack(column)
        if found is not None:
            packed.append((j, *found))
            rest[j] = None
    oob: list[pickle.PickleBuffer] = []
    head = pickled((rest, events), oob.append)
    return SliceResult(head, tuple(packed), tuple(oob), sys.byteorder)


def remote_batch(task: SliceTask) -> SliceResult:
    """Worker side of a map slice: its items through the pipeline; one column per output, ready to travel.

    Columns of plain ints or floats travel as one buffer each; the rest (and, with an
    observing caller, the slice's events) is pickled here (:func:`slice_result`).
    A failure carries the events recorded before it on the exception (``EVENTS_ATTR``).
    The results are pickled here, not by the executor after the task returns, so a value
    that cannot be pickled (a client, a lock) is named with its output, node and item.
    An exception that pickle could not rebuild in the caller's process is raised as a
    :class:`~hypernodes.errors.RemoteError`.
    """
    check_parent()  # a slice queued before the caller died never starts
    part = task.items
    items = part.items() if isinstance(part, ShippedItems) else part
    try:
        spec, core, result = _remote_batch(load(task.token, task.payload), items)
        return _results(core, spec.call.plan, result, spec.call.observer is not None, items.base + items.lo)
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


def _remote_batch(spec: SlicePayload, items: Items) -> tuple[SlicePayload, ModuleType, Any]:
    core = _core.module(spec.core)
    twin = spec.call.observer
    recorder = None if twin is None else twin.remote()  # one per task: tasks may share a process
    call = spec.call.on(items)
    call.observer = recorder
    nodes = backend_for(spec.node_backend, "node", spec.max_workers)
    # Blocking loops await async nodes on one loop: this thread's own when the nodes run
    # here, a loop thread when node tasks (threads) may await at once.
    loop: WorkerLoop | LoopThread = WorkerLoop() if isinstance(nodes, Sequential) else LoopThread("hypernodes-worker")
    runner: CoroutineRunner = loop
    funcs = FuncTable(runner)
    try:
        runtime = Runtime(nodes, Sequential("sequential"), funcs, spec.max_workers, core)
        columns = run_items(runtime, node_runner(nodes, call, funcs(call.plan), core), call)
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
    if call.keep_going:
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
