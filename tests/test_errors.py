"""Malformed pipelines and calls fail early, with the documented error and a message that teaches.

``MALFORMED`` is one table of (case, call, error, fragment, when):

- ``call`` makes the mistake when called with no arguments;
- ``error`` is the class users can catch (a ``HypernodesError`` that is also the stdlib
  type of the README's errors table, except where pickle or a user's executor raises);
- ``fragment`` must appear in the message or its notes, naming what was expected and
  what was found;
- ``when`` says how early it fails: at ``CONSTRUCTION`` (of a node, pipeline or engine),
  at the ``CALL`` before any node runs, or ``at_node(name)`` when that node runs, with a
  note naming it (and the map item).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    InputTypeError,
    MapSpecError,
    MissingInputError,
    NodeDefinitionError,
    OutputArityError,
    Pipeline,
    UnknownOutputError,
    node,
)

CALLS: Counter[str] = Counter()

CONSTRUCTION = "construction"
CALL = "call"


def at_node(name: str, item: int | None = None) -> str:
    """The ``when`` of a row that fails while node ``name`` (in map item ``item``) runs."""
    return f"at node `{name}`" if item is None else f"at node `{name}`, map item {item}"


@pytest.fixture(autouse=True)
def reset_calls() -> None:
    CALLS.clear()


@node(output_name="y")
def scale(x: int, k: int) -> int:
    CALLS["scale"] += 1
    return x * k


@node(output_name="z")
def offset(y: int, b: int = 1) -> int:
    CALLS["offset"] += 1
    return y + b


PIPE = Pipeline([scale, offset], name="pipe")
STRICT = Pipeline([scale, offset], name="pipe", strict_inputs=True)  # unused inputs refused


@node(output_name=("tens", "ones"))
def digits(z: int) -> Any:
    """Splits a two-digit ``z``; a one-digit ``z`` comes back whole, not as a pair (the bug under test)."""
    CALLS["digits"] += 1
    return divmod(z, 10) if z >= 10 else z


def _three_values(z: int) -> tuple[int, int, int]:
    CALLS["triple"] += 1
    return z, z, z


DIGITS = Pipeline([scale, offset, digits])
TRIPLE = Pipeline([scale, offset, node(_three_values, output_name=("tens", "ones"), name="triple")])
NESTED_MAP = Pipeline([PIPE.as_node(map_over="x"), node(lambda z: z, output_name="w")])
"""Node `pipe` maps its inner pipeline over `x`: a set for `x` is only seen when that node runs."""


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


class _Submits:
    """Has the executor interface as far as the engine checks (a callable submit); never called."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        raise AssertionError("nothing may be submitted")


_SUBMITS = _Submits()


def _pool_as_backend() -> Pipeline:
    with ThreadPoolExecutor(1) as pool:
        return Pipeline([scale], backend=pool)


def _unpicklable_input_to_processes() -> Any:
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        return Pipeline([scale], backend=engine).map({"x": [1, 2], "k": threading.Lock()}, map_over="x")


def _huge_product() -> Any:
    # 2**64 combinations: more than an index can count, so refused before anything is allocated per item
    lists = {name: list(range(2**16)) for name in ("x", "k", "w", "v")}
    four_inputs = Pipeline([scale, node(lambda w, v: w, output_name="u")])
    return four_inputs.map(lists, map_over=list(lists), map_mode="product")


def _map_on_a_shut_down_pool() -> Any:
    pool = ThreadPoolExecutor(2)
    pool.shutdown()
    return Pipeline([scale, offset], backend=HypernodesEngine(map_executor=pool)).map({"x": [1, 2], "k": 1}, "x")


