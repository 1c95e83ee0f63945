"""Failed items of a map that keeps going: the error marker and the result that lists them.

With ``map(..., on_error="continue")`` an exception raised by a node for one item
does not stop the map. The loops store a :class:`Failure` (the *error marker*) in
each output slot of the node that raised, and a node whose inputs hold a marker is
not called: the marker is passed on to its outputs. So every output of a failed
item that depended on the failure holds the marker, and every output that did not
is computed as usual. Every map returns a :class:`MapResult`: the usual dict of lists,
plus the failures (which items, which node, the exception) and ways to raise them
or keep only the good items.

A marker is one object per failure, shared by every output that depends on it.
It travels back from worker processes as data: its exception (or a
:class:`~hypernodes.errors.RemoteError` standing in for one pickle cannot rebuild)
and the traceback text formatted where it was raised.
"""

from __future__ import annotations

import pickle
import threading
import traceback as _traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._errors import FROM_CALLBACK, add_note
from ._frames import MappedInputs, arrow_table, check_failures_option, numpy_array, pandas_frame
from .errors import ArgumentTypeError, MapSpecError, RemoteError

# Public: the two classes. The helpers below (check_on_error, failure_of, unique,
# release_frames, LIVE, ATTEMPTS_ATTR, ON_ERROR) stay beside the Failure state they read
# and write, for the package's own modules; they are no part of the API.
__all__ = ["Failure", "MapResult"]

ON_ERROR = ("raise", "continue")
"""The values ``on_error`` takes: stop the map at the first failing item, or keep going."""

ATTEMPTS_ATTR = "__hypernodes_attempts__"
"""Where a retrying node's final exception records how many calls were made."""


def check_on_error(on_error: Any, where: str) -> str:
    """``on_error`` if it is one of :data:`ON_ERROR`.

    Raises:
        MapSpecError: anything else (named with ``where``, the call or constructor).
    """
    if on_error not in ON_ERROR or not isinstance(on_error, str):
        raise MapSpecError(f"{where}: on_error must be 'raise' or 'continue', got {on_error!r}.")
    return on_error


class Failure:
    """The error marker: node ``node`` raised ``error`` for map item ``item``.

    Stored (one object, shared) in every output of the item that depended on the
    failure. Never stored in a cache.

    Attributes:
        error: the exception, with its notes (which node and item); from a worker
            process, the unpickled exception or a ``RemoteError`` standing in for it.
        node: the name of the node that raised it.
        item: the item's index in the map.
        attempts: how many times the node was called for the item (``retries=``).
    """

    __slots__ = ("_traceback", "attempts", "error", "item", "node")

    def __init__(self, error: BaseException, node: str, item: int, traceback: str | None = None) -> None:
        self.error = error
        self.node = node
        self.item = item
        self.attempts: int = getattr(error, ATTEMPTS_ATTR, 1)
        # The traceback is kept as a summary (formatted on first read) and the frames are
        # released: a kept failure must not keep the failed call's locals (a batch, a tensor)
        # alive as long as the result is.
        self._traceback: str | _traceback.TracebackException = traceback if traceback is not None else _summary(error)
        with _live_lock:
            LIVE[0] += 1

    def __del__(self) -> None:
        with _live_lock:
            LIVE[0] -= 1

    @property
    def type_name(self) -> str:
        """The exception's qualified type name (``module.QualName``; the original's for a stand-in)."""
        original = getattr(self.error, "type_name", None)
        if isinstance(original, str):
            return original
        kind = type(self.error)
        return f"{kind.__module__}.{kind.__qualname__}"

    @property
    def message(self) -> str:
        """``str()`` of the exception (the original's for a stand-in)."""
        original = getattr(self.error, "message", None)
        if isinstance(original, str) and hasattr(self.error, "remote_traceback"):
            return original
        try:
            return str(self.error)
        except Exception:
            return f"<str() of the exception failed; args={self.error.args!r:.200}>"

    @property
    def traceback(self) -> str:
        """The exception's traceback as text, notes included (captured where it was raised)."""
        found = self._traceback
        if not isinstance(found, str):
            found = self._traceback = "".join(found.format())
        return found

    def at(self, item: int) -> Failure:
        """This failure as the failure of map item ``item`` (the same error, node and traceback)."""
        twin = Failure(self.error, self.node, item, self.traceback)
        twin.attempts = self.attempts
        return twin

    def __repr__(self) -> str:
        kind = type(self.error).__name__
        return f"<Failure of map item {self.item} in node `{self.node}`: {kind}: {self.message:.80}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # The traceback travels as its text; an exception that pickle cannot rebuild
        # (an SDK error whose __init__ needs more than its args) as its stand-in, so a
        # result holding failures can be saved and loaded.
        error = self.error if _travels(self.error) else _stand_in(self.error, self.traceback)
        return (_rebuild, (error, self.node, self.item, self.attempts, self.traceback))


