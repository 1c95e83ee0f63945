"""Mapped inputs: which values ``map_over`` accepts as a column of items, and the items they hold.

A column is a sized, indexable, re-readable sequence of items: ``list``, ``tuple``,
``range``, a numpy ``ndarray`` (1-D: its elements; 2-D or more: its rows), a pandas
``Series`` or ``Index``, an Arrow ``Array`` or ``ChunkedArray``. A generator, an
iterator or a set is refused: a map must know its length before it starts and may
read an item more than once (retries, product mode).

Items are the values a user meets when iterating over the column, in their plain
Python form where the library has one, so a map over an array computes what the
same map over ``array.tolist()`` computes (equal results, equal types):

* numpy numeric and bool dtypes become Python ``int``/``float``/``complex``/``bool``
  (one ``tolist()`` pass in C, faster than making a numpy scalar per item, and the
  values behave as annotations like ``x: int`` say: ``isinstance``, JSON, the cache's
  keys). Other dtypes (datetime64, strings, objects) and the rows of a 2-D array
  stay as iteration gives them (``tolist()`` would turn a datetime64[ns] into an int
  and a row into a list).
* pandas already yields Python scalars (and ``Timestamp``s) when iterated: kept.
* Arrow yields ``pyarrow.Scalar`` objects when iterated, which support no arithmetic:
  its ``to_pylist()`` values are the items (a null is ``None``).

Where the items are made: tuples, lists, ranges and pandas columns are read into a
tuple when the map starts. A numpy or Arrow column stays its library's buffer (a
:class:`LazyColumn`) until the items are read: once, in this process, by a map that runs
here; by each worker process, for its own rows only, by a map that runs there (the
rows travel as their buffer, see :class:`LazyColumn`).

numpy, pandas and pyarrow are never imported here: a value is recognised by its
type's module, and only a value of that library's type reaches that library's code.
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from collections.abc import Iterator
from pickle import PickleBuffer
from typing import Any, SupportsIndex

from .errors import ArgumentTypeError

__all__ = [
    "ALLOWED",
    "ArrayColumn",
    "ArrowColumn",
    "LazyColumn",
    "NumpyColumn",
    "as_column",
    "column_error",
    "is_column",
    "items_of",
    "unpack_items",
]

ALLOWED = "a list, tuple, range, numpy array, pandas Series/Index or Arrow Array/ChunkedArray"
"""What ``map_over`` accepts, for error messages."""

_PLAIN = (list, tuple, range)
_NUMPY_PLAIN_KINDS = frozenset("biufc")  # bool, int, unsigned, float, complex: tolist() gives Python scalars


def _library(value: Any) -> str:
    return type(value).__module__.partition(".")[0]


def _of(library: str, value: Any, *names: str) -> bool:
    """``isinstance(value, library.<name>)`` for one of ``names``, without importing ``library``:
    a value of its types means it is already in ``sys.modules``."""
    module = sys.modules.get(library) if _library(value) == library else None
    return module is not None and isinstance(value, tuple(getattr(module, n) for n in names))


class LazyColumn:
    """A column held as its library's buffer, its items made where they are read (see the module docstring).

    A slice (``column[lo:hi]``) is another such column over the same memory (no copy,
    no item made). In this process the items are made once, on first use (:meth:`items`).
    Pickled (a slice sent to a worker process), a column travels as its buffer, cut to
    its rows, and arrives as the tuple of its items, made by the process that unpickles it:
    no per-item object is made in the caller nor pickled.
    """

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, rows: slice) -> LazyColumn:
        raise NotImplementedError

    def items(self) -> tuple[Any, ...]:
        """The items, as the module docstring says the column's library gives them."""
        raise NotImplementedError


class ArrayColumn(LazyColumn):
    """A 1-D column of plain ints or floats held as one native buffer (a numpy array's, an Arrow array's).

    Its items are what ``memoryview.tolist()`` makes of the buffer (``tolist()`` of the
    numpy array, ``to_pylist()`` of the Arrow array: equal Python numbers). Pickled, it
    needs neither numpy nor pyarrow where it arrives: its rows' bytes and a typecode of
    the ``array`` module (protocol 5 sends the bytes without copying them first).
    """

    __slots__ = ("code", "view")

    def __init__(self, view: memoryview, code: str) -> None:
        self.view = view  # 1-D, read-only, C-contiguous, native byte order, format `code`
        self.code = code  # the `array` module's typecode of the items: one of "bhiqd"

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, rows: slice) -> ArrayColumn:
        return ArrayColumn(self.view[rows], self.code)

    def items(self) -> tuple[Any, ...]:
        return tuple(self.view.tolist())

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        rows: Any = PickleBuffer(self.view) if operator.index(protocol) >= 5 else self.view.tobytes()
        return (unpack_items, (self.code, rows, sys.byteorder))


