"""The scheduling core's contract, checked against both cores (see conftest.core)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any

import pytest

from hypernodes import OutputArityError, Pipeline, node
from hypernodes._call import Items
from hypernodes._graph import Plan

from .conftest import NO_EXTENSIONS, load_core


def plan_of(pipeline: Pipeline, given: set[str], outputs: tuple[str, ...] | None = None) -> Plan:
    return pipeline.plans.get(outputs, frozenset(given), "run()")


def values_for(plan: Plan, **inputs: Any) -> list[Any]:
    values = list(plan.template)
    for name, slot in plan.input_pairs:
        values[slot] = inputs[name]
    return values


@node(output_name="a")
def inc(x: int) -> int:
    return x + 1


@node(output_name="b")
def double(x: int) -> int:
    return 2 * x


@node(output_name="c")
def add(a: int, b: int) -> int:
    return a + b


DIAMOND = Pipeline([add, inc, double])  # declared out of order on purpose


def test_cores_expose_the_same_api() -> None:
    """Both cores export the same public names and the same contract version."""
    (py,) = (load_core("python"),)
    assert set(py.__all__) == {
        "API_VERSION",
        "IMPLEMENTATION",
        "ReadyQueue",
        "find_failures",
        "map_zip",
        "pack_column",
        "plan_batches",
        "run_batch",
        "run_batch_continue",
        "run_dict",
        "run_one",
        "unpack_column",
    }
    assert py.IMPLEMENTATION == "python"
    if not NO_EXTENSIONS:
        c = load_core("cython")
        assert set(c.__all__) == set(py.__all__)
        assert c.IMPLEMENTATION == "cython"
        assert c.API_VERSION == py.API_VERSION, "stale compiled extension: rebuild it"


def test_selector_loads_compiled_core_unless_disabled() -> None:
    """`hypernodes._core` picks the compiled core when built; HYPERNODES_NO_EXTENSIONS=1 forces the twin.

    A build that silently fell back to pure Python fails here (unless the twin was asked for).
    """
    code = "import hypernodes._core as c; print(c.IMPLEMENTATION)"
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("python" if NO_EXTENSIONS else "cython")
    env["HYPERNODES_NO_EXTENSIONS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python"


def test_run_one_fills_every_slot_in_topological_order(core: ModuleType) -> None:
    """run_one runs the nodes after their producers whatever the declaration order."""
    plan = plan_of(DIAMOND, {"x"})
    values = values_for(plan, x=3)
    core.run_one(plan, plan.funcs, values)
    assert {name: values[slot] for name, slot in plan.result_pairs} == {"c": 10, "a": 4, "b": 6}
    assert plan.node_names.index("add") == 2


def test_run_one_rejects_mismatched_arguments(core: ModuleType) -> None:
    """A values list shorter than the plan, or the wrong number of funcs, is refused before any call."""
    plan = plan_of(DIAMOND, {"x"})
    with pytest.raises(ValueError, match="slots"):
        core.run_one(plan, plan.funcs, [])
    with pytest.raises(ValueError, match="funcs"):
        core.run_one(plan, plan.funcs[:1], values_for(plan, x=1))


def test_node_exception_keeps_type_and_gets_a_note(core: ModuleType) -> None:
    """A node's exception reaches the caller unchanged except for a note naming the node."""

    class Boom(Exception):
        pass

    @node(output_name="y")
    def explode(x: int) -> int:
        raise Boom(f"bad {x}")

    plan = plan_of(Pipeline([explode]), {"x"})
    with pytest.raises(Boom, match="bad 7") as info:
        core.run_one(plan, plan.funcs, values_for(plan, x=7))
    assert info.value.__notes__ == ["hypernodes: raised in node `explode`"]


def test_keyboard_interrupt_passes_through_without_a_note(core: ModuleType) -> None:
    """BaseExceptions that are not Exceptions (Ctrl-C) are not annotated, just propagated."""

    @node(output_name="y")
    def interrupt(x: int) -> int:
        raise KeyboardInterrupt

    plan = plan_of(Pipeline([interrupt]), {"x"})
    with pytest.raises(KeyboardInterrupt) as info:
        core.run_one(plan, plan.funcs, values_for(plan, x=1))
    assert not getattr(info.value, "__notes__", None)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ((1, 2, 3), "returned a tuple of 3"),
        ((1,), "returned a tuple of 1"),
        (5, "returned int"),
        ("ab", "returned str"),
    ],
)
def test_tuple_output_must_match_its_names(core: ModuleType, returned: Any, message: str) -> None:
    """A node with two output names must return a 2-tuple (or list); anything else is an OutputArityError."""

    @node(output_name=("p", "q"))
    def split(x: int) -> Any:
        return returned

    plan = plan_of(Pipeline([split]), {"x"})
    with pytest.raises(OutputArityError, match=message) as info:
        core.run_one(plan, plan.funcs, values_for(plan, x=1))
    assert "node `split`" in info.value.__notes__[0]


