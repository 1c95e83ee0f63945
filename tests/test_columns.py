"""Columns in: ``map_over`` takes any sized, indexable column and maps it as it maps the column's list."""

from __future__ import annotations

import pickle
import pickletools
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hypernodes import ArgumentTypeError, HypernodesEngine, Pipeline, node
from hypernodes._columns import ArrayColumn, ArrowColumn, LazyColumn, NumpyColumn, as_column

from .kinds import EXECUTOR_KINDS


@node(output_name="y")
def scale(x: Any, k: Any) -> Any:
    return x * k


@node(output_name="kind")
def kind_of(x: Any) -> str:
    return type(x).__name__


@node(output_name="total")
def total(x: Any, w: Any) -> Any:
    return x + w


def _columns() -> dict[str, tuple[Any, list[Any]]]:
    """name -> (column, the list a user would map instead)."""
    ints = [3, 1, 4, 1, 5]
    floats = [0.5, 1.5, -2.0, 3.25, 8.0]
    return {
        "list": (list(ints), ints),
        "tuple": (tuple(ints), ints),
        "range": (range(5), [0, 1, 2, 3, 4]),
        "numpy int64": (np.array(ints, dtype=np.int64), ints),
        "numpy float32": (np.array(floats, dtype=np.float32), floats),
        "numpy bool": (np.array([True, False, True, True, False]), [True, False, True, True, False]),
        "pandas Series": (pd.Series(floats), floats),
        "pandas Index": (pd.Index(ints), ints),
        "arrow Array": (pa.array(ints), ints),
        "arrow ChunkedArray": (pa.chunked_array([floats[:2], floats[2:]]), floats),
    }


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_every_column_type_maps_like_its_list(kind: str, make_executor: Callable[[str], Any]) -> None:
    """On every executor, a map over each column type gives the list map's results, values and types alike."""
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([scale, kind_of], backend=engine)
        for name, (column, as_list) in _columns().items():
            got = pipeline.map({"x": column, "k": 2}, map_over="x")
            want = pipeline.map({"x": as_list, "k": 2}, map_over="x")
            assert got == want, name
            assert [type(v) for v in got["y"]] == [type(v) for v in want["y"]], name
        # two columns of different libraries zipped; a shared array is one value for every item
        got = Pipeline([total], backend=engine).map(
            {"x": pd.Series([1, 2, 3]), "w": pa.array([10, 20, 30])}, map_over=["x", "w"]
        )
        assert got == {"total": [11, 22, 33]}
        shared = pipeline.map({"x": np.array([1, 2]), "k": np.array([1.0, 10.0])}, map_over="x", output_name="y")
        assert [v.tolist() for v in shared["y"]] == [[1.0, 10.0], [2.0, 20.0]]


def test_product_mode_over_columns() -> None:
    """map_mode="product" takes columns of any type, the last varying fastest, as for lists."""
    pipeline = Pipeline([total])
    got = pipeline.map({"x": range(2), "w": np.array([10, 20, 30])}, map_over=["x", "w"], map_mode="product")
    assert got == pipeline.map({"x": [0, 1], "w": [10, 20, 30]}, map_over=["x", "w"], map_mode="product")
    assert got == {"total": [10, 20, 30, 11, 21, 31]}


def test_numpy_items_are_python_scalars_for_numeric_dtypes_and_numpy_elements_otherwise() -> None:
    """Numeric and bool arrays give Python scalars; datetime64 and str arrays keep numpy's elements;
    a 2-D array is mapped over its rows; Arrow nulls are None."""
    pipeline = Pipeline([kind_of])
    assert pipeline.map({"x": np.arange(2, dtype=np.uint8)}, map_over="x")["kind"] == ["int", "int"]
    assert pipeline.map({"x": np.array([1 + 2j])}, map_over="x")["kind"] == ["complex"]
    days = np.array(["2026-01-01", "2026-01-02"], dtype="datetime64[ns]")
    assert pipeline.map({"x": days}, map_over="x")["kind"] == ["datetime64", "datetime64"]
    assert pipeline.map({"x": np.array(["a", "b"])}, map_over="x")["kind"] == ["str_", "str_"]
    rows = Pipeline([scale]).map({"x": np.arange(6).reshape(3, 2), "k": 10}, map_over="x")["y"]
    assert [r.tolist() for r in rows] == [[0, 10], [20, 30], [40, 50]]
    assert pipeline.map({"x": pa.array([1, None])}, map_over="x")["kind"] == ["int", "NoneType"]


