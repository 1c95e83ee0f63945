"""Pipeline.run / Pipeline.map / nesting: the drop-in API's behaviour."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from hypernodes import ArgumentTypeError, HypernodesEngine, Pipeline, node


def counting(calls: Counter[str]) -> Pipeline:
    """x -> a = x+1, b = 2x, c = a+b; d = x-1 is independent. Counts calls per node."""

    @node(output_name="a")
    def inc(x: int) -> int:
        calls["inc"] += 1
        return x + 1

    @node(output_name="b")
    def double(x: int) -> int:
        calls["double"] += 1
        return 2 * x

    @node(output_name="c")
    def add(a: int, b: int) -> int:
        calls["add"] += 1
        return a + b

    @node(output_name="d")
    def dec(x: int) -> int:
        calls["dec"] += 1
        return x - 1

    return Pipeline(nodes=[inc, double, add, dec], backend=HypernodesEngine(), name="counting")


def test_run_returns_outputs_only() -> None:
    """run() returns every node output and none of the inputs."""
    assert counting(Counter()).run(inputs={"x": 3}) == {"a": 4, "b": 6, "c": 10, "d": 2}


def test_output_name_restricts_what_runs() -> None:
    """output_name limits both the returned dict and the nodes executed to those it needs."""
    calls: Counter[str] = Counter()
    p = counting(calls)
    assert p.run(inputs={"x": 3}, output_name="a") == {"a": 4}
    assert calls == {"inc": 1}
    assert p.run(inputs={"x": 3}, output_name=["c", "a"]) == {"c": 10, "a": 4}
    assert calls == {"inc": 2, "double": 1, "add": 1}
    assert p.map(inputs={"x": [1, 2]}, map_over="x", output_name="d") == {"d": [0, 1]}
    assert calls == {"inc": 2, "double": 1, "add": 1, "dec": 2}


def test_defaults_apply_when_input_absent() -> None:
    """A parameter's default is used unless the input is given; each node keeps its own default."""

    @node(output_name="y")
    def scale(x: int, k: int = 2) -> int:
        return x * k

    @node(output_name="z")
    def shift(x: int, k: int = 100) -> int:
        return x + k

    p = Pipeline([scale, shift])
    assert p.run({"x": 3}) == {"y": 6, "z": 103}
    assert p.run({"x": 3, "k": 10}) == {"y": 30, "z": 13}
    assert p.map({"x": [1, 2]}, map_over="x") == {"y": [2, 4], "z": [101, 102]}
    assert p.map({"x": 1, "k": [0, 1]}, map_over="k") == {"y": [0, 1], "z": [1, 2]}


def test_tuple_outputs_unpack() -> None:
    """A tuple output_name stores each returned element under its own name, downstream nodes read them."""

    @node(output_name=("q", "r"))
    def divide(n: int, d: int) -> tuple[int, int]:
        return divmod(n, d)

    @node(output_name="check")
    def recombine(q: int, r: int, d: int) -> int:
        return q * d + r

    p = Pipeline([recombine, divide])
    assert p.run({"n": 17, "d": 5}) == {"q": 3, "r": 2, "check": 17}
    assert p.map({"n": [7, 9], "d": 4}, map_over="n") == {"q": [1, 2], "r": [3, 1], "check": [7, 9]}


def test_map_zip_and_product() -> None:
    """zip pairs items position by position; product takes every combination, last list fastest;
    other inputs are broadcast."""

    @node(output_name="s")
    def combine(a: int, b: int, c: int) -> tuple[int, int, int]:
        return (a, b, c)

    p = Pipeline([combine])
    zipped = p.map({"a": [1, 2], "b": [3, 4], "c": 0}, map_over=["a", "b"])
    assert zipped == {"s": [(1, 3, 0), (2, 4, 0)]}
    prod = p.map({"a": [1, 2], "b": [3, 4, 5], "c": 0}, map_over=["a", "b"], map_mode="product")
    assert prod == {"s": [(a, b, 0) for a in (1, 2) for b in (3, 4, 5)]}


