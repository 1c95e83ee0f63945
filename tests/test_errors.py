"""Bad pipelines fail at construction; bad calls fail before any node runs.

Each case names the error class users can catch and a fragment of the message
that must say what was expected and what was found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from hypernodes import (
    ArgumentTypeError,
    CycleError,
    DuplicateOutputError,
    ExecutorSpecError,
    HypernodesEngine,
    HypernodesError,
    InputError,
    MapSpecError,
    MissingInputError,
    NodeDefinitionError,
    Pipeline,
    UnknownOutputError,
    node,
)

CALLS: Counter[str] = Counter()


class _Submits:
    """Has the executor interface as far as the engine checks (a callable submit); never called."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        raise AssertionError("nothing may be submitted")


_SUBMITS = _Submits()


@node(output_name="y")
def scale(x: int, k: int) -> int:
    CALLS["scale"] += 1
    return x * k


@node(output_name="z")
def offset(y: int, b: int = 1) -> int:
    CALLS["offset"] += 1
    return y + b


PIPE = Pipeline([scale, offset], name="pipe")


@pytest.fixture(autouse=True)
def reset_calls() -> None:
    CALLS.clear()


BAD_CALLS: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    ("missing input", lambda: PIPE.run({"x": 1}), MissingInputError, "node `scale` needs `k`"),
    ("missing input lists given", lambda: PIPE.run({"k": 1}), MissingInputError, "Inputs given: `k`"),
    ("missing in map", lambda: PIPE.map({"x": [1]}, map_over="x"), MissingInputError, "map() was not given"),
    ("unknown output", lambda: PIPE.run({"x": 1, "k": 2}, output_name="w"), UnknownOutputError, "produces: `y`, `z`"),
    ("input as output", lambda: PIPE.run({"x": 1, "k": 2}, output_name="x"), UnknownOutputError, "it is an input"),
    ("output_name type", lambda: PIPE.run({"x": 1, "k": 2}, output_name=3), ArgumentTypeError, "output_name must"),
    ("output_name empty", lambda: PIPE.run({"x": 1, "k": 2}, output_name=[]), ArgumentTypeError, "asks for nothing"),
    ("unknown input", lambda: PIPE.run({"x": 1, "k": 2, "kk": 3}), InputError, "given `kk`, which no node takes"),
    ("non-string key", lambda: PIPE.run({"x": 1, "k": 2, 3: 4}), InputError, "given `3`, which no node takes"),
    ("output given", lambda: PIPE.run({"x": 1, "k": 2, "y": 3}), InputError, "output of node `scale`"),
    ("inputs not a dict", lambda: PIPE.run([("x", 1)]), ArgumentTypeError, "dict of name -> value"),
    ("map_over absent", lambda: PIPE.map({"x": [1], "k": 1}, map_over="q"), MapSpecError, "not in inputs"),
    ("map_over missing", lambda: PIPE.map({"x": [1], "k": 1}), ArgumentTypeError, "needs map_over"),
    ("map_over not str", lambda: PIPE.map({"x": [1], "k": 1}, map_over=1), ArgumentTypeError, "needs map_over"),
    ("map_over empty", lambda: PIPE.map({"x": [1], "k": 1}, map_over=[]), ArgumentTypeError, "non-empty"),
    ("map_over twice", lambda: PIPE.map({"x": [1], "k": 1}, map_over=["x", "x"]), MapSpecError, "more than once"),
    ("tuple mapped", lambda: PIPE.map({"x": (1, 2), "k": 1}, map_over="x"), ArgumentTypeError, "got tuple"),
    ("generator mapped", lambda: PIPE.map({"x": iter([1]), "k": 1}, map_over="x"), ArgumentTypeError, "must be a list"),
    ("scalar mapped", lambda: PIPE.map({"x": 5, "k": 1}, map_over="x"), ArgumentTypeError, "got int"),
    (
        "zip lengths",
        lambda: PIPE.map({"x": [1, 2], "k": [1, 2, 3]}, map_over=["x", "k"]),
        MapSpecError,
        "`x`: 2, `k`: 3",
    ),
    (
        "map_mode",
        lambda: PIPE.map({"x": [1], "k": 1}, map_over="x", map_mode="cross"),
        MapSpecError,
        "'zip', 'product'",
    ),
    (
        "one executor for both levels",
        lambda: HypernodesEngine(map_executor=_SUBMITS, node_executor=_SUBMITS),
        ExecutorSpecError,
        "same executor object",
    ),
    (
        "executor object inside processes",
        lambda: HypernodesEngine(map_executor="parallel", node_executor=_SUBMITS),
        ExecutorSpecError,
        "cannot run inside the worker processes of map_executor='parallel'",
    ),
    (
        "parallel at both levels",
        lambda: HypernodesEngine(map_executor="parallel", node_executor="parallel"),
        ExecutorSpecError,
        "processes do not start processes",
    ),
    (
        "processes inside processes",
        lambda: HypernodesEngine(map_executor=_SUBMITS, node_executor="parallel"),
        ExecutorSpecError,
        "processes do not start processes",
    ),
]