MALFORMED: list[tuple[str, Callable[[], Any], type[BaseException], str, str]] = [
    # nodes and pipelines
    ("node of a non-callable", lambda: node(42), NodeDefinitionError, "wraps a callable; got int 42", CONSTRUCTION),
    ("lambda without output_name", lambda: node(lambda x: x), NodeDefinitionError, "pass output_name=", CONSTRUCTION),
    (
        "node output_name of wrong type",
        lambda: node(lambda x: x, output_name=3),
        NodeDefinitionError,
        "a string or a tuple of strings, got int 3",
        CONSTRUCTION,
    ),
    (
        "self-loop",
        lambda: node(lambda y: y, output_name="y"),
        NodeDefinitionError,
        "`y` is both a parameter and an output",
        CONSTRUCTION,
    ),
    ("pipeline member not callable", lambda: Pipeline([42]), NodeDefinitionError, "nodes[0] is int 42", CONSTRUCTION),
    (
        "pipeline member a plain callable",
        lambda: Pipeline([lambda x: x]),
        NodeDefinitionError,
        "plain callable; decorate it",
        CONSTRUCTION,
    ),
    ("nodes not a list", lambda: Pipeline("scale"), NodeDefinitionError, "takes a list of nodes", CONSTRUCTION),
    (
        "duplicate output",
        lambda: Pipeline(
            [node(lambda x: x, output_name="y", name="first"), node(lambda w: w, output_name=("y", "v"), name="second")]
        ),
        DuplicateOutputError,
        "Output `y` is produced by both node `first` and node `second`",
        CONSTRUCTION,
    ),
    (
        "one node listed twice",
        lambda: Pipeline([scale, scale]),
        DuplicateOutputError,
        "`scale` is listed twice",
        CONSTRUCTION,
    ),
    (
        "cycle",
        lambda: Pipeline([bystander, make_a, make_b, make_c]),
        CycleError,
        "cycle: `make_a` -> `make_b` -> `make_c` -> `make_a`",
        CONSTRUCTION,
    ),
    # nested pipelines
    (
        "as_node unknown input",
        lambda: PIPE.as_node(input_mapping={"n": "nope"}),
        NodeDefinitionError,
        "not an input of the pipeline",
        CONSTRUCTION,
    ),
    (
        "as_node unknown output",
        lambda: PIPE.as_node(output_mapping={"nope": "w"}),
        NodeDefinitionError,
        "not produced by the pipeline",
        CONSTRUCTION,
    ),
    (
        "as_node no outputs",
        lambda: PIPE.as_node(output_mapping={}),
        NodeDefinitionError,
        "would produce nothing",
        CONSTRUCTION,
    ),
    (
        "as_node map_over unknown",
        lambda: PIPE.as_node(map_over="nope"),
        NodeDefinitionError,
        "map_over must name the node's (outer) inputs",
        CONSTRUCTION,
    ),
    (
        "as_node map_mode",
        lambda: PIPE.as_node(map_over="x", map_mode="cross"),
        NodeDefinitionError,
        "Unknown map_mode",
        CONSTRUCTION,
    ),
    (
        "as_node inputs merge",
        lambda: PIPE.as_node(input_mapping={"k": "x"}),
        NodeDefinitionError,
        "two inputs share one outer name",
        CONSTRUCTION,
    ),
    # engines and backends
    (
        "unknown node_executor",
        lambda: HypernodesEngine(node_executor="gpu"),
        ExecutorSpecError,
        "Unknown node_executor 'gpu'. Allowed: 'sequential', 'threaded'",
        CONSTRUCTION,
    ),
    (
        "unknown map_executor",
        lambda: HypernodesEngine(map_executor="threads"),
        ExecutorSpecError,
        "Unknown map_executor 'threads'. Allowed:",
        CONSTRUCTION,
    ),
    (
        "executor without submit",
        lambda: HypernodesEngine(map_executor=object()),
        ExecutorSpecError,
        "submit() method); got object",
        CONSTRUCTION,
    ),
    (
        "executor class",
        lambda: HypernodesEngine(map_executor=ThreadPoolExecutor),
        ExecutorSpecError,
        "got the class ThreadPoolExecutor; pass an instance",
        CONSTRUCTION,
    ),
    (
        "zero max_workers",
        lambda: HypernodesEngine(max_workers=0),
        ExecutorSpecError,
        "positive int or None, got 0",
        CONSTRUCTION,
    ),
    (
        "negative max_workers",
        lambda: HypernodesEngine(max_workers=-3),
        ExecutorSpecError,
        "positive int or None, got -3",
        CONSTRUCTION,
    ),
    (
        "bool max_workers",
        lambda: HypernodesEngine(max_workers=True),
        ExecutorSpecError,
        "positive int or None, got True",
        CONSTRUCTION,
    ),
    (
        "float max_workers",
        lambda: HypernodesEngine(max_workers=2.5),
        ExecutorSpecError,
        "positive int or None, got 2.5",
        CONSTRUCTION,
    ),
    (
        "one executor for both levels",
        lambda: HypernodesEngine(map_executor=_SUBMITS, node_executor=_SUBMITS),
        ExecutorSpecError,
        "same executor object",
        CONSTRUCTION,
    ),
    (
        "executor object inside processes",
        lambda: HypernodesEngine(map_executor="parallel", node_executor=_SUBMITS),
        ExecutorSpecError,
        "cannot run inside the worker processes of map_executor='parallel'",
        CONSTRUCTION,
    ),
    (
        "parallel at both levels",
        lambda: HypernodesEngine(map_executor="parallel", node_executor="parallel"),
        ExecutorSpecError,
        "processes do not start processes",
        CONSTRUCTION,
    ),
    (
        "processes inside processes",
        lambda: HypernodesEngine(map_executor=_SUBMITS, node_executor="parallel"),
        ExecutorSpecError,
        "processes do not start processes",
        CONSTRUCTION,
    ),
    (
        "backend an executor name",
        lambda: Pipeline([scale], backend="threaded"),
        ExecutorSpecError,
        "takes an engine such as HypernodesEngine",
        CONSTRUCTION,
    ),
    (
        "backend not an engine",
        lambda: Pipeline([scale], backend=42),
        ExecutorSpecError,
        "takes an engine such as HypernodesEngine",
        CONSTRUCTION,
    ),
    (
        "backend an executor",
        _pool_as_backend,
        ExecutorSpecError,
        "HypernodesEngine(map_executor='threaded')",
        CONSTRUCTION,
    ),
    # run() and map() calls
    ("missing input", lambda: PIPE.run({"x": 1}), MissingInputError, "node `scale` needs `k`", CALL),
    ("missing input lists given", lambda: PIPE.run({"k": 1}), MissingInputError, "Inputs given: `k`", CALL),
    (
        "missing input in map",
        lambda: PIPE.map({"x": [1]}, map_over="x"),
        MissingInputError,
        "map() was not given",
        CALL,
    ),
    (
        "unknown output",
        lambda: PIPE.run({"x": 1, "k": 2}, output_name="w"),
        UnknownOutputError,
        "produces: `y`, `z`",
        CALL,
    ),
    (
        "unknown output in map",
        lambda: PIPE.map({"x": [1], "k": 2}, "x", output_name=["z", "w"]),
        UnknownOutputError,
        "Unknown output_name `w`",
        CALL,
    ),
    (
        "input as output",
        lambda: PIPE.run({"x": 1, "k": 2}, output_name="x"),
        UnknownOutputError,
        "it is an input",
        CALL,
    ),
    (
        "output_name of wrong type",
        lambda: PIPE.run({"x": 1, "k": 2}, output_name=3),
        ArgumentTypeError,
        "a list of names; got int 3",
        CALL,
    ),
    (
        "output_name empty",
        lambda: PIPE.run({"x": 1, "k": 2}, output_name=[]),
        ArgumentTypeError,
        "asks for nothing",
        CALL,
    ),
    (
        "unknown input",
        lambda: STRICT.run({"x": 1, "k": 2, "kk": 3}),
        InputError,
        "given `kk`, which no node takes",
        CALL,
    ),
    ("non-string key", lambda: STRICT.run({"x": 1, "k": 2, 3: 4}), InputError, "given `3`, which no node takes", CALL),
    ("output given as input", lambda: PIPE.run({"x": 1, "k": 2, "y": 3}), InputError, "output of node `scale`", CALL),
    ("inputs not a dict", lambda: PIPE.run([("x", 1)]), ArgumentTypeError, "dict of name -> value, got list", CALL),
    (
        "map_over absent",
        lambda: PIPE.map({"x": [1], "k": 1}, map_over="q"),
        MapSpecError,
        "`q`, which is not in inputs",
        CALL,
    ),
    ("map_over missing", lambda: PIPE.map({"x": [1], "k": 1}), ArgumentTypeError, "needs map_over", CALL),
    (
        "map_over not str",
        lambda: PIPE.map({"x": [1], "k": 1}, map_over=1),
        ArgumentTypeError,
        "list of input names; got 1",
        CALL,
    ),
    ("map_over empty", lambda: PIPE.map({"x": [1], "k": 1}, map_over=[]), ArgumentTypeError, "non-empty", CALL),
    (
        "map_over twice",
        lambda: PIPE.map({"x": [1], "k": 1}, map_over=["x", "x"]),
        MapSpecError,
        "`x` more than once",
        CALL,
    ),
    (
        "set mapped",
        lambda: PIPE.map({"x": {1, 2}, "k": 1}, map_over="x"),
        ArgumentTypeError,
        "`x` must be a column of items (a list, tuple, range, numpy array",
        CALL,
    ),
    (
        "generator mapped",
        lambda: PIPE.map({"x": (i for i in [1]), "k": 1}, map_over="x"),
        ArgumentTypeError,
        "got generator",
        CALL,
    ),
    ("dict mapped", lambda: PIPE.map({"x": {1: 2}, "k": 1}, map_over="x"), ArgumentTypeError, "got dict", CALL),
    ("scalar mapped", lambda: PIPE.map({"x": 5, "k": 1}, map_over="x"), ArgumentTypeError, "got int", CALL),
    (
        "zip lengths",
        lambda: PIPE.map({"x": [1, 2], "k": [1, 2, 3]}, map_over=["x", "k"]),
        MapSpecError,
        "equal length, got `x`: 2, `k`: 3",
        CALL,
    ),
    (
        "map_mode",
        lambda: PIPE.map({"x": [1], "k": 1}, map_over="x", map_mode="cross"),
        MapSpecError,
        "'cross'; allowed: 'zip', 'product'",
        CALL,
    ),
    ("huge product", _huge_product, MapSpecError, "too many to run", CALL),
    (
        "unpicklable input to processes",
        _unpicklable_input_to_processes,
        TypeError,
        "input `k` cannot be pickled",
        CALL,
    ),
    (
        "shut-down map executor",
        _map_on_a_shut_down_pool,
        RuntimeError,
        "ThreadPoolExecutor.submit() raised this, so the task never ran",
        CALL,
    ),
    # the offending node runs
    (
        "node returns a scalar for a tuple output_name",
        lambda: DIGITS.run({"x": 1, "k": 2}),
        OutputArityError,
        "Node `digits` has 2 output names and must return a tuple (or list) of 2 values, but returned int",
        at_node("digits"),
    ),
    (
        "node returns a scalar in a map",
        lambda: DIGITS.map({"x": [5, 1], "k": 2}, map_over="x"),
        OutputArityError,
        "must return a tuple (or list) of 2 values",
        at_node("digits", item=1),
    ),
    (
        "node returns too many values",
        lambda: TRIPLE.run({"x": 1, "k": 2}),
        OutputArityError,
        "Node `triple` has 2 output names but returned a tuple of 3",
        at_node("triple"),
    ),
    (
        "node returns too many values in a map",
        lambda: TRIPLE.map({"x": [1, 2], "k": 2}, map_over="x"),
        OutputArityError,
        "has 2 output names but returned a tuple of 3",
        at_node("triple", item=0),
    ),
    (
        "nested map given a set",
        lambda: NESTED_MAP.run({"x": {1, 2}, "k": 1}),
        ArgumentTypeError,
        "Node `pipe` maps over `x`, which must be a column of items (a list, tuple, range",
        at_node("pipe"),
    ),
]