def test_empty_map_gives_empty_lists() -> None:
    """Mapping over an empty list runs nothing and returns [] for every requested output."""
    calls: Counter[str] = Counter()
    p = counting(calls)
    assert p.map({"x": []}, map_over="x") == {"a": [], "b": [], "c": [], "d": []}
    assert p.map({"x": []}, map_over="x", output_name="c") == {"c": []}
    assert not calls


def test_map_over_an_input_the_outputs_do_not_need() -> None:
    """A mapped input that the requested outputs never read still sets the number of items."""

    @node(output_name="y")
    def f(x: int) -> int:
        return x

    @node(output_name="z")
    def g(w: int) -> int:
        return w

    p = Pipeline([f, g])
    assert p.map({"x": 7, "w": [1, 2, 3]}, map_over="w", output_name="y") == {"y": [7, 7, 7]}
    assert p.map({"x": [1, 2], "w": [5, 6, 7]}, map_over=["x", "w"], map_mode="product", output_name="y") == {
        "y": [1, 1, 1, 2, 2, 2]
    }


def test_map_snapshots_the_mapped_lists() -> None:
    """A node that mutates the mapped list does not change which items the map runs."""
    xs = [1, 2, 3]

    @node(output_name="y")
    def meddle(x: int) -> int:
        xs.clear()
        return x

    assert Pipeline([meddle]).map({"x": xs}, map_over="x") == {"y": [1, 2, 3]}


def test_node_error_keeps_type_and_names_node_and_item() -> None:
    """A node's exception reaches the caller as itself, with the node and the item index noted."""

    @node(output_name="y")
    def parse(text: str) -> int:
        return int(text)

    p = Pipeline([parse])
    with pytest.raises(ValueError, match="invalid literal") as info:
        p.map({"text": ["1", "2", "x", "4"]}, map_over="text")
    assert info.value.__notes__ == ["hypernodes: raised in node `parse`, map item 2"]
    with pytest.raises(ValueError, match="invalid literal") as info:
        p.run({"text": "x"})
    assert info.value.__notes__ == ["hypernodes: raised in node `parse`"]


def test_pipeline_as_a_node() -> None:
    """A Pipeline in nodes acts as one node: its inputs are parameters, its outputs are produced."""
    inner = Pipeline([node(lambda x: x + 1, output_name="y")], name="inner")
    outer = Pipeline([inner, node(lambda y: y * 10, output_name="z")])
    assert outer.inputs == ("x",)
    assert outer.run({"x": 1}) == {"y": 2, "z": 20}
    assert outer.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3], "z": [20, 30]}


def test_as_node_renames_and_selects() -> None:
    """input_mapping {outer: inner} and output_mapping {inner: outer} rename; only mapped outputs exist."""
    calls: Counter[str] = Counter()
    inner = counting(calls)
    wrapped = inner.as_node(input_mapping={"n": "x"}, output_mapping={"a": "plus_one"}, name="wrapped")
    assert wrapped.parameters == ("n",)
    assert wrapped.outputs == ("plus_one",)
    outer = Pipeline([wrapped])
    assert outer.run({"n": 4}) == {"plus_one": 5}
    assert calls == {"inc": 1}  # the inner pipeline only computed what the node exposes


def test_as_node_map_over_returns_lists() -> None:
    """With map_over, the outer input is a list and each output is the list of per-item results."""

    @node(output_name="emb")
    def embed(doc: str, dim: int = 2) -> list[int]:
        return [len(doc)] * dim

    per_doc = Pipeline([embed], name="per_doc").as_node(
        input_mapping={"docs": "doc"}, output_mapping={"emb": "embs"}, map_over="docs"
    )

    @node(output_name="total")
    def total(embs: list[list[int]]) -> int:
        return sum(map(sum, embs))

    outer = Pipeline([per_doc, total])
    assert outer.run({"docs": ["a", "bcd"]}) == {"embs": [[1, 1], [3, 3]], "total": 8}
    assert outer.run({"docs": ["a"], "dim": 3}) == {"embs": [[1, 1, 1]], "total": 3}