def unpack_items(code: str, data: Any, order: str) -> tuple[Any, ...]:
    """The items of ``data``, values of typecode ``code`` written in ``order``'s byte order, as a tuple.

    What a shipped :class:`ArrayColumn` (or a packed list) becomes in the process that
    unpickles it (no numpy needed). ``struct`` makes the tuple directly (``tolist()``
    then ``tuple()`` would copy every reference once more).
    """
    if order == sys.byteorder:
        view = memoryview(data).cast("B")
        return struct.unpack(f"{view.nbytes // _SIZES[code]}{code}", view)
    values = array(code)
    values.frombytes(data)
    values.byteswap()
    return tuple(values.tolist())


class NumpyColumn(LazyColumn):
    """A numpy column whose items are its elements (``how="iter"``: rows of a 2-D array, datetime64, str,
    object) or its ``tolist()`` values (``how="tolist"``: bool, complex, uint64, ...); made where read.

    Pickled, a slice travels as a numpy array of its rows (its data, not one object per
    item, except for dtype=object), and the worker makes the items, as here.
    """

    __slots__ = ("array", "how")

    def __init__(self, array: Any, how: str) -> None:
        self.array = array
        self.how = how

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, rows: slice) -> NumpyColumn:
        return NumpyColumn(self.array[rows], self.how)

    def items(self) -> tuple[Any, ...]:
        return _numpy_items(self.array, self.how)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_numpy_items, (self.array, self.how))


def _numpy_items(values: Any, how: str) -> tuple[Any, ...]:
    return tuple(values.tolist()) if how == "tolist" else tuple(values)


class ArrowColumn(LazyColumn):
    """An Arrow ``Array`` or ``ChunkedArray`` (immutable: no snapshot needed); its items are its ``to_pylist()``.

    Pickled, a slice travels as an Arrow array compacted to its rows (pickling a slice as it
    is would send its parent's whole buffers), so the worker process needs pyarrow.
    """

    __slots__ = ("values",)

    def __init__(self, values: Any) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, rows: slice) -> ArrowColumn:
        lo, hi, _ = rows.indices(len(self.values))
        return ArrowColumn(self.values.slice(lo, max(0, hi - lo)))

    def items(self) -> tuple[Any, ...]:
        return _arrow_items(self.values)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_arrow_items, (_compacted(self.values),))


def _arrow_items(values: Any) -> tuple[Any, ...]:
    return tuple(values.to_pylist())


def _compacted(values: Any) -> Any:
    """``values`` with buffers cut to its rows (one Array), or as it is when Arrow cannot concatenate its type."""
    pa = sys.modules["pyarrow"]
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if not chunks:
        return values
    try:
        return pa.concat_arrays(chunks)
    except (pa.ArrowException, TypeError, ValueError):  # an extension type Arrow cannot concatenate
        return values


_SIZES = {code: struct.calcsize(code) for code in "bhiqd"}  # bytes per value; native: the `array` module's sizes

# numpy dtype (kind, itemsize) -> the dtype the buffer is kept in and its `array` typecode;
# tolist() of the original and of the kept dtype give equal Python numbers. Absent (bool,
# uint64, complex, float128): a NumpyColumn of tolist() values.
_ARRAY_CODES = {
    ("f", 8): ("float64", "d"),
    ("f", 4): ("float64", "d"),
    ("f", 2): ("float64", "d"),
    ("i", 8): ("int64", "q"),
    ("i", 4): ("int32", "i"),
    ("i", 2): ("int16", "h"),
    ("i", 1): ("int8", "b"),
    ("u", 4): ("int64", "q"),
    ("u", 2): ("int32", "i"),
    ("u", 1): ("int16", "h"),
}

# Arrow type name -> `array` typecode of the types whose values buffer tolist() reads as to_pylist() does
_ARROW_CODES = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "double": "d"}


