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
from collections.abc import Iterator
from typing import Any

from .errors import ArgumentTypeError

__all__ = ["ALLOWED", "as_column", "column_error", "is_column"]

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


def as_column(value: Any) -> tuple[Any, ...] | None:
    """The items of ``value`` as a tuple (a snapshot: the user's column may change while the map runs).

    Returns:
        The items; None when ``value`` is not a column (see :func:`column_error`).
    """
    if isinstance(value, _PLAIN):
        return tuple(value)
    if _of("numpy", value, "ndarray"):
        if value.ndim == 0:
            return None
        if value.ndim == 1 and value.dtype.kind in _NUMPY_PLAIN_KINDS:
            return tuple(value.tolist())
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
