"""A map's results as frames and arrays: what ``MapResult.to_pandas/to_arrow/to_numpy`` build.

One row per item, in item order, the row label being the item's index in the map.
A failed item (``on_error="continue"``) keeps its row by default: the cells that
depended on the failure are missing (``None``/NaN in pandas, null in Arrow) and a
``failure`` column, present only when some item failed, says why (the
:class:`~hypernodes.Failure` in pandas, its ``node: type: message`` text in Arrow).
``failures="drop"`` keeps only the good items; ``failures="raise"`` raises the first
failure. A failure never turns into a value that looks computed.

pandas, pyarrow and numpy are imported when a method is called, never before.
This module knows the failure marker only as the ``marker`` type it is handed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from ._columns import items_of
from .errors import ArgumentTypeError

__all__ = ["FAILURE_COLUMN", "FRAME_FAILURES", "MappedInputs", "arrow_table", "numpy_array", "pandas_frame"]

FAILURE_COLUMN = "failure"
FRAME_FAILURES = ("column", "drop", "raise")
"""What ``failures=`` takes: a ``failure`` column (default), drop the failed items, raise the first."""

MappedInputs = tuple[tuple[str, ...], tuple[Any, ...], bool]
"""A map's mapped inputs: their names, their columns (the map's snapshot: tuples of items, or
``ArrayColumn``s), product mode."""


def check_failures_option(failures: Any, where: str) -> None:
    """Raises ArgumentTypeError unless ``failures`` is one of :data:`FRAME_FAILURES`."""
    if failures not in FRAME_FAILURES or not isinstance(failures, str):
        raise ArgumentTypeError(f"{where}: failures must be one of {FRAME_FAILURES!r}, got {failures!r}.")


def input_columns(mapped: MappedInputs | None, n: int, where: str) -> dict[str, list[Any]]:
    """``{mapped input: [its value per item]}`` (a product map's combinations spelled out)."""
    if mapped is None:
        raise ArgumentTypeError(
            f"{where}: inputs=True needs the map's mapped inputs, which this result does not hold "
            "(it was built by hand or by an engine that does not record them)."
        )
    names, sources, product = mapped
    columns = [items_of(c) for c in sources]  # a numeric numpy column's items, made now
    if not product:
        return {name: list(column) for name, column in zip(names, columns)}
    rows = list(itertools.product(*columns)) if n else []
    return {name: [row[j] for row in rows] for j, name in enumerate(names)}


def _table(
    outputs: Mapping[str, list[Any]],
    mapped: MappedInputs | None,
    inputs: bool,
    failed: Sequence[int],
    marker: type,
    where: str,
    drop: bool,
) -> tuple[dict[str, list[Any]], list[int] | None]:
    """The columns (inputs first) with failure cells blanked or failed rows dropped, and the kept rows (None: all)."""
    n = len(next(iter(outputs.values()), ()))
    columns: dict[str, list[Any]] = {}
    if inputs:
        columns.update(input_columns(mapped, n, where))
        clash = sorted(set(columns) & set(outputs))
        if clash:
            raise ArgumentTypeError(f"{where}: inputs=True would give two columns named {clash}.")
    columns.update(outputs)
    if not failed:
        return columns, None
    if drop:
        bad = set(failed)
        keep = [i for i in range(n) if i not in bad]
        return {name: [column[i] for i in keep] for name, column in columns.items()}, keep
    blanked: dict[str, list[Any]] = {}
    for name, column in columns.items():
        if name in outputs and any(type(column[i]) is marker for i in failed):
            column = list(column)  # a copy: the result itself keeps its markers
            for i in failed:
                if type(column[i]) is marker:
                    column[i] = None
        blanked[name] = column
    return blanked, None


def pandas_frame(
    outputs: Mapping[str, list[Any]],
    mapped: MappedInputs | None,
    failures_found: Sequence[Any],
    marker: type,
    inputs: bool,
    failures: str,
) -> Any:
    """The pandas ``DataFrame`` of ``MapResult.to_pandas`` (see the module docstring)."""
    import pandas as pd

    failed = sorted({f.item for f in failures_found})
    columns, keep = _table(outputs, mapped, inputs, failed, marker, "to_pandas()", failures == "drop")
    if failed and failures == "column":
        if FAILURE_COLUMN in columns:
            raise ArgumentTypeError(
                f"to_pandas(): an output or input is named `{FAILURE_COLUMN}`, the column that lists failures; "
                "pass failures='drop' (or rename it)."
            )
        n = len(next(iter(columns.values()), ()))
        why: list[Any] = [None] * n
        for f in failures_found:
            if why[f.item] is None:  # an item's first failure (several when independent nodes failed)
                why[f.item] = f
        columns[FAILURE_COLUMN] = why
    return pd.DataFrame(columns, index=keep, copy=False)


def arrow_table(
    outputs: Mapping[str, list[Any]],
    mapped: MappedInputs | None,
    failures_found: Sequence[Any],
    marker: type,
    inputs: bool,
    failures: str,
) -> Any:
    """The pyarrow ``Table`` of ``MapResult.to_arrow`` (an ``item`` column when failed rows are dropped)."""
    import pyarrow as pa

    failed = sorted({f.item for f in failures_found})
    columns, keep = _table(outputs, mapped, inputs, failed, marker, "to_arrow()", failures == "drop")
    if keep is not None:
        columns = {"item": keep, **columns}
    if failed and failures == "column":
        n = len(next(iter(columns.values()), ()))
        why: list[str | None] = [None] * n
        for f in failures_found:
            if why[f.item] is None:
                why[f.item] = f"{f.node}: {f.type_name}: {f.message}"
        columns[FAILURE_COLUMN] = why
    return pa.table({name: pa.array(column) for name, column in columns.items()})


def numpy_array(
    column: list[Any], name: str, failures_found: Sequence[Any], marker: type, failures: str, dtype: Any
) -> Any:
    """The numpy array of ``MapResult.to_numpy`` for output ``name``.

    ``failures="drop"`` keeps the good items' values; "raise" (the caller's default) refuses a
    column that holds a failure; "column" is not an array's option (raise).
    """
    import numpy as np

    bad = {f.item for f in failures_found if type(column[f.item]) is marker}
    if bad:
        if failures != "drop":
            raise ArgumentTypeError(
                f"to_numpy({name!r}): items {sorted(bad)[:10]} failed, so output `{name}` has no value for them. "
                "Pass failures='drop' for the good items' values, or use to_pandas() (missing values)."
            )
        column = [v for i, v in enumerate(column) if i not in bad]
    array = np.asarray(column, dtype=dtype)
    if dtype is None and array.dtype.kind not in "biufc":
        kinds = sorted({type(v).__name__ for v in column[:1000]})
        raise ArgumentTypeError(
            f"to_numpy({name!r}) takes a numeric output (int, float, complex, bool values); `{name}` holds "
            f"{', '.join(kinds)} values (numpy dtype {array.dtype}). Use to_pandas(), or pass dtype=object."
        )
    return array