def test_tuple_output_accepts_tuple_and_list(core: ModuleType) -> None:
    """Both a tuple and a list of the right length unpack into the output names."""
    for kind in (tuple, list):

        @node(output_name=("p", "q"))
        def split(x: int, kind: Any = kind) -> Any:
            return kind((x, -x))

        plan = plan_of(Pipeline([split]), {"x"})
        values = values_for(plan, x=4)
        core.run_one(plan, plan.funcs, values)
        assert [values[s] for _, s in plan.result_pairs] == [4, -4]


def batch(core: ModuleType, plan: Plan, columns: list[list[Any]], lo: int, hi: int, product: bool) -> list[list[Any]]:
    values = [*plan.template, None]
    slots = tuple(slot for _, slot in plan.input_pairs)
    return core.run_batch(plan, plan.funcs, values, Items(slots, tuple(map(tuple, columns)), product, lo, hi))


@node(output_name="s")
def pair(x: int, y: int) -> tuple[int, int]:
    return (x, y)


def test_run_batch_zip_and_product_order(core: ModuleType) -> None:
    """zip takes element i of each column; product enumerates like itertools.product."""
    plan = plan_of(Pipeline([pair]), {"x", "y"})
    assert plan.input_names == ("x", "y")
    xs, ys = [1, 2, 3], [10, 20]
    (zipped,) = batch(core, plan, [xs, [10, 20, 30]], 0, 3, False)
    assert zipped == [(1, 10), (2, 20), (3, 30)]
    (prod,) = batch(core, plan, [xs, ys], 0, 6, True)
    assert prod == list(itertools.product(xs, ys))
    (middle,) = batch(core, plan, [xs, ys], 2, 5, True)
    assert middle == list(itertools.product(xs, ys))[2:5]


def test_run_batch_rejects_ranges_beyond_the_columns(core: ModuleType) -> None:
    """An item range past the columns' items raises instead of reading out of bounds."""
    plan = plan_of(Pipeline([pair]), {"x", "y"})
    with pytest.raises(ValueError, match="exceeds"):
        batch(core, plan, [[1, 2], [1, 2]], 0, 3, False)
    with pytest.raises(ValueError, match="exceeds"):
        batch(core, plan, [[1, 2], [1, 2]], 0, 5, True)
    with pytest.raises(ValueError, match="range"):
        batch(core, plan, [[1, 2], [1, 2]], 2, 1, False)


def test_run_batch_notes_global_item_index(core: ModuleType) -> None:
    """The note of a failing item gives its index in the whole map, not within the slice."""

    @node(output_name="y")
    def fragile(x: int) -> float:
        return 1 / x

    plan = plan_of(Pipeline([fragile]), {"x"})
    with pytest.raises(ZeroDivisionError) as info:
        batch(core, plan, [[5, 4, 3, 0, 1]], 1, 5, False)
    assert info.value.__notes__ == ["hypernodes: raised in node `fragile`, map item 3"]


def test_run_batch_base_numbers_a_slice_of_columns(core: ModuleType) -> None:
    """A worker given columns sliced from item ``base`` on reports items in the whole map's numbering."""

    @node(output_name="y")
    def fragile(x: int) -> float:
        return 1 / x

    plan = plan_of(Pipeline([fragile]), {"x"})
    values = list(plan.template)
    (slot,) = [s for name, s in plan.input_pairs if name == "x"]
    assert core.run_batch(plan, plan.funcs, values, Items((slot,), ((4, 2),), False, 0, 2, 40)) == [[0.25, 0.5]]
    with pytest.raises(ZeroDivisionError) as info:
        core.run_batch(plan, plan.funcs, values, Items((slot,), ((5, 0, 1),), False, 0, 3, 100))
    assert info.value.__notes__ == ["hypernodes: raised in node `fragile`, map item 101"]
    with pytest.raises(ValueError, match="base must be >= 0"):
        core.run_batch(plan, plan.funcs, values, Items((slot,), ((5,),), False, 0, 1, -1))