def test_a_shared_input_stays_one_value_whatever_its_type() -> None:
    """An input not in map_over reaches every item as the very object given, a column or not."""
    seen: list[Any] = []

    @node(output_name="n")
    def look(x: int, table: Any) -> int:
        seen.append(table)
        return x

    series = pd.Series([1, 2, 3])
    assert Pipeline([look]).map({"x": np.array([1, 2]), "table": series}, map_over="x") == {"n": [1, 2]}
    assert len(seen) == 2
    assert all(s is series for s in seen)


def test_the_map_reads_a_snapshot_of_the_column() -> None:
    """A node that changes the mapped array while the map runs does not change the items."""
    column = np.array([1, 2, 3])

    @node(output_name="y")
    def meddle(x: int) -> int:
        column[:] = 0
        return x

    assert Pipeline([meddle]).map({"x": column}, map_over="x") == {"y": [1, 2, 3]}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ((i for i in range(2)), "got generator. A generator is a one-shot iterator"),
        (iter([1, 2]), "got list_iterator. A list_iterator is a one-shot iterator"),
        ({1, 2}, "got set. Pass list(...) of it"),
        (pd.DataFrame({"a": [1]}), "got DataFrame. Map over one column of a DataFrame"),
        (np.float64(2.0), "got float64"),
        (np.array(5), "got ndarray. A 0-d array is one value"),
    ],
    ids=["generator", "iterator", "set", "DataFrame", "numpy scalar", "0-d array"],
)
def test_values_that_are_no_column_are_refused_before_any_node_runs(value: Any, fragment: str) -> None:
    """One-shot iterables and non-columns get an error naming what was found and what is allowed."""
    calls: list[int] = []

    @node(output_name="y")
    def count(x: Any) -> Any:
        calls.append(1)
        return x

    with pytest.raises(ArgumentTypeError, match="map_over input `x` must be a column of items") as info:
        Pipeline([count]).map({"x": value}, map_over="x")
    assert fragment in str(info.value)
    assert "numpy array, pandas Series/Index or Arrow Array/ChunkedArray" in str(info.value)
    assert not calls


def test_a_nested_pipeline_maps_over_a_column() -> None:
    """as_node(map_over=...) takes the same columns as map()."""
    inner = Pipeline([scale], name="inner").as_node(map_over="x", name="each")
    assert Pipeline([inner]).run({"x": np.array([1, 2]), "k": 3}) == {"y": [3, 6]}


