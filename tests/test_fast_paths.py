"""The whole-call fast paths (``run_dict`` / ``map_zip``) against the general path, on both cores.

A call shape that passed every check once is remembered by the pipeline's
``PlanCache`` (``runs`` / ``maps``); the next call of that shape on a sequential
engine runs in one core function. These tests make the first call (general), the
second (fast), and the same call through ``prepare_*`` + ``run_call`` / ``map_call``
(always general), on random pipelines, and check that all three agree with the
reference; then that the fast path declines what it cannot check and the general
path raises the error that names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import hypernodes._core
from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes._call import fast_key, prepare_map, prepare_run
from hypernodes.engine import default_engine
from hypernodes.errors import ArgumentTypeError, MapSpecError

from .strategies import Call, MapCall, calls, map_calls

SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)

ENGINE = default_engine()  # the shared sequential engine (its loop thread is the suite's to keep)


def _output_name(call: Call) -> Any:
    wanted = call.wanted
    return wanted[0] if wanted is not None and len(wanted) == 1 else wanted  # a name, a list, or None


@SETTINGS
@given(calls())
def test_run_fast_path_matches_the_general_path(core: ModuleType, call: Call) -> None:
    """A repeated run() of a random pipeline: first call, fast second call and the general path agree."""
    pipeline = Pipeline(call.nodes())
    output_name = _output_name(call)
    first = pipeline.run(call.inputs, output_name=output_name)
    plan = pipeline.plans.runs.get((fast_key(output_name), frozenset(call.inputs)))
    prepared = prepare_run(pipeline.plans, call.inputs, output_name)
    assert (plan is not None) == (not prepared.plan.has_async)
    second = pipeline.run(dict(call.inputs), output_name=output_name)
    general = ENGINE.run_call(prepared)
    expected = call.expected()
    assert first == second == general == expected
    assert list(second) == list(general)  # the same key order: the requested order
    if plan is not None:
        assert core.run_dict(plan, plan.funcs, call.inputs) == expected


@SETTINGS
@given(map_calls())
def test_map_fast_path_matches_the_general_path(core: ModuleType, m: MapCall) -> None:
    """A repeated zip map() (product maps take the general path): the three ways agree."""
    call = m.call
    pipeline = Pipeline(call.nodes())
    inputs = {**call.inputs, **m.lists}
    map_over, output_name = list(m.lists), _output_name(call)

    def mapped() -> dict[str, list[Any]]:
        return pipeline.map(dict(inputs), map_over=map_over, map_mode=m.mode, output_name=output_name)

    first = mapped()
    shape = pipeline.plans.maps.get((fast_key(output_name), fast_key(map_over), frozenset(inputs)))
    prepared = prepare_map(pipeline.plans, inputs, map_over, m.mode, output_name)
    assert (shape is not None) == (m.mode == "zip" and not prepared.plan.has_async)
    second = mapped()
    general = ENGINE.map_call(prepared)
    expected = call.expected(m.items)
    assert first == second == general == expected
    assert list(second) == list(general)
    if shape is not None:
        plan = shape[0]
        assert core.map_zip(plan, plan.funcs, inputs, *shape[1:]) == expected


@node(output_name="y")
def inc(x: int) -> int:
    return x + 1


@node(output_name="z")
def add(y: int, k: int) -> int:
    return y + k


def _warm(pipeline: Pipeline, inputs: dict[str, Any], map_over: Any) -> None:
    pipeline.map(inputs, map_over=map_over)
    assert pipeline.plans.maps, "the first call did not record its shape"


def test_fast_map_declines_values_the_general_path_rejects(core: ModuleType) -> None:
    """After a good call of the same shape, bad values still get the errors that name them."""
    pipeline = Pipeline([inc, add])
    _warm(pipeline, {"x": [1, 2], "k": 10}, "x")
    with pytest.raises(ArgumentTypeError, match="map_over input `x` must be a column"):
        pipeline.map({"x": {1, 2}, "k": 10}, map_over="x")
    assert pipeline.map({"x": (1, 2), "k": 10}, map_over="x") == {"y": [2, 3], "z": [12, 13]}
    with pytest.raises(ArgumentTypeError, match="one-shot iterator"):
        pipeline.map({"x": [1, 2], "k": iter([10])}, map_over="x")
    _warm(pipeline, {"x": [1, 2], "k": [10, 20]}, ["x", "k"])
    with pytest.raises(MapSpecError, match="equal length"):
        pipeline.map({"x": [1, 2], "k": [10]}, map_over=["x", "k"])
    assert pipeline.map({"x": [1, 2], "k": [10, 20]}, map_over=["x", "k"]) == {"y": [2, 3], "z": [12, 23]}


def test_fast_map_of_more_mapped_inputs_and_arguments_than_its_stack_arrays(
    core: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve mapped inputs into one twelve-argument node: past the core's on-stack slots and
    argument pointers (8 each), the fast map allocates them and gives the general path's result."""
    fast: list[int] = []
    original = hypernodes._core.map_zip
    monkeypatch.setattr(hypernodes._core, "map_zip", lambda *a: fast.append(1) or original(*a))
    names = [f"a{i}" for i in range(12)]
    total = node(eval(f"lambda {', '.join(names)}: ({' + '.join(names)})"), output_name="total")
    pipeline = Pipeline([total])
    inputs = {name: [i, 10 * i, 100 * i] for i, name in enumerate(names)}
    expected = {"total": [sum(range(12)), 10 * sum(range(12)), 100 * sum(range(12))]}
    _warm(pipeline, {name: [0] for name in names}, names)
    assert pipeline.plans.maps
    assert pipeline.map(inputs, map_over=names) == expected
    assert fast == [1]
    call = prepare_map(pipeline.plans, inputs, names, "zip", None, None, None, "raise")
    assert ENGINE.map_call(call) == expected


