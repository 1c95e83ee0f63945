"""What travels to worker processes: the payload of a call, pickled once, and the pickler.

Remote executors (loky, ``ProcessPoolExecutor``, a Dask executor, any ``Executor``
that is not a thread pool) share nothing with the caller. What a call needs there
(the plan or the nodes, the broadcast inputs) is pickled once per call with
cloudpickle into a *payload*; every task (``tasks.py``) carries it as bytes with a
token, or names the file it was written to (:class:`Spilled`, ``spill.py``), and a
worker unpickles each token once (:func:`load`).

What comes back is pickled by the worker itself (:func:`pickled`), so a value that
cannot travel is named there (node, output, item) rather than failing later inside
the executor; an exception that pickle cannot rebuild in the caller's process is
replaced by a :class:`~hypernodes.errors.RemoteError` (:func:`portable`). The worker
sides of the two kinds of task live apart: ``slices.py`` (a map slice) and
``node_task.py`` (one node).
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import threading
import traceback
import uuid
from collections.abc import Callable, Sequence
from types import CodeType
from typing import Any

from .._errors import add_note
from ..errors import RemoteError
from ..node import Node

# cloudpickle (~30 ms) is imported on first use: a pipeline that never runs on processes pays nothing for it.

__all__ = [
    "ALIGN",
    "RESULT_ADVICE",
    "Spilled",
    "carried",
    "dumps",
    "load",
    "pickled",
    "portable",
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