def test_nested_error_has_both_notes() -> None:
    """An error inside a nested pipeline is noted with the inner node and the outer node."""

    @node(output_name="y")
    def fail(x: int) -> int:
        raise LookupError("nope")

    outer = Pipeline([Pipeline([fail]).as_node(name="stage")])
    with pytest.raises(LookupError) as info:
        outer.run({"x": 1})
    assert info.value.__notes__ == ["hypernodes: raised in node `fail`", "hypernodes: raised in node `stage`"]


def test_nested_optional_inputs_keep_inner_defaults() -> None:
    """An inner input with defaults is optional on the nested node; absent, the inner default applies."""

    @node(output_name="y")
    def f(x: int, k: int = 3) -> int:
        return x * k

    wrapped = Pipeline([f]).as_node(name="w")
    assert "k" in wrapped.defaults
    assert Pipeline([wrapped]).run({"x": 2}) == {"y": 6}
    assert Pipeline([wrapped]).run({"x": 2, "k": 5}) == {"y": 10}
    assert wrapped(x=2) == 6  # one output: the value, as any node returns it
    assert wrapped(2, 4) == 8


@node(output_name="y")
async def async_double(x: int) -> int:
    await asyncio.sleep(0.001)
    return 2 * x


@node(output_name="z")
def plus_one(y: int) -> int:
    return y + 1


def test_async_nodes_under_the_sequential_engine() -> None:
    """async def nodes are awaited; their results flow to sync nodes, in run and map."""
    with HypernodesEngine() as engine:
        p = Pipeline([async_double, plus_one], engine=engine)
        assert p.run({"x": 4}) == {"y": 8, "z": 9}
        assert p.map({"x": [1, 2, 3]}, map_over="x") == {"y": [2, 4, 6], "z": [3, 5, 7]}


def test_run_inside_a_running_event_loop() -> None:
    """run()/map() work when called from a coroutine (a notebook cell), async nodes included."""

    async def cell() -> tuple[dict[str, Any], dict[str, Any]]:
        p = Pipeline([async_double, plus_one])
        return p.run({"x": 1}), p.map({"x": [1, 2]}, map_over="x")

    assert asyncio.run(cell()) == ({"y": 2, "z": 3}, {"y": [2, 4], "z": [3, 5]})


def test_async_node_error_keeps_type() -> None:
    """An exception raised inside an async node keeps its type and gets the node note."""

    @node(output_name="y")
    async def broken(x: int) -> int:
        await asyncio.sleep(0)
        raise TimeoutError("slow upstream")

    with pytest.raises(TimeoutError, match="slow upstream") as info:
        Pipeline([broken]).map({"x": [1]}, map_over="x")
    assert info.value.__notes__ == ["hypernodes: raised in node `broken`, map item 0"]


def test_engine_shutdown_stops_its_loop_and_stays_usable() -> None:
    """shutdown() joins the engine's loop thread; a later call starts it again."""
    engine = HypernodesEngine()
    p = Pipeline([async_double], engine=engine)
    assert p.run({"x": 1}) == {"y": 2}
    thread = engine._loop.thread
    assert thread is not None
    assert thread.is_alive()
    engine.shutdown()
    assert not thread.is_alive()
    assert p.run({"x": 2}) == {"y": 4}
    engine.shutdown()