@pytest.mark.parametrize("n_items", [0, 1, 3, 8, 80, 1001])
@pytest.mark.parametrize("n_workers", [1, 3, 8, 100])
@pytest.mark.parametrize(("per_worker", "min_batch"), [(1, 1), (4, 1), (2, 64)])
def test_plan_batches_tiles_the_items(
    core: ModuleType, n_items: int, n_workers: int, per_worker: int, min_batch: int
) -> None:
    """Slices are contiguous, cover every item once, differ in size by at most one."""
    slices = core.plan_batches(n_items, n_workers, per_worker, min_batch)
    assert [lo for lo, _ in slices] == [0, *[hi for _, hi in slices]][: len(slices)]
    assert (slices[-1][1] if slices else 0) == n_items
    sizes = [hi - lo for lo, hi in slices]
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert len(slices) <= n_workers * per_worker
    if len(slices) > 1:
        assert min(sizes) >= min_batch
    # as many slices as the limits allow: fewer would leave a worker idle
    assert len(slices) == min(n_items, n_workers * per_worker, max(1, n_items // min_batch))
    if n_items and n_items <= n_workers and min_batch == 1:
        assert sizes == [1] * n_items  # one item per task when items <= workers


def test_plan_batches_rejects_bad_counts(core: ModuleType) -> None:
    """Negative items or non-positive worker counts are a ValueError."""
    with pytest.raises(ValueError, match="n_items"):
        core.plan_batches(-1, 2)
    with pytest.raises(ValueError, match=">= 1"):
        core.plan_batches(10, 0)


def test_ready_queue_follows_dependencies(core: ModuleType) -> None:
    """get_ready returns roots first; a node becomes ready only when all its predecessors are done."""
    plan = plan_of(DIAMOND, {"x"})
    k = {"a": "inc", "b": "double", "c": "add"}

    def name(output: str) -> int:
        return plan.node_names.index(k[output])

    q = core.ReadyQueue(plan)
    assert q.is_active()
    first = q.get_ready()
    assert sorted(first) == sorted([name("a"), name("b")])
    assert q.get_ready() == ()
    q.done(name("a"))
    assert q.get_ready() == ()  # `c` still waits for `b`
    assert q.is_active()
    q.done(name("b"))
    assert q.get_ready() == (name("c"),)
    q.done(name("c"))
    assert not q.is_active()
    assert q.n_done == 3


def test_ready_queue_rejects_misuse(core: ModuleType) -> None:
    """done() of an unknown, unissued or already-done node is a ValueError, like graphlib."""
    plan = plan_of(DIAMOND, {"x"})
    q = core.ReadyQueue(plan)
    c = plan.node_names.index("add")
    with pytest.raises(ValueError, match="out of range"):
        q.done(99)
    with pytest.raises(ValueError, match="not returned by get_ready"):
        q.done(c)
    a, _ = q.get_ready()
    q.done(a)
    with pytest.raises(ValueError, match="already marked done"):
        q.done(a)


def test_ready_queue_under_many_threads(core: ModuleType) -> None:
    """Eight threads draining one queue over a wide layered graph: each node is issued and done once,
    and never before its predecessors."""
    layers, width = 20, 30
    nodes = []
    for layer in range(layers):
        for j in range(width):
            params = [f"v{layer - 1}_{k}" for k in (j, (j + 1) % width)] if layer else ["x"]
            src = f"def f({', '.join(dict.fromkeys(params))}): return 0"
            ns: dict[str, Any] = {}
            exec(src, ns)
            nodes.append(node(ns["f"], output_name=f"v{layer}_{j}", name=f"n{layer}_{j}"))
    plan = plan_of(Pipeline(nodes), {"x"})
    preds: dict[int, set[int]] = {k: set() for k in range(plan.n_nodes)}
    for k in range(plan.n_nodes):
        for s in plan.succ_idx[plan.succ_ptr[k] : plan.succ_ptr[k + 1]]:
            preds[int(s)].add(k)
    q = core.ReadyQueue(plan)
    done: list[int] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        while q.is_active():
            for k in q.get_ready():
                with lock:
                    missing = preds[k] - set(done)
                    if missing:
                        errors.append(f"{k} issued before {missing}")
                    done.append(k)
                q.done(k)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(done) == list(range(plan.n_nodes))
    assert q.n_done == plan.n_nodes


def test_plan_pickles_and_runs_after_a_round_trip(core: ModuleType) -> None:
    """A plan survives the standard pickle (module-level @node functions included) and runs the same."""
    import pickle

    plan = plan_of(DIAMOND, {"x"})
    again = pickle.loads(pickle.dumps(plan))
    assert again._native is None
    assert again.node_names == plan.node_names
    assert again.arg_slots == plan.arg_slots
    values = values_for(again, x=5)
    core.run_one(again, again.funcs, values)
    assert {n: values[s] for n, s in again.result_pairs} == {"c": 16, "a": 6, "b": 10}


def test_unpacking_survives_finalizers_that_mutate_the_returned_list(core: ModuleType) -> None:
    """Storing a map item's outputs frees the previous item's objects; a finalizer that empties the
    list the node returned must not corrupt (or crash) the unpacking."""
    shared: list[Any] = []

    class Clears:
        def __del__(self) -> None:
            shared.clear()

    @node(output_name=("junk", "value"))
    def split(x: int) -> list[Any]:
        shared[:] = [Clears(), x]
        return shared

    plan = plan_of(Pipeline([split]), {"x"}, ("value",))
    (values,) = batch(core, plan, [[1, 2, 3]], 0, 3, False)
    assert values == [1, 2, 3]


def test_namedtuples_unpack(core: ModuleType) -> None:
    """A tuple subclass (a namedtuple) unpacks like a tuple."""
    from collections import namedtuple

    Pair = namedtuple("Pair", "lo hi")

    @node(output_name=("lo", "hi"))
    def bounds(x: int) -> Any:
        return Pair(x - 1, x + 1)

    plan = plan_of(Pipeline([bounds]), {"x"})
    values = values_for(plan, x=5)
    core.run_one(plan, plan.funcs, values)
    assert [values[s] for _, s in plan.result_pairs] == [4, 6]


def test_a_note_never_replaces_the_users_exception(core: ModuleType) -> None:
    """An exception that cannot take a note (its __notes__ is not a list) still arrives unchanged."""

    class Frozen(Exception):
        pass

    @node(output_name="y")
    def fail(x: int) -> int:
        exc = Frozen("user error")
        exc.__notes__ = ("frozen",)  # type: ignore[attr-defined]
        raise exc

    plan = plan_of(Pipeline([fail]), {"x"})
    with pytest.raises(Frozen, match="user error") as info:
        core.run_one(plan, plan.funcs, values_for(plan, x=1))
    assert info.value.__notes__ == ("frozen",)


def test_ready_queue_ids_must_be_integers_in_range(core: ModuleType) -> None:
    """done() takes ints only, and refuses out-of-range ids (huge ones too) before marking any."""
    plan = plan_of(DIAMOND, {"x"})
    q = core.ReadyQueue(plan)
    first, second = q.get_ready()
    with pytest.raises(TypeError):
        q.done(str(first))
    with pytest.raises(TypeError):
        q.done(float(first))
    with pytest.raises(ValueError, match="out of range"):
        q.done(first, 2**70)
    assert q.n_done == 0
    q.done(first, second)
    assert q.n_done == 2


def test_run_batch_without_columns_runs_each_item(core: ModuleType) -> None:
    """With no mapped columns every item of the range still runs once (both cores agree)."""

    @node(output_name="y")
    def const() -> int:
        return 6

    plan = plan_of(Pipeline([const]), set())
    assert core.run_batch(plan, plan.funcs, list(plan.template), Items((), (), False, 0, 3)) == [[6, 6, 6]]
    assert core.run_batch(plan, plan.funcs, list(plan.template), Items((), (), True, 0, 2)) == [[6, 6]]


def test_plan_arrays_are_int32_arrays(core: ModuleType) -> None:
    """The plan's integer arrays are ``array('i')`` of 32-bit ints, and the compiled core refuses other item types."""
    from array import array

    plan = plan_of(DIAMOND, {"x"})
    for name in ("arg_ptr", "arg_slots", "out_ptr", "out_slots", "unpack", "succ_ptr", "succ_idx", "indegree"):
        value = getattr(plan, name)
        assert type(value) is array, name
        assert (value.typecode, value.itemsize) == ("i", 4), name
    if core.IMPLEMENTATION == "cython":
        again = plan_of(DIAMOND, {"x"}, ("c",))
        again.arg_slots = array("q", again.arg_slots)
        again._native = None
        with pytest.raises(ValueError, match="dtype mismatch"):
            core.run_one(again, again.funcs, values_for(again, x=1))


def test_selector_falls_back_when_the_extension_is_missing() -> None:
    """Without the compiled module (a pure-Python install) `_core` loads the twin, no variable needed."""
    code = "import sys; sys.modules['hypernodes._sched'] = None\nimport hypernodes._core as c; print(c.IMPLEMENTATION)"
    env = {k: v for k, v in os.environ.items() if k != "HYPERNODES_NO_EXTENSIONS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python"
