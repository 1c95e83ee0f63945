"""What travels to worker processes, and the worker side of a node task.

Remote executors (loky, ``ProcessPoolExecutor``, a Dask executor, any ``Executor``
that is not a thread pool) share nothing with the caller. What a call needs there
(the plan or the nodes, the broadcast inputs) is pickled once per call with
cloudpickle into a *payload*; every task carries it as bytes with a token, and a
worker unpickles each token once (:func:`load`).

What comes back is pickled by the worker itself (:func:`pickled`), so a value that
cannot travel is named there (node, output, item) rather than failing later inside
the executor; an exception that pickle cannot rebuild in the caller's process is
replaced by a :class:`~hypernodes.errors.RemoteError` (:func:`portable`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import operator
import os
import pickle
import sys
import threading
import traceback
import uuid
from array import array
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import CodeType, CoroutineType
from typing import TYPE_CHECKING, Any, SupportsIndex

from .._call import Items
from .._columns import unpack_items
from .._errors import add_note, coroutine_returned
from .._policy import Policy
from .._resources import MADE, resolved
from ..errors import RemoteError
from ..executors._loop import AwaitOn
from ..executors._worker import check_parent
from ..node import Node

if TYPE_CHECKING:
    import asyncio

    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12 on

# cloudpickle (~30 ms) and asyncio (~60 ms) are imported on first use: a pipeline
# that never runs on processes, or has no async node, pays for neither.

__all__ = [
    "ALIGN",
    "RESULT_ADVICE",
    "RETRIES_ATTR",
    "RetryLog",
    "ShippedItems",
    "SliceResult",
    "Spilled",
    "WorkerLoop",
    "carried",
    "dumps",
    "load",
    "pickled",
    "portable",
    "remote_node",
    "slice_result",
    "unpicklable_index",
]


@functools.cache
def _pickler() -> type:
    import cloudpickle

    code_reduce = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        """cloudpickle, plus: nodes defined in ``__main__`` (a notebook, a script) travel by value,
        and code objects keep their file name.

        ``Node.__reduce__`` pickles a module-level node by name, which a worker
        cannot resolve for ``__main__``; field by field, cloudpickle ships the function itself.
        cloudpickle writes every code object's file name as ``<dynamic-code>`` (its pickles
        then do not depend on where code was defined); a worker's traceback would then
        not say where a node that raised lives. The name is put back as it arrives.
        """

        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is CodeType and code_reduce is not None:
                return _refiled, (_Code(obj, code_reduce), obj.co_filename)
            if isinstance(obj, Node) and getattr(obj.func, "__module__", None) == "__main__":
                return obj._reduce_by_value()
            return super().reducer_override(obj)

    return Pickler


class _Code:
    """A code object on its way, pickled as cloudpickle pickles it (``reduce``)."""

    __slots__ = ("code", "reduce")

    def __init__(self, code: CodeType, reduce: Callable[[CodeType], Any]) -> None:
        self.code = code
        self.reduce = reduce

    def __reduce__(self) -> Any:
        return self.reduce(self.code)


def _refiled(code: CodeType, filename: str) -> CodeType:
    return code if code.co_filename == filename else code.replace(co_filename=filename)


def pickled(obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None) -> bytes:
    """``obj`` pickled with our pickler (cloudpickle, nodes of ``__main__`` by value).

    ``buffer_callback`` is pickle's: buffers it is given (and returns a false value for)
    are left out of the bytes, to be handed to ``pickle.loads(..., buffers=)``.
    """
    buffer = io.BytesIO()
    _pickler()(buffer, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=buffer_callback).dump(obj)
    return buffer.getvalue()


def dumps(obj: Any) -> tuple[str, bytes]:
    """A fresh token and ``obj`` pickled for remote workers."""
    return uuid.uuid4().hex, pickled(obj)


_LOADED_MAX = 8
_loaded: dict[str, Any] = {}
_loaded_lock = threading.Lock()


_spilled: dict[str, Spilled] = {}  # token -> the file it was read from, for the payloads read from files


def load(token: str, payload: bytes | Spilled) -> Any:
    """``payload`` unpickled, once per token in this process (the newest few are kept).

    A payload read from a file (a :class:`Spilled` one, large) is dropped once its call
    ended (the caller removed the file), when the next one is read, on a helper thread
    (:func:`_drop_later`): a worker holds at most the large payloads of the calls
    still running.
    """
    found = _loaded.get(token)
    if found is None:
        spilled = None if isinstance(payload, bytes) else payload
        if spilled is not None:
            with _loaded_lock:
                ended = [(_spilled.pop(t), _loaded.pop(t, None)) for t in [t for t, s in _spilled.items() if s.gone()]]
            if ended:
                _drop_later(ended)
            found = spilled.opened()
        else:
            found = pickle.loads(payload)  # type: ignore[arg-type]
        with _loaded_lock:
            _loaded[token] = found
            if spilled is not None:
                _spilled[token] = spilled
            while len(_loaded) > _LOADED_MAX:
                oldest = next(iter(_loaded))
                _spilled.pop(oldest, None)
                del _loaded[oldest]
    return found


def _drop_later(ended: list[Any]) -> None:
    """Let go of the payloads of ended calls (a worker's last references to them) on a helper thread.

    The last mapping of a removed file frees its pages then: 30-70 ms for 200 MB, which
    the worker's next slice waited for (every worker of an 8-item map, against one of a
    1-item map). ``ended`` must hold the only references: the thread clears it.
    """
    threading.Thread(target=ended.clear, name="hypernodes-payload-drop", daemon=True).start()


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


def portable(exc: Exception) -> RemoteError | None:
    """None if ``exc`` survives the trip back to the caller's process; else its stand-in.

    Pickle rebuilds an exception as ``type(exc)(*exc.args)``, which fails for an
    ``__init__`` that requires more (``ApiError(message, status)``): the caller's
    process would then fail to read the result and loky would report the pool broken,
    as if a worker had died. Checked only on the failure path, with the same pickler
    the results use. The stand-in keeps the original's notes (which node and item).
    """
    try:
        pickle.loads(pickled(exc))
    except Exception:
        kind = type(exc)
        stand_in = RemoteError(
            f"{kind.__module__}.{kind.__qualname__}",
            _text(exc),
            "".join(traceback.format_exception(kind, exc, exc.__traceback__)),
        )
        for note in getattr(exc, "__notes__", None) or ():
            if isinstance(note, str):
                add_note(stand_in, note)
        return stand_in
    return None


def carried(value: Any, old: BaseException, new: BaseException) -> Any:
    """``value`` as the caller's process would unpickle it, with ``new`` wherever ``old`` was; None if it cannot travel.

    For the events a failed slice sends back with its exception: they may hold the
    exception itself (an error event), which is then the stand-in the caller gets.
    Only on the failure path.
    """
    buffer = io.BytesIO()
    try:
        pickler = _swapping()(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.old = old
        pickler.dump(value)
        buffer.seek(0)
        return _Restoring(buffer, new).load()
    except Exception:
        return None


@functools.cache
def _swapping() -> type:
    class Swapping(_pickler()):  # type: ignore[misc]
        """Our pickler, writing a persistent id in place of one object (a separate class:
        a ``persistent_id`` method costs a Python call per object pickled)."""

        old: object = None

        def persistent_id(self, obj: Any) -> str | None:
            return "swapped" if obj is self.old else None

    return Swapping


class _Restoring(pickle.Unpickler):
    """Reads what :func:`carried` wrote, with ``new`` for the persistent id."""

    def __init__(self, buffer: io.BytesIO, new: object) -> None:
        super().__init__(buffer)
        self._new = new

    def persistent_load(self, pid: Any) -> Any:
        return self._new


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a __str__ that itself fails
        return f"<str() of the exception failed; args={exc.args!r:.200}>"


RESULT_ADVICE = (
    "Worker processes send every requested output back to the caller, so outputs must be picklable: "
    "return plain data from the node (not a client, lock, connection or open file), or restrict "
    "output_name= to the outputs you need (values only other nodes read stay in the worker)."
)


def unpicklable_index(values: Sequence[Any]) -> int:
    """The index of the first of ``values`` that fails to pickle; -1 if none does.

    Only for the error message, after pickling them all failed.
    """
    try:
        pickled(values)
        return -1
    except Exception:
        pass
    for i, value in enumerate(values):
        try:
            pickled(value)
        except Exception:
            return i
    return -1


def _values(code: str, data: Buffer, order: str) -> list[Any]:
    """The values ``array(code)`` holds in ``data`` (written in ``order``'s byte order), as a list."""
    if order == sys.byteorder:
        view: memoryview[Any] = memoryview(data).cast("B").cast(code)  # type: ignore[call-overload]
        return view.tolist()
    swapped = array(code)
    swapped.frombytes(data)
    swapped.byteswap()
    return swapped.tolist()


class ShippedItems:
    """A slice of a zip map's items on its way to a worker: columns of plain numbers as one buffer each.

    The caller packs each mapped list once per call (``core.pack_column``) and
    cuts every slice's rows out of its buffer; the worker reads them back
    (:meth:`items`). Other columns travel as the slice's rows, as
    :meth:`~hypernodes._call.Items.detached` cuts them.
    """

    __slots__ = ("base", "codes", "columns", "hi", "lo", "map_slots", "order")

    def __init__(self, items: Items, packed: Sequence[tuple[str, bytes] | None]) -> None:
        lo, hi = items.lo, items.hi
        self.map_slots = items.map_slots
        # numbered as a detached slice: rows 0..hi-1, the first being map item `base`
        self.base, self.lo, self.hi = items.base + lo, 0, hi - lo
        self.order = sys.byteorder
        self.codes = tuple("" if p is None else p[0] for p in packed)  # "": the column's own rows
        self.columns: tuple[Any, ...] = tuple(  # the rows (a tuple), or their buffer (bytes)
            column[lo:hi] if p is None else p[1][lo * _SIZES[p[0]] : hi * _SIZES[p[0]]]
            for column, p in zip(items.sources, packed)  # sources: a LazyColumn's rows travel as its buffer
        )

    def items(self) -> Items:
        """The slice, as the worker runs it (numbered from 0, ``base`` where it starts in the map)."""
        columns: tuple[tuple[Any, ...], ...] = tuple(
            unpack_items(code, column, self.order) if code else column for code, column in zip(self.codes, self.columns)
        )
        return Items(self.map_slots, columns, False, 0, self.hi, self.base)


_SIZES = {code: array(code).itemsize for code in "bhiqd"}  # bytes per value of each packed typecode


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


RETRIES_ATTR = "__hypernodes_retries__"
"""The attribute under which a node task that failed in a worker attaches its retried attempts."""


class RetryLog:
    """Stands in, in a worker process, for the call's observer of a node's retries.

    A node task's :class:`~hypernodes._policy.Policy` reports each retried attempt
    here; the task sends them back with its result (or on its exception, under
    ``RETRIES_ATTR``), and the caller reports them to its observer with the item.
    """

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts: list[tuple[Exception, int, float]] = []

    def node_retry(self, node: int, item: int, exc: Exception, attempt: int, delay: float) -> None:
        self.attempts.append((exc, attempt, delay))  # a Policy retries only an Exception

    def portable(self) -> list[tuple[Exception, int, float]]:
        """The attempts, each exception as the caller's process can unpickle it (or its stand-in)."""
        return [(portable(exc) or exc, attempt, delay) for exc, attempt, delay in self.attempts]


def remote_node(
    token: str, payload: bytes, k: int, args: tuple[Any, ...], retries: bool = False
) -> bytes | tuple[bytes, list[tuple[Exception, int, float]]]:
    """Worker side of a node task: node ``k`` of the pickled nodes, called on ``args``; its result pickled.

    The caller reads the result with ``pickle.loads``. A result that cannot be pickled
    fails here, noted with the output and node; an exception pickle could not rebuild
    in the caller's process is raised as a :class:`~hypernodes.errors.RemoteError`.
    With ``retries`` (the caller observes the call), the node's retried attempts come
    back too: ``(pickled result, attempts)``, or on the exception under ``RETRIES_ATTR``.
    """
    check_parent()  # a task queued before the caller died never starts
    nodes: tuple[Node[..., Any], ...] = load(token, payload)
    loop = WorkerLoop()  # started only if the node is async
    log = RetryLog() if retries else None
    try:
        node = nodes[k]
        if MADE[0]:  # a Resource among the arguments: this process's instance
            args = tuple(resolved(args))
        call = node._call
        if log is not None and isinstance(call, Policy):
            call = call.bound(log, k)
        result = (AwaitOn(call, loop) if node.is_async else call)(*args)  # async nodes awaited
        if type(result) is CoroutineType:
            raise coroutine_returned(result, node.name)
        try:
            data = pickled(result)
        except Exception as exc:
            outputs = node.outputs
            i = unpicklable_index(result) if len(outputs) > 1 and isinstance(result, (tuple, list)) else -1
            what = f"output `{outputs[i] if 0 <= i < len(outputs) else outputs[0]}`"
            add_note(exc, f"hypernodes: {what} of node `{node.name}` cannot be pickled. {RESULT_ADVICE}")
            raise
        return data if log is None else (data, log.portable())
    except Exception as exc:
        stand_in = portable(exc)
        error = exc if stand_in is None else stand_in
        if log is not None and log.attempts:
            with contextlib.suppress(Exception):  # an exception that takes no attributes loses them, never itself
                setattr(error, RETRIES_ATTR, log.portable())
        if stand_in is None:
            raise
        raise stand_in from exc
    finally:
        loop.close()


class Spilled:
    """A payload written to ``path`` for the workers of this machine to read.

    The file holds the pickle's out-of-band buffers (numpy arrays, say), each at an
    offset aligned to :data:`ALIGN`, then the pickle itself; ``parts`` says where each
    lies. A worker maps the file copy-on-write (:meth:`opened`): the arrays it
    rebuilds use the mapped pages in place, shared by every worker until one writes
    to them (that worker then gets its own copy of the pages it writes, as with a
    pickled copy).
    """

    __slots__ = ("parts", "path")

    def __init__(self, path: str, parts: tuple[tuple[int, int], ...]) -> None:
        self.path = path
        self.parts = parts  # (offset, length) of each buffer, then of the pickle

    def __getstate__(self) -> tuple[str, tuple[tuple[int, int], ...]]:
        return self.path, self.parts

    def __setstate__(self, state: tuple[str, tuple[tuple[int, int], ...]]) -> None:
        self.path, self.parts = state

    def opened(self) -> Any:
        """The payload, unpickled from the mapped file."""
        import mmap

        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
        view = memoryview(mapped)
        parts = [view[at : at + n] for at, n in self.parts]
        return pickle.loads(parts[-1], buffers=parts[:-1])

    def gone(self) -> bool:
        """Whether its call ended (the caller removed the file)."""
        return not os.path.exists(self.path)


ALIGN = 64
"""Each buffer of a :class:`Spilled` payload starts at a multiple of this in its file (numpy prefers aligned data)."""