def test_one_pipeline_many_threads() -> None:
    """Concurrent run()/map() calls on one pipeline and engine each get their own correct result."""
    p = counting(Counter())
    errors: list[str] = []

    def work(seed: int) -> None:
        for i in range(50):
            x = seed * 1000 + i
            if p.run({"x": x}, output_name="c") != {"c": 3 * x + 1}:
                errors.append(f"run {x}")
            if p.map({"x": [x, x + 1]}, map_over="x", output_name="d") != {"d": [x - 1, x]}:
                errors.append(f"map {x}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


def test_engine_alias_and_repr() -> None:
    """engine= is an alias of backend=; the pipeline repr names inputs and outputs."""
    engine = HypernodesEngine()
    p = Pipeline([plus_one], engine=engine, name="demo")
    assert p.backend is engine
    assert p.engine is engine
    assert repr(p) == "<Pipeline 'demo': 1 nodes, inputs ['y'] -> outputs ['z']>"
    with pytest.raises(ArgumentTypeError, match="both backend= and engine="):
        Pipeline([plus_one], backend=engine, engine=HypernodesEngine())


def test_pipelines_pickle_without_their_engine() -> None:
    """A pipeline (nested ones included) pickles as its nodes; the copy runs on the default engine."""
    import pickle

    engine = HypernodesEngine()
    outer = Pipeline([Pipeline([plus_one], engine=engine).as_node(name="inner")], engine=engine)
    again = pickle.loads(pickle.dumps(outer))
    assert again.engine is None
    assert again.run({"y": 1}) == outer.run({"y": 1}) == {"z": 2}


def test_async_node_running_a_pipeline_synchronously_does_not_deadlock() -> None:
    """An async node that calls run() of a pipeline with async nodes (on the same engine) completes."""
    engine = HypernodesEngine()
    inner = Pipeline([async_double], engine=engine)

    @node(output_name="w")
    async def outer_step(x: int) -> int:
        return inner.run({"x": x})["y"] + 1  # a blocking call inside async code, as users write

    try:
        assert Pipeline([outer_step], engine=engine).run({"x": 5}) == {"w": 11}
    finally:
        engine.shutdown()


def test_output_name_prunes_inside_nested_pipelines() -> None:
    """Asking the outer pipeline for one output of a nested pipeline runs only what that output
    needs inside it, and needs only that output's inputs."""
    ran: list[str] = []

    @node(output_name="y")
    def cheap(x: int) -> int:
        ran.append("cheap")
        return x + 1

    @node(output_name="w")
    def expensive(z: int) -> int:
        ran.append("expensive")
        return z * 1000

    outer = Pipeline([Pipeline([cheap, expensive], name="inner")])
    assert outer.run({"x": 1}, output_name="y") == {"y": 2}
    assert ran == ["cheap"]
    assert outer.map({"x": [1, 2]}, map_over="x", output_name="y") == {"y": [2, 3]}
    assert ran == ["cheap"] * 3
    assert outer.run({"x": 1, "z": 2}) == {"y": 2, "w": 2000}


def test_as_node_mapped_inputs_are_required() -> None:
    """A mapped input cannot fall back to an inner default: leaving it out fails before any node runs."""
    from hypernodes import MissingInputError

    ran: list[int] = []

    @node(output_name="y")
    def f(x: int, step: int = 1) -> int:
        ran.append(x)
        return x + step

    wrapped = Pipeline([f], name="inner").as_node(map_over=["x", "step"])
    assert "step" not in wrapped.defaults
    with pytest.raises(MissingInputError, match="`step`"):
        Pipeline([wrapped]).run({"x": [1, 2]})
    assert ran == []
    assert Pipeline([wrapped]).run({"x": [1, 2], "step": [10, 20]}) == {"y": [11, 22]}


def test_shutdown_from_inside_an_async_node_stops_the_loop() -> None:
    """engine.shutdown() called on the engine's own loop thread ends that thread once the node returns."""
    engine = HypernodesEngine()

    @node(output_name="y")
    async def stop_engine(x: int) -> int:
        engine.shutdown()
        return x

    p = Pipeline([stop_engine], engine=engine)
    assert p.run({"x": 1}) == {"y": 1}
    assert p.run({"x": 2}) == {"y": 2}  # a new loop thread serves the next call
    engine.shutdown()


def test_sync_wrappers_of_async_functions_are_awaited() -> None:
    """A functools.wraps decorator that is itself sync but returns the coroutine is awaited."""
    import functools

    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return wrapper

    @node(output_name="y")
    @logged
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x * 3

    assert fetch.is_async
    assert Pipeline([fetch]).run({"x": 2}) == {"y": 6}


def test_copies_keep_the_engine() -> None:
    """copy.copy and copy.deepcopy of a pipeline keep its engine (only pickles leave it behind)."""
    import copy

    engine = HypernodesEngine()
    p = Pipeline([plus_one], engine=engine, name="demo")
    for clone in (copy.copy(p), copy.deepcopy(p)):
        assert clone.engine is engine
        assert clone.run({"y": 1}) == {"z": 2}


def test_sequential_engine_runs_in_the_calling_thread() -> None:
    """The sequential engine calls sync nodes in the caller's thread, in run and map."""
    seen: list[int] = []

    @node(output_name="y")
    def where(x: int) -> int:
        seen.append(threading.get_ident())
        return x

    def call() -> None:
        p = Pipeline([where])
        p.run({"x": 1})
        p.map({"x": [1, 2]}, map_over="x")

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(timeout=30)
    call()
    assert seen == [worker.ident] * 3 + [threading.get_ident()] * 3


def test_plans_are_compiled_once_per_call_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated calls of one shape reuse the compiled plan; a new output selection compiles a new one."""
    from hypernodes import _call

    compiled: list[Any] = []
    original = _call.compile_plan

    def counting_compile(*args: Any) -> Any:
        compiled.append(args[1:3])
        return original(*args)

    monkeypatch.setattr(_call, "compile_plan", counting_compile)
    p = counting(Counter())
    p.run({"x": 1})
    p.run({"x": 2})
    p.map({"x": [1, 2]}, map_over="x")
    assert len(compiled) == 1  # run and map of the same shape share the plan
    p.run({"x": 1}, output_name="a")
    assert compiled[-1] == (("a",), frozenset({"x"}))
    assert len(compiled) == 2


def test_as_node_product_map() -> None:
    """as_node(map_over=[...], map_mode="product") returns one result per combination, last list fastest."""

    @node(output_name="s")
    def add(p: int, q: int) -> int:
        return p + q

    grid = Pipeline([add], name="grid").as_node(map_over=["p", "q"], map_mode="product")
    assert Pipeline([grid]).run({"p": [1, 2], "q": [10, 20]}) == {"s": [11, 21, 12, 22]}


def test_nested_map_checks_use_the_outer_names() -> None:
    """A nested zip map over lists of unequal length fails naming the node and the outer inputs."""
    from hypernodes import MapSpecError

    @node(output_name="s")
    def add(p: int, q: int) -> int:
        return p + q

    zipped = Pipeline([add], name="inner").as_node(
        input_mapping={"ps": "p", "qs": "q"}, map_over=["ps", "qs"], name="pairs"
    )
    with pytest.raises(MapSpecError, match="Node `pairs` zips lists of unequal length: `ps`: 2, `qs`: 3"):
        Pipeline([zipped]).run({"ps": [1, 2], "qs": [1, 2, 3]})
    with pytest.raises(ArgumentTypeError, match="maps over `ps`, which must be a column of items"):
        Pipeline([zipped]).run({"ps": {1, 2}, "qs": [1, 2]})
    assert Pipeline([zipped]).run({"ps": (1, 2), "qs": range(2)}) == {"s": [1, 3]}


def test_nested_pipeline_runs_on_its_own_engine() -> None:
    """A nested pipeline keeps its own engine: its nodes run on that engine's threads."""
    threads: set[str] = set()

    @node(output_name="b")
    def inner_node(a: int) -> int:
        threads.add(threading.current_thread().name)
        return a + 1

    @node(output_name="c")
    def sibling(a: int) -> int:
        return a * 10

    with HypernodesEngine(node_executor="threaded") as inner_engine:
        inner = Pipeline([inner_node, sibling], engine=inner_engine)
        outer = Pipeline([plus_one.__class__(lambda x: x, output_name="a"), inner])
        assert outer.run({"x": 1}) == {"a": 1, "b": 2, "c": 10}
    assert threads
    assert all(name.startswith("hypernodes-node") for name in threads)