@pytest.mark.parametrize(("case", "call", "error", "fragment", "when"), MALFORMED, ids=[row[0] for row in MALFORMED])
def test_malformed_pipelines_and_calls_fail_early_and_say_why(
    case: str, call: Callable[[], Any], error: type[BaseException], fragment: str, when: str
) -> None:
    """Each mistake raises its documented class, names the problem, and fails no later than its `when`."""
    with pytest.raises(error) as info:
        call()
    notes = getattr(info.value, "__notes__", [])
    assert fragment in "\n".join([str(info.value), *notes])
    if when in (CONSTRUCTION, CALL):
        assert not CALLS, f"{case}: nodes ran before the error: {dict(CALLS)}"
    else:
        assert f"hypernodes: raised in {when.removeprefix('at ')}" in notes


def test_table_covers_every_when_and_only_our_errors() -> None:
    """The table has 30+ rows of every kind; all expect a HypernodesError but pickle's and a user executor's."""
    assert len(MALFORMED) >= 30
    assert {when for *_, when in MALFORMED} >= {CONSTRUCTION, CALL, at_node("digits")}
    foreign = {case for case, _, error, _, _ in MALFORMED if not issubclass(error, HypernodesError)}
    assert foreign == {"unpicklable input to processes", "shut-down map executor"}


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
    assert issubclass(OutputArityError, ValueError)
    assert issubclass(InputTypeError, TypeError)
    from hypernodes import errors

    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    # RemoteError, WiringError, ExecutionError, TypeMismatchError, InputTypeError, WorkerDied; HyperNodesError and
    # DependencyError are aliases
    assert len(set(classes)) == 17
    for cls in classes:
        assert issubclass(cls, HypernodesError), cls
    # KeyError subclasses print their sentence, not a quoted repr of it
    assert str(MissingInputError("Missing `x`")) == "Missing `x`"


def test_cycle_error_lists_the_nodes_on_the_cycle() -> None:
    """CycleError.cycle holds the nodes on the cycle in data-flow order, without bystanders."""
    with pytest.raises(CycleError) as info:
        Pipeline([bystander, make_a, make_b, make_c])
    assert info.value.cycle == ("make_a", "make_b", "make_c")


def test_engine_accepts_every_spec_the_notebook_uses() -> None:
    """Every executor spec of the seed notebook constructs (the names are kept in the repr);
    executor objects are kept as given."""
    from hypernodes.executors import AsyncExecutor

    for name in ("sequential", "threaded", "async", "parallel"):
        assert f"node_executor={name!r}" in repr(HypernodesEngine(node_executor=name, max_workers=4))
        assert f"map_executor={name!r}" in repr(HypernodesEngine(map_executor=name, max_workers=4))
    for name in ("sequential", "threaded", "async"):
        assert f"node_executor={name!r}" in repr(HypernodesEngine(node_executor=name, map_executor=name))
    with ThreadPoolExecutor(2) as pool:
        assert HypernodesEngine(map_executor=pool).map_executor is pool
    executor = AsyncExecutor(max_workers=100)
    assert HypernodesEngine(map_executor=executor).map_executor is executor
    executor.shutdown()