LIVE = [0]
"""How many :class:`Failure` objects exist in this process. While none does, no input of a
call can be one, so the calls skip looking for them (``_call.py``, the engine's fast paths)."""
_live_lock = threading.Lock()


def _summary(error: BaseException) -> _traceback.TracebackException | str:
    """``error``'s traceback (and its chain's) as a summary holding no frames; the frames are released."""
    remote = getattr(error, "remote_traceback", None)
    if isinstance(remote, str) and remote:  # a stand-in: the original's text
        summary: _traceback.TracebackException | str = remote
    else:
        try:
            summary = _traceback.TracebackException.from_exception(error, lookup_lines=False)
        except Exception:  # a broken __str__ or chain: keep what can be said
            summary = f"{type(error).__qualname__} (its traceback could not be read)\n"
    release_frames(error)
    return summary


def release_frames(error: BaseException) -> None:
    """Drop the frames of ``error``, of the exceptions chained to it and of a group's members."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        pending.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
        pending.extend(e for e in getattr(exc, "exceptions", ()) if isinstance(e, BaseException))


def _travels(error: BaseException) -> bool:
    """Whether pickle rebuilds ``error`` (cloudpickle too: a class defined in a script travels by value)."""
    try:
        pickle.loads(pickle.dumps(error))
        return True
    except Exception:
        pass
    try:
        import cloudpickle

        pickle.loads(cloudpickle.dumps(error))
        return True
    except Exception:
        return False


def _stand_in(error: BaseException, traceback: str) -> BaseException:
    kind = type(error)
    try:
        message = str(error)
    except Exception:
        message = f"<str() of the exception failed; args={error.args!r:.200}>"
    stand_in = RemoteError(f"{kind.__module__}.{kind.__qualname__}", message, traceback)
    for note in getattr(error, "__notes__", None) or ():
        if isinstance(note, str):
            add_note(stand_in, note)
    return stand_in


def _rebuild(error: BaseException, node: str, item: int, attempts: int, traceback: str) -> Failure:
    failure = Failure(error, node, item, traceback)
    failure.attempts = attempts
    return failure


def failure_of(exc: BaseException, node: str, item: int) -> Failure:
    """The error marker of ``exc``, raised by node ``node`` for ``item``.

    Raises:
        BaseException: ``exc`` itself when a callback's hook raised it (an ``on_node_retry``
            inside a retrying node): a callback's exception fails the call, never one item.
    """
    if getattr(exc, FROM_CALLBACK, False):
        raise exc
    return Failure(exc, node, item)


def unique(found: Iterable[Any]) -> tuple[Failure, ...]:
    """The distinct markers of ``found`` (each failure once), by item, in the order first met."""
    seen: dict[int, Failure] = {}
    for failure in found:
        seen.setdefault(id(failure), failure)
    return tuple(sorted(seen.values(), key=lambda f: f.item))


class MapResult(dict[str, list[Any]]):
    """What every ``map()`` returns: ``{output: [value per item]}``, its failures, and frames of it.

    It is the dict of lists a map always returned (equal to, and usable as, a plain
    dict); with ``on_error="continue"`` a failed item's outputs that depended on the
    failure hold its :class:`Failure`, and these attributes say what failed.
    ``to_pandas()``, ``to_arrow()`` and ``to_numpy(name)`` give one row per item
    (their library is imported when called).

    Attributes:
        failures: one :class:`Failure` per failure, by item (an item may have
            several when independent nodes of it failed).
    """

    __slots__ = ("_mapped", "failures")

    def __init__(
        self,
        columns: Mapping[str, list[Any]] | Iterable[tuple[str, list[Any]]] = (),
        failures: Sequence[Failure] = (),
        mapped: MappedInputs | None = None,
    ) -> None:
        """
        Args:
            columns: ``{output: [value per item]}`` (or its pairs).
            failures: the failed items' markers, by item.
            mapped: the map's mapped inputs (names, columns of items, product mode),
                for ``inputs=True`` of the frame methods; None when unknown.
        """
        super().__init__(columns)
        self.failures: tuple[Failure, ...] = tuple(failures)
        self._mapped = mapped

    @classmethod
    def _of(cls, columns: dict[str, list[Any]], mapped: MappedInputs) -> MapResult:
        """A result without failures, made as the cores' fast path needs it: ``__init__``, a Python
        call, costs more than the rest of a one-item map; this sets the same fields in C calls."""
        result = dict.__new__(cls)
        dict.update(result, columns)
        result.failures = ()
        result._mapped = mapped
        return result

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failures

    @property
    def failed_items(self) -> list[int]:
        """The indices of the items that failed, ascending."""
        return sorted({f.item for f in self.failures})

    @property
    def good_items(self) -> list[int]:
        """The indices of the items with no failure in any output, ascending."""
        n = len(next(iter(self.values()), ()))
        failed = {f.item for f in self.failures}
        return [i for i in range(n) if i not in failed]

    def good(self) -> dict[str, list[Any]]:
        """``{output: [value per good item]}``: the items that did not fail, in item order."""
        failed = {f.item for f in self.failures}
        if not failed:
            return dict(self)
        return {name: [v for i, v in enumerate(column) if i not in failed] for name, column in self.items()}

    def raise_if_failed(self) -> None:
        """Raise the first failure's own exception if any item failed; return otherwise.

        The exception keeps its type; a note says how many items failed and which.
        """
        if not self.failures:
            return
        first = self.failures[0]
        items = self.failed_items
        shown = ", ".join(map(str, items[:10])) + (", ..." if len(items) > 10 else "")
        note = (
            f"hypernodes: {len(items)} of {len(self.good_items) + len(items)} map items failed (items {shown}); "
            f"this is the first, from node `{first.node}` for item {first.item}. The result's .failures lists them all."
        )
        if note not in (getattr(first.error, "__notes__", None) or ()):
            add_note(first.error, note)
        raise first.error

    def to_pandas(self, inputs: bool = False, failures: str = "column") -> Any:
        """The results as a pandas ``DataFrame``: one row per item (labelled by its index), one column per output.

        Args:
            inputs: also the mapped inputs' values, as the first columns (a product
                map's combinations spelled out).
            failures: "column" keeps every item: the cells that depended on a failure
                are missing and a ``failure`` column (only when some item failed) holds
                each failed item's first :class:`Failure`; "drop" keeps the good items
                (labels stay the item indices); "raise" raises the first failure.

        Returns:
            ``pandas.DataFrame`` (pandas is imported here).

        Raises:
            ArgumentTypeError: a bad ``failures``; ``inputs=True`` on a result that does
                not know its inputs; a column name given twice.
            The first failure's exception, with ``failures="raise"``.
        """
        self._check_frame_options(failures, "to_pandas()")
        return pandas_frame(self, self._mapped, self.failures, Failure, inputs, failures)

    def to_arrow(self, inputs: bool = False, failures: str = "column") -> Any:
        """The results as a pyarrow ``Table``, as :meth:`to_pandas` (Arrow infers each column's type).

        The ``failure`` column holds ``"node: type: message"`` text; with ``failures="drop"``
        an ``item`` column keeps the good items' indices.

        Raises:
            As :meth:`to_pandas`; pyarrow's own error for a column of values Arrow cannot hold.
        """
        self._check_frame_options(failures, "to_arrow()")
        return arrow_table(self, self._mapped, self.failures, Failure, inputs, failures)

    def to_numpy(self, name: str, failures: str = "raise", dtype: Any = None) -> Any:
        """Output ``name`` as a numpy array, one element per item (a row per item for array values).

        Args:
            name: the output.
            failures: "raise" refuses an output that holds a failure; "drop" keeps the good items.
            dtype: numpy's dtype; None infers it and requires numeric values.

        Raises:
            ArgumentTypeError: an unknown output, failed items (unless dropped), a
                non-numeric output without ``dtype``.
        """
        if name not in self:
            raise ArgumentTypeError(f"to_numpy({name!r}): no output `{name}`; outputs: {', '.join(self) or 'none'}.")
        if failures not in ("raise", "drop"):
            raise ArgumentTypeError(f"to_numpy(): failures must be 'raise' or 'drop', got {failures!r}.")
        return numpy_array(self[name], name, self.failures, Failure, failures, dtype)

    def _check_frame_options(self, failures: Any, where: str) -> None:
        check_failures_option(failures, where)
        if failures == "raise":
            self.raise_if_failed()

    def __repr__(self) -> str:
        if not self.failures:
            return dict.__repr__(self)  # it prints as the dict of lists it is
        return f"MapResult({dict.__repr__(self)}, failures={len(self.failures)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The mapped inputs stay behind: they may not pickle, and a copy elsewhere needs only the results.
        return (MapResult, (list(self.items()), self.failures))