def test_columns_need_no_import_of_their_libraries() -> None:
    """Mapping lists (and reading results) imports neither numpy, pandas nor pyarrow: the column
    check reads ``sys.modules`` and recognises those types only when they are already loaded."""
    code = (
        "import sys, hypernodes\n"
        "p = hypernodes.Pipeline([hypernodes.node(lambda x: x + 1, output_name='y')])\n"
        "r = p.map({'x': (1, 2)}, map_over='x')\n"
        "assert r == {'y': [2, 3]} and r.failures == ()\n"
        "try:\n"
        "    p.map({'x': {1}}, map_over='x')\n"
        "except hypernodes.ArgumentTypeError:\n"
        "    pass\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _CountingExecutor(Executor):
    """A process executor's stand-in: each task is pickled (protocol 5, as loky does) and kept, then run on a thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(2)
        self.max_workers = 2
        self.tasks: list[bytes] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        data = cloudpickle.dumps((fn, args, kwargs), protocol=5)
        self.tasks.append(data)
        return self._pool.submit(_run_pickled, data)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _run_pickled(data: bytes) -> Any:
    fn, args, kwargs = pickle.loads(data)
    return pickle.loads(pickle.dumps(fn(*args, **kwargs), protocol=5))


def test_a_numpy_column_reaches_worker_processes_as_its_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A numeric numpy column mapped on a process executor is never made into Python numbers in
    the caller, and travels as its bytes: no pickled float per item (each slice's items are made
    in its worker). Product mode ships its columns whole the same way."""
    made: list[int] = []
    original = ArrayColumn.items
    monkeypatch.setattr(ArrayColumn, "items", lambda self: made.append(len(self)) or original(self))
    n = 20_000
    column = np.arange(n, dtype=np.float64) / 4
    executor = _CountingExecutor()
    with HypernodesEngine(map_executor=executor) as engine:
        pipeline = Pipeline([scale], backend=engine)
        got = pipeline.map({"x": column, "k": 2}, map_over="x")
        assert got["y"] == [v * 2 for v in column.tolist()]
        assert made == [], "the caller made the column's items"
        floats = [op.name for task in executor.tasks for op, _, _ in pickletools.genops(task) if "FLOAT" in op.name]
        assert floats == []
        assert sum(map(len, executor.tasks)) < 8 * n + 200_000  # the buffer, the payload, the slices' framing
        product = Pipeline([total], backend=engine).map(
            {"x": np.array([1, 2], dtype=np.int32), "w": np.array([0.5, 1.5])}, map_over=["x", "w"], map_mode="product"
        )
        assert product == {"total": [1.5, 2.5, 2.5, 3.5]}
        assert made == []
    executor.shutdown()
    assert Pipeline([scale]).map({"x": column[:3], "k": 2}, map_over="x") == {"y": [0.0, 0.5, 1.0]}
    assert made == [3], "in-process maps make the items once"


@node(output_name="seen")
def describe(x: Any) -> Any:
    """What a node sees of its item, in a form that compares across processes (an array: its class,
    dtype, shape and values; a scalar: its type and repr, so that NaT equals NaT)."""
    if isinstance(x, np.ndarray):
        return ("ndarray", x.dtype.str, x.shape, repr(x.tolist()))
    return (type(x).__module__, type(x).__name__, repr(x))


def _described(items: Any) -> list[Any]:
    return [describe.func(x) for x in items]


def _lazy_columns() -> dict[str, tuple[Any, list[Any]]]:
    """name -> (column, the items a node must see: what iterating it gives, or tolist()/to_pylist())."""
    grid = np.arange(24, dtype=np.float32).reshape(6, 4)
    cube = np.arange(24).reshape(6, 2, 2)
    fortran = np.asfortranarray(np.arange(12.0).reshape(6, 2))
    days = np.array(["2026-01-01", "NaT", "2026-01-03"], dtype="datetime64[ns]")
    words = np.array(["a", "bb", "ccc"])
    flags = np.array([True, False, True])
    big = np.array([2**64 - 1, 0], dtype=np.uint64)
    cplx = np.array([1 + 2j, -3j])
    nulls = pa.array([1, None, 3, None])
    texts = pa.array(["x", None, "zz"])
    chunks = pa.chunked_array([[1.5, 2.5], [], [3.5]])
    offset = pa.array(np.arange(10, dtype=np.int64)).slice(3, 5)
    stamps = pa.array([0, 10**9], type=pa.timestamp("s"))
    lists = pa.array([[1, 2], None, []])
    bools = pa.array([True, None, False])
    return {
        "numpy 2-D rows": (grid, list(grid)),
        "numpy 3-D rows": (cube, list(cube)),
        "numpy Fortran-order rows": (fortran, list(fortran)),
        "numpy datetime64": (days, list(days)),
        "numpy str": (words, list(words)),
        "numpy bool": (flags, flags.tolist()),
        "numpy uint64": (big, big.tolist()),
        "numpy complex": (cplx, cplx.tolist()),
        "arrow ints with nulls": (nulls, nulls.to_pylist()),
        "arrow strings": (texts, texts.to_pylist()),
        "arrow chunked floats": (chunks, chunks.to_pylist()),
        "arrow sliced int64": (offset, offset.to_pylist()),
        "arrow timestamps": (stamps, stamps.to_pylist()),
        "arrow lists": (lists, lists.to_pylist()),
        "arrow bools": (bools, bools.to_pylist()),
        "arrow empty chunked": (pa.chunked_array([], type=pa.int64()), []),
    }


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_arrow_and_numpy_columns_give_each_node_the_items_iteration_gives(
    kind: str, make_executor: Callable[[str], Any]
) -> None:
    """2-D arrays (their rows), numpy dtypes without a plain buffer, and Arrow arrays of any type
    travel as their buffers, yet every node sees exactly the items it saw when they were converted
    up front: rows as arrays (dtype, shape, values), numpy scalars, Python values, None for nulls."""
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([describe], backend=engine)
        for name, (column, items) in _lazy_columns().items():
            assert pipeline.map({"x": column}, map_over="x") == {"seen": _described(items)}, name
        product = Pipeline([total], backend=engine).map(
            {"x": pa.array([1, None]).fill_null(5), "w": np.array([[1, 2], [3, 4]])},
            map_over=["x", "w"],
            map_mode="product",
        )
        assert [v.tolist() for v in product["total"]] == [[2, 3], [4, 5], [6, 7], [8, 9]]


def test_a_2d_array_is_mapped_over_views_of_its_rows_in_process() -> None:
    """In this process a 2-D array's items are its rows as iterating it gives them: views of the caller's data."""
    grid = np.arange(6.0).reshape(3, 2)

    @node(output_name="shares")
    def shares(x: Any) -> bool:
        return bool(np.shares_memory(x, grid))

    assert Pipeline([shares]).map({"x": grid}, map_over="x") == {"shares": [True, True, True]}


@pytest.mark.parametrize(
    ("column", "cls"),
    [
        (np.arange(4000.0).reshape(1000, 4), NumpyColumn),
        (np.array(["2026-01-01"] * 1000, dtype="datetime64[s]"), NumpyColumn),
        (pa.array([float(i) if i % 7 else None for i in range(4000)]), ArrowColumn),
        (pa.array(np.arange(4000, dtype=np.int64)), ArrayColumn),
    ],
    ids=["numpy 2-D", "numpy datetime64", "arrow with nulls", "arrow int64"],
)
def test_arrow_and_2d_columns_reach_worker_processes_as_their_buffers(
    monkeypatch: pytest.MonkeyPatch, column: Any, cls: type[LazyColumn]
) -> None:
    """On a process executor the caller makes none of these columns' items, no task pickles one
    object per item (no float, no row array), and each slice carries its own rows only: an Arrow
    slice is compacted, not pickled with its parent's whole buffers. An Arrow column of plain
    numbers travels as bytes, needing no pyarrow where it arrives."""
    made: list[int] = []
    original = cls.items
    monkeypatch.setattr(cls, "items", lambda self: made.append(len(self)) or original(self))
    executor = _CountingExecutor()
    with HypernodesEngine(map_executor=executor) as engine:
        got = Pipeline([describe], backend=engine).map({"x": column}, map_over="x")
    executor.shutdown()
    expected = column.to_pylist() if isinstance(column, (pa.Array, pa.ChunkedArray)) else list(column)
    assert got == {"seen": _described(expected)}
    assert made == [], "the caller made the column's items"
    assert len(executor.tasks) > 1
    ops = [op.name for task in executor.tasks for op, _, _ in pickletools.genops(task)]
    assert "BINFLOAT" not in ops
    assert ops.count("REDUCE") < 50 * len(executor.tasks)  # a reduce per row would be ~1000
    size = column.nbytes if isinstance(column, np.ndarray) else column.get_total_buffer_size()
    assert sum(map(len, executor.tasks)) < size + 20_000 * len(executor.tasks)
    if cls is ArrayColumn:
        assert not any(b"pyarrow" in task for task in executor.tasks)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize(
    "value",
    [
        np.array([1.5, -0.0, np.nan, 2.0]),
        np.array([1, -2, 3, 2**40], dtype=np.int64),
        np.array([7, 8, 9, 10], dtype=np.uint16),
        np.arange(8).reshape(4, 2),
        np.array([True, False, True, False]),
        pa.array([1, 2, 3, 4], type=pa.int32()),
        pa.chunked_array([[1.0], [2.0, 3.0], [4.0]]),
        pa.array(["a", None, "c", "d"]),
    ],
    ids=["float64", "int64", "uint16", "2-D", "bool", "arrow int32", "arrow chunked", "arrow strings"],
)
def test_a_pickled_slice_of_a_column_arrives_as_its_items(value: Any, protocol: int) -> None:
    """Whatever the pickle protocol of the executor, a slice of a numpy or Arrow column unpickles
    as the tuple of its items: the same, of the same types, as the caller would have made."""
    column = as_column(value)
    assert isinstance(column, LazyColumn)
    got = pickle.loads(pickle.dumps(column[1:3], protocol=protocol))
    want = column.items()[1:3]
    assert type(got) is tuple
    assert [type(v) for v in got] == [type(v) for v in want]
    assert repr(got) == repr(want)