@pytest.mark.parametrize(("case", "call", "error", "message"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_calls_fail_before_any_node_runs(
    case: str, call: Callable[[], Any], error: type[BaseException], message: str
) -> None:
    """The call raises the documented class with a message naming the problem, and no node ran."""
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
    assert not CALLS, f"{case}: nodes ran before the error: {dict(CALLS)}"
    assert isinstance(info.value, HypernodesError)


def test_errors_subclass_the_stdlib_types_users_catch() -> None:
    """Each error class is also the standard exception a user would catch for that mistake."""
    assert issubclass(MissingInputError, KeyError)
    assert issubclass(UnknownOutputError, KeyError)
    assert issubclass(CycleError, ValueError)
    assert issubclass(DuplicateOutputError, ValueError)
    assert issubclass(MapSpecError, ValueError)
    assert issubclass(InputError, ValueError)
    assert issubclass(ArgumentTypeError, TypeError)
    assert issubclass(NodeDefinitionError, TypeError)
    assert issubclass(ExecutorSpecError, ValueError)
    assert issubclass(ExecutorSpecError, TypeError)
    from hypernodes import errors

    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert len(classes) == 11
    for cls in classes:
        assert issubclass(cls, HypernodesError), cls
    # KeyError subclasses print their sentence, not a quoted repr of it
    assert str(MissingInputError("Missing `x`")) == "Missing `x`"


def test_cycle_error_names_the_nodes_on_the_cycle() -> None:
    """A cycle fails at construction and lists the nodes on it in data-flow order."""

    @node(output_name="a")
    def make_a(c: int) -> int:
        return c

    @node(output_name="b")
    def make_b(a: int) -> int:
        return a

    @node(output_name="c")
    def make_c(b: int) -> int:
        return b

    @node(output_name="d")
    def bystander(x: int) -> int:
        return x

    with pytest.raises(CycleError) as info:
        Pipeline([bystander, make_a, make_b, make_c])
    assert info.value.cycle == ("make_a", "make_b", "make_c")
    assert "`make_a` -> `make_b` -> `make_c` -> `make_a`" in str(info.value)


def test_duplicate_output_names_both_nodes() -> None:
    """Two nodes producing one output fail at construction, naming both."""
    first = node(lambda x: x, output_name="y", name="first")
    second = node(lambda w: w, output_name=("y", "v"), name="second")
    with pytest.raises(DuplicateOutputError, match="both node `first` and node `second`"):
        Pipeline([first, second])


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([lambda x: x], "plain callable; decorate it"),
        ([42], "not a node"),
        ("scale", "takes a list of nodes"),
    ],
)
def test_non_nodes_are_rejected(members: Any, message: str) -> None:
    """Pipeline(nodes=...) only takes nodes and pipelines, and says how to fix anything else."""
    with pytest.raises(NodeDefinitionError, match=message):
        Pipeline(members)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node_executor": "gpu"}, "Unknown node_executor 'gpu'. Allowed: 'sequential', 'threaded'"),
        ({"map_executor": object()}, "submit() method"),
        ({"max_workers": 0}, "positive int"),
        ({"max_workers": -3}, "positive int"),
        ({"max_workers": True}, "positive int"),
        ({"max_workers": 2.5}, "positive int"),
    ],
)
def test_bad_engine_specs(kwargs: dict[str, Any], message: str) -> None:
    """Unknown executor names, objects without submit and bad max_workers fail at engine construction."""
    with pytest.raises(ExecutorSpecError) as info:
        HypernodesEngine(**kwargs)
    assert message in str(info.value)


def test_engine_accepts_every_spec_the_notebook_uses() -> None:
    """Every executor spec of the seed notebook constructs; executor objects are kept as given."""
    from concurrent.futures import ThreadPoolExecutor

    from hypernodes.executors import AsyncExecutor

    for name in ("sequential", "threaded", "async", "parallel"):
        assert HypernodesEngine(node_executor=name, max_workers=4).node_executor == name
        assert HypernodesEngine(map_executor=name, max_workers=4).map_executor == name
    for name in ("sequential", "threaded", "async"):
        assert HypernodesEngine(node_executor=name, map_executor=name).node_executor == name
    with ThreadPoolExecutor(2) as pool:
        assert HypernodesEngine(map_executor=pool).map_executor is pool
    executor = AsyncExecutor(max_workers=100)
    assert HypernodesEngine(map_executor=executor).map_executor is executor
    executor.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_mapping": {"n": "nope"}}, "not an input of the pipeline"),
        ({"output_mapping": {"nope": "w"}}, "not produced by the pipeline"),
        ({"output_mapping": {}}, "would produce nothing"),
        ({"map_over": "nope"}, "map_over must name the node's (outer) inputs"),
        ({"map_over": "x", "map_mode": "cross"}, "Unknown map_mode"),
        ({"input_mapping": {"k": "x"}}, "two inputs share one outer name"),
    ],
)
def test_bad_as_node(kwargs: dict[str, Any], message: str) -> None:
    """as_node() validates its mappings against the pipeline and names what it has."""
    with pytest.raises(NodeDefinitionError) as info:
        PIPE.as_node(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("backend", ["threaded", "sequential", 42])
def test_backend_must_be_an_engine(backend: Any) -> None:
    """Pipeline(backend=...) refuses executor names and other non-engines at construction."""
    with pytest.raises(ExecutorSpecError, match="takes an engine such as HypernodesEngine"):
        Pipeline([scale], backend=backend)


def test_executor_objects_are_not_engines() -> None:
    """An executor passed as backend, or an executor class passed as executor, is refused with a hint."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool, pytest.raises(ExecutorSpecError, match="map_executor"):
        Pipeline([scale], backend=pool)  # type: ignore[arg-type]
    with pytest.raises(ExecutorSpecError, match="pass an instance"):
        HypernodesEngine(map_executor=ThreadPoolExecutor)


def test_huge_products_are_refused_before_running() -> None:
    """A product map too large to index fails with a MapSpecError, not an internal overflow."""
    lists = {name: list(range(2**16)) for name in ("x", "k")}
    big = Pipeline([scale, node(lambda w, v: w, output_name="u")])
    with pytest.raises(MapSpecError, match="too many to run"):
        big.map(
            {**lists, "w": list(range(2**16)), "v": list(range(2**16))},
            map_over=["x", "k", "w", "v"],
            map_mode="product",
        )
    assert not CALLS
