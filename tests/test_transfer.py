"""What travels between a process map's caller and its workers: columns of plain numbers as one
buffer each, the rest pickled with protocol 5 (large buffers out of band). Values come back equal
and of the same type, on both cores, whatever the pickle protocol of the executor."""

from __future__ import annotations

import enum
import math
import multiprocessing
import pickle
import sys
from array import array
from concurrent.futures import ProcessPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes._call import Items
from hypernodes._run.slices import SliceResult, slice_result
from hypernodes._run.tasks import ShippedItems

from .conftest import NO_EXTENSIONS, load_core


def same(a: list[Any], b: list[Any]) -> bool:
    """Equal values of the same types, NaN equal to NaN and -0.0 told from 0.0."""
    return [type(x) for x in a] == [type(x) for x in b] and list(map(repr, a)) == list(map(repr, b))


def unpacked(packed: tuple[str, bytes]) -> list[Any]:
    code, data = packed
    return memoryview(data).cast(code).tolist()


class Color(enum.IntEnum):
    RED = 1


columns = st.one_of(
    st.lists(st.integers(-(2**70), 2**70)),
    st.lists(st.integers(-200, 200)),
    st.lists(st.integers(-(2**40), 2**40)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True)),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(), st.booleans(), st.none(), st.text(max_size=2))),
    st.tuples(st.integers(), st.integers()),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # `core` holds no state between inputs
@given(columns)
def test_pack_column_gives_the_values_back_or_declines(core: ModuleType, column: Any) -> None:
    """pack_column either declines (None) or gives a buffer whose values equal the column's, with
    their types; it packs exactly the lists and tuples of exact ints within 64 bits or exact floats."""
    packed = core.pack_column(column)
    ints = all(type(v) is int for v in column) and all(-(2**63) <= v < 2**63 for v in column)
    floats = all(type(v) is float for v in column)
    assert (packed is not None) == (len(column) > 0 and (ints or floats))
    if packed is not None:
        assert same(unpacked(packed), list(column))


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled core is not built")
@given(columns)
def test_both_cores_pack_the_same_bytes(column: Any) -> None:
    """The compiled core packs every column exactly as its twin does (typecode and bytes)."""
    assert load_core("cython").pack_column(column) == load_core("python").pack_column(column)


@pytest.mark.parametrize(
    ("column", "code"),
    [
        ([0, 127, -128], "b"),
        ([128], "h"),
        ([-32768, 32767], "h"),
        ([32768], "i"),
        ([-(2**31), 2**31 - 1], "i"),
        ([2**31], "q"),
        ([-(2**63), 2**63 - 1], "q"),
        ([0.5, -0.0, math.inf], "d"),
    ],
)
def test_pack_column_picks_the_narrowest_type(core: ModuleType, column: list[Any], code: str) -> None:
    """Ints go in the narrowest of int8, int16, int32, int64 holding them all; floats as doubles."""
    packed = core.pack_column(column)
    assert packed is not None
    assert packed[0] == code
    assert len(packed[1]) == len(column) * array(code).itemsize


@pytest.mark.parametrize(
    "column",
    [[], [True, False], [1, True], [1, 1.0], [1.0, 1], [2**63], [Color.RED], [1, None], "ab", array("i", [1])],
)
def test_pack_column_declines_what_a_buffer_would_change(core: ModuleType, column: Any) -> None:
    """Bools, int subclasses, mixed types, ints past 64 bits, empty columns and other sequences stay pickled."""
    assert core.pack_column(column) is None


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns, st.integers(0, 3), st.integers(0, 3))
def test_unpack_column_puts_the_packed_values_in_place(core: ModuleType, column: Any, before: int, after: int) -> None:
    """unpack_column writes a packed column's values, equal and of the same types, into a list from
    an offset, leaving the rest of the list as it was."""
    packed = core.pack_column(column)
    if packed is None:
        return
    out: list[Any] = ["x"] * (before + len(column) + after)
    core.unpack_column(*packed, out, before)
    assert out[:before] == ["x"] * before
    assert out[before + len(column) :] == ["x"] * after
    assert same(out[before : before + len(column)], list(column))


@pytest.mark.parametrize(
    ("code", "data", "at", "size"),
    [("d", bytes(16), 1, 2), ("d", bytes(16), -1, 5), ("d", bytes(12), 0, 5), ("f", bytes(8), 0, 5)],
    ids=["past the end", "negative offset", "partial value", "unknown typecode"],
)
def test_unpack_column_refuses_what_does_not_fit(core: ModuleType, code: str, data: bytes, at: int, size: int) -> None:
    """Values that would run past the list, a ragged buffer or a typecode pack_column never makes:
    a ValueError, and the list is left as it was."""
    out: list[Any] = [None] * size
    with pytest.raises(ValueError, match="unpack_column"):
        core.unpack_column(code, data, out, at)
    assert out == [None] * size


def test_a_slice_result_is_placed_into_the_call_results(core: ModuleType) -> None:
    """SliceResult.place puts packed and pickled columns at the slice's offset of each output."""
    data = pickle.loads(pickle.dumps(slice_result(core.pack_column, [[1.5, 2.5], ["a", "b"]], None), protocol=5))
    results: list[list[Any]] = [[None] * 4, [None] * 4]
    columns, events = data.unpickled()
    data.place(columns, results, 1, core.unpack_column)
    assert results == [[None, 1.5, 2.5, None], [None, "a", "b", None]]
    assert events is None


