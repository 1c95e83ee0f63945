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

numpy, pandas and pyarrow are never imported here: a value is recognised by its
type's module, and only a value of that library's type reaches that library's code.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator
from typing import Any

from .errors import ArgumentTypeError

__all__ = ["ALLOWED", "ArrayColumn", "as_column", "column_error", "is_column", "items_of"]

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


class ArrayColumn:
    """A 1-D numeric numpy column held as one native buffer; its items (Python numbers) are made where read.

    In this process they are made once, on first use (``items()``, what ``tolist()``
    gives). A slice sent to a worker process travels as its rows' bytes and a typecode
    (pickled by :meth:`__reduce__`, or cut from :meth:`packed` by the process driver), so
    no per-item object is made here nor pickled: each worker makes its own slice's items.
    """

    __slots__ = ("array", "code")

    def __init__(self, array: Any, code: str) -> None:
        self.array = array  # 1-D, C-contiguous, native byte order, the dtype `code` names
        self.code = code  # the `array` module's typecode of the same items

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, rows: slice) -> ArrayColumn:
        return ArrayColumn(self.array[rows], self.code)

    def items(self) -> tuple[Any, ...]:
        """The items, as ``tolist()`` makes them."""
        return tuple(self.array.tolist())

    def packed(self) -> tuple[str, bytes]:
        """``(typecode, bytes)`` as ``core.pack_column`` packs a list of the same numbers."""
        return self.code, self.array.tobytes()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpacked, (*self.packed(), sys.byteorder))


def _unpacked(code: str, data: bytes, order: str) -> tuple[Any, ...]:
    """A shipped :class:`ArrayColumn`'s items, made in the process that unpickles it (no numpy needed)."""
    values = array(code, data)
    if order != sys.byteorder:
        values.byteswap()
    return tuple(values.tolist())


# numpy dtype (kind, itemsize) -> the dtype the buffer is kept in and its `array` typecode;
# tolist() of the original and of the kept dtype give equal Python numbers. Absent (bool,
# uint64, complex, float128): the items are made up front.
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


def _array_column(value: Any) -> ArrayColumn | None:
    kept = _ARRAY_CODES.get((value.dtype.kind, value.dtype.itemsize))
    if kept is None or array(kept[1]).itemsize != sys.modules["numpy"].dtype(kept[0]).itemsize:
        return None
    # a copy in native order (the snapshot; one memcpy when the dtype is kept as it is)
    return ArrayColumn(sys.modules["numpy"].array(value, dtype=kept[0], order="C", copy=True), kept[1])


def items_of(column: Any) -> Any:
    """A column's items: an :class:`ArrayColumn`'s, made now; any other column itself."""
    return column.items() if type(column) is ArrayColumn else column


def as_column(value: Any) -> tuple[Any, ...] | ArrayColumn | None:
    """The items of ``value`` as a tuple (a snapshot: the user's column may change while the map runs),
    or, for a 1-D numeric numpy array, an :class:`ArrayColumn` (a snapshot of its buffer).

    Returns:
        The column; None when ``value`` is not a column (see :func:`column_error`).
    """
    if isinstance(value, _PLAIN):
        return tuple(value)
    if _of("numpy", value, "ndarray"):
        if value.ndim == 0:
            return None
        if value.ndim == 1 and value.dtype.kind in _NUMPY_PLAIN_KINDS:
            return _array_column(value) or tuple(value.tolist())
        return tuple(value)  # rows of a 2-D array; datetime64, str, object: numpy's own elements
    if _of("pandas", value, "Series", "Index"):
        return tuple(value)
    if _of("pyarrow", value, "Array", "ChunkedArray"):
        return tuple(value.to_pylist())
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