def _numpy_column(value: Any) -> tuple[Any, ...] | LazyColumn:
    np = sys.modules["numpy"]
    if value.ndim > 1:
        # rows: views of the caller's array, as iterating it gives them (a view of it, so that
        # a later change of its shape does not change the map's items)
        return NumpyColumn(value[:], "iter")
    kept = _ARRAY_CODES.get((value.dtype.kind, value.dtype.itemsize))
    if kept is not None and array(kept[1]).itemsize == np.dtype(kept[0]).itemsize:
        # a copy in native order (the snapshot; one memcpy when the dtype is kept as it is)
        snapshot = np.array(value, dtype=kept[0], order="C", copy=True)
        return ArrayColumn(_typed(_bytes_of(snapshot), kept[1]), kept[1])
    if value.dtype.kind == "O":
        return tuple(value)  # the objects themselves, each pickled on its own anyway (and a Failure among them is seen)
    how = "tolist" if value.dtype.kind in _NUMPY_PLAIN_KINDS else "iter"
    return NumpyColumn(np.array(value, copy=True), how)  # the snapshot


def _arrow_column(value: Any) -> LazyColumn:
    code = _ARROW_CODES.get(str(value.type))
    if code is None or value.null_count:
        return ArrowColumn(value)
    chunks = value.chunks if isinstance(value, sys.modules["pyarrow"].ChunkedArray) else [value]
    size = array(code).itemsize
    # the values' bytes: the chunks' buffers cut to their rows (Arrow buffers are immutable:
    # one chunk is used in place, several are joined)
    parts = [_bytes_of(c.buffers()[1])[c.offset * size : (c.offset + len(c)) * size] for c in chunks if len(c)]
    data = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))  # none: b"", no rows
    return ArrayColumn(_typed(data, code), code)


def _bytes_of(buffer: Any) -> memoryview:
    return memoryview(buffer).cast("B")


def _typed(data: memoryview, code: str) -> memoryview:
    """``data`` (bytes) read-only, as values of typecode ``code``."""
    return data.cast(code).toreadonly()  # type: ignore[call-overload,no-any-return]


def items_of(column: Any) -> Any:
    """A column's items: a :class:`LazyColumn`'s, made now; any other column itself."""
    return column.items() if isinstance(column, LazyColumn) else column


def as_column(value: Any) -> tuple[Any, ...] | LazyColumn | None:
    """The items of ``value`` as a tuple (a snapshot: the user's column may change while the map runs),
    or, for a numpy or Arrow column, a :class:`LazyColumn` (a snapshot of its buffer; Arrow's is immutable).

    Returns:
        The column; None when ``value`` is not a column (see :func:`column_error`).
    """
    if isinstance(value, _PLAIN):
        return tuple(value)
    if _of("numpy", value, "ndarray"):
        return _numpy_column(value) if value.ndim else None
    if _of("pandas", value, "Series", "Index"):
        return tuple(value)
    if _of("pyarrow", value, "Array", "ChunkedArray"):
        return _arrow_column(value)
    return None


def is_column(value: Any) -> bool:
    """Whether :func:`as_column` takes ``value`` (without reading its items)."""
    if isinstance(value, _PLAIN):
        return True
    if _of("numpy", value, "ndarray"):
        return bool(value.ndim)
    return _of("pandas", value, "Series", "Index") or _of("pyarrow", value, "Array", "ChunkedArray")


def column_error(value: Any, what: str) -> ArgumentTypeError:
    """The error for a ``map_over`` value that is not a column; ``what`` names it (``map_over input `x```)."""
    kind = type(value).__name__
    if isinstance(value, Iterator):
        hint = (
            f"A {kind} is a one-shot iterator: a map needs the number of items before it starts and may "
            "read an item again. Pass list(...) of it."
        )
    elif _library(value) == "pandas":
        hint = "Map over one column of a DataFrame (df['name']), or over its rows as a list of records."
    elif _library(value) == "numpy":
        hint = "A 0-d array is one value, not a column: pass it as a shared input, or map over [value]."
    else:
        hint = (
            "Pass list(...) of it; an input that is one value (even a sequence) is shared by every item "
            "when not in map_over."
        )
    return ArgumentTypeError(f"{what} must be a column of items ({ALLOWED}); got {kind}. {hint}")