def test_fast_map_takes_shared_values_of_any_plain_kind(core: ModuleType) -> None:
    """Shared inputs that are no iterators (lists, dicts, objects) pass the per-call check."""

    class Box:
        def __iter__(self) -> Iterator[int]:  # iterable, not an iterator
            return iter([1])

    pipeline = Pipeline([node(lambda x, k: (x, k), output_name="pair")])
    for shared in ([1], {"a": 1}, Box(), None, 2.5):
        _warm(pipeline, {"x": [1], "k": shared}, "x")
        assert pipeline.map({"x": [1, 2], "k": shared}, map_over="x") == {"pair": [(1, shared), (2, shared)]}


def test_fast_map_snapshots_the_users_list(core: ModuleType) -> None:
    """A node that grows the mapped list does not add items to the running map."""
    xs = [1, 2, 3]

    @node(output_name="y")
    def grow(x: int) -> int:
        xs.append(x)
        return x

    pipeline = Pipeline([grow])
    _warm(pipeline, {"x": [0]}, "x")
    xs[:] = [1, 2, 3]
    assert pipeline.map({"x": xs}, map_over="x") == {"y": [1, 2, 3]}
    assert xs == [1, 2, 3, 1, 2, 3]


@pytest.mark.parametrize("verb", ["run", "map"])
def test_fast_path_errors_carry_the_general_paths_note(core: ModuleType, verb: str) -> None:
    """A node's exception on the fast path has the same type, message and note as on the general path."""

    @node(output_name="y")
    def fails(x: int) -> int:
        if x == 2:
            raise ValueError(f"bad {x}")
        return x

    def call(pipeline: Pipeline) -> Any:
        if verb == "run":
            return pipeline.run({"x": 2})
        return pipeline.map({"x": [1, 2, 3]}, map_over="x")

    pipeline = Pipeline([fails])
    notes = []
    for _ in range(2):  # general, then fast
        with pytest.raises(ValueError, match="bad 2") as info:
            call(pipeline)
        notes.append(info.value.__notes__)
    assert pipeline.plans.runs if verb == "run" else pipeline.plans.maps
    assert notes[0] == notes[1]
    assert "fails" in notes[1][0]


def test_fast_paths_only_on_sequential_engines(core: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor at the map level keeps maps on the general path (and its executors), but not
    run(), which needs only the nodes inline; an executor at the node level keeps both there."""
    fast: list[str] = []
    for name in ("run_dict", "map_zip"):
        original = getattr(hypernodes._core, name)
        monkeypatch.setattr(hypernodes._core, name, lambda *a, f=original, n=name: fast.append(n) or f(*a))
    assert ENGINE._runtime.plain
    with HypernodesEngine(map_executor="threaded") as threaded:
        assert not threaded._runtime.plain
        pipeline = Pipeline([inc], backend=threaded)
        for _ in range(2):
            assert pipeline.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3]}
            assert pipeline.run({"x": 1}) == {"y": 2}
        assert fast == ["run_dict"]
    with HypernodesEngine(node_executor="threaded") as nodes:
        assert not nodes._run_runtime.plain
        assert not nodes._run_runtime.nodes.inline
        pipeline = Pipeline([inc], backend=nodes)
        for _ in range(2):
            assert pipeline.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3]}
            assert pipeline.run({"x": 1}) == {"y": 2}
        assert fast == ["run_dict"]


def test_fast_run_returns_a_fresh_dict(core: ModuleType) -> None:
    """Each call's result is its own dict: changing one does not change the next."""
    pipeline = Pipeline([inc, add])
    first = pipeline.run({"x": 1, "k": 2})
    first["y"] = "changed"
    assert pipeline.run({"x": 1, "k": 2}) == {"y": 2, "z": 4}


def test_every_spelling_of_the_names_takes_the_fast_path(core: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name, a tuple, a list (keyed as a tuple) and None each reach the core's fast path on
    the second call; a list and a tuple of the same names share one remembered shape."""
    fast: list[str] = []
    for name in ("run_dict", "map_zip"):
        original = getattr(hypernodes._core, name)
        monkeypatch.setattr(hypernodes._core, name, lambda *a, f=original, n=name: fast.append(n) or f(*a))
    pipeline = Pipeline([inc, add])
    for output_name in ("z", ("y", "z"), ["y", "z"], None):
        for map_over in ("x", ("x",), ["x"]):
            for first in (True, False):
                fast.clear()
                run = pipeline.run({"x": 1, "k": 2}, output_name=output_name)
                mapped = pipeline.map({"x": [1, 2], "k": 2}, map_over=map_over, output_name=output_name)
                assert run == ({"z": 4} if output_name == "z" else {"y": 2, "z": 4})
                assert mapped == ({"z": [4, 5]} if output_name == "z" else {"y": [2, 3], "z": [4, 5]})
                assert first or fast == ["run_dict", "map_zip"], (output_name, map_over)
    assert len(pipeline.plans.runs) == 3  # "z", ("y", "z") (also the list), None
    assert len(pipeline.plans.maps) == 3 * 2  # and map_over "x" or ("x",) (also the list)