def _opened(result: SliceResult, protocol: int) -> tuple[list[Any], Any]:
    again: SliceResult = pickle.loads(pickle.dumps(result, protocol=protocol))
    return again.opened()


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_slice_result_opens_to_its_columns_and_events(core: ModuleType, protocol: int) -> None:
    """Packed and pickled columns, and the events, come back as they were, through either protocol."""
    cols = [[1, 2, 300], [0.5, math.nan], ["a", None], [True, 2], [Color.RED]]
    result = slice_result(core.pack_column, cols, [("event", 1)])
    assert [j for j, _, _ in result.columns] == [0, 1]
    got, events = _opened(result, protocol)
    assert events == [("event", 1)]
    assert all(same(g, c) for g, c in zip(got, cols, strict=True))


@pytest.mark.parametrize("protocol", [4, 5])
def test_numpy_outputs_travel_out_of_band_and_stay_writable(core: ModuleType, protocol: int) -> None:
    """Arrays travel beside the pickle (protocol 5) or inside it (older protocols); either way they
    come back equal, with their dtype, and writable exactly when they were."""
    writable = np.arange(1000, dtype=np.float32)
    frozen = np.arange(10)
    frozen.flags.writeable = False
    result = slice_result(core.pack_column, [[writable, frozen]], None)
    assert len(result.oob) == 2
    (got,), _ = _opened(result, protocol)
    assert got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], writable)
    np.testing.assert_array_equal(got[1], frozen)
    assert got[0].flags.writeable
    got[0][0] = 7.0  # its own memory, not the worker's
    assert writable[0] == 0.0


def test_packed_columns_from_a_machine_of_the_other_byte_order(core: ModuleType) -> None:
    """A buffer written in the other byte order is read swapped."""
    other = "big" if sys.byteorder == "little" else "little"
    values = array("i", [1, -2, 3 << 20])
    values.byteswap()
    result = SliceResult(pickle.dumps(([None], None)), ((0, "i", values.tobytes()),), (), other)
    assert result.opened()[0] == [[1, -2, 3 << 20]]


def test_shipped_items_are_the_slice_a_worker_runs(core: ModuleType) -> None:
    """A slice shipped with packed columns is, at the worker, the same items as the slice itself."""
    xs = tuple(range(-5, 295))
    names = tuple(f"n{i}" for i in range(300))
    items = Items((0, 1), (xs, names), False, 0, 300, 0).between(100, 250)
    packed = [core.pack_column(c) for c in items.columns]
    assert packed[0] is not None
    assert packed[1] is None
    shipped: ShippedItems = pickle.loads(pickle.dumps(ShippedItems(items, packed), protocol=4))
    again, detached = shipped.items(), items.detached()
    assert (again.columns, again.base, again.lo, again.hi) == (detached.columns, detached.base, 0, 150)
    assert isinstance(shipped.columns[0], bytes)


VALUES = [
    [1, 2, 3],
    [2**40, -(2**40)],
    [2**70, 1],
    [0.5, math.nan, -0.0],
    [True, False],
    [1, None],
    [Color.RED, 1],
    ["a", "b"],
]


@node(output_name="out")
def pick(i: int, table: list[list[Any]], k: int) -> Any:
    return table[k][i]


@node(output_name=("same", "half"))
def echo(v: Any) -> tuple[Any, Any]:
    return v, v / 2 if type(v) in (int, float) else v


def test_process_maps_return_values_of_every_kind_unchanged(core: ModuleType) -> None:
    """Whatever the outputs are (numbers of any width, bools, None, enums, strings, ints past 64
    bits), a "parallel" map returns what the sequential one does, with the same types."""
    n = 40
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        for k, values in enumerate(VALUES):
            inputs = {"i": [j % len(values) for j in range(n)], "table": VALUES, "k": k}
            expected = Pipeline([pick]).map(inputs=inputs, map_over="i")
            got = Pipeline([pick], backend=engine).map(inputs=inputs, map_over="i")
            assert same(got["out"], expected["out"]), values


def test_mapped_numbers_travel_packed_and_come_back_in_order(core: ModuleType) -> None:
    """Mapped int and float lists (packed on the way out) and numeric outputs (packed on the way
    back) keep their order and types across slices of different widths, on a stdlib process pool
    too (an older pickle protocol before Python 3.14)."""
    vs: list[Any] = [*range(-300, 300), *[x / 3 for x in range(200)], 2**50, -(2**62)]
    expected = Pipeline([echo]).map(inputs={"v": vs}, map_over="v")
    # spawn: forking a process that runs threads is deprecated (and warned about) from 3.12 on
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        for executor in ("parallel", pool):
            with HypernodesEngine(map_executor=executor, max_workers=2) as engine:
                got = Pipeline([echo], backend=engine).map(inputs={"v": vs}, map_over="v")
            assert same(got["same"], expected["same"])
            assert same(got["half"], expected["half"])
