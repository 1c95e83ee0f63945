"""The event seam: an observer sees every node and item under every executor; a lookup replaces calls.

Calls are prepared with ``_call.prepare_run`` / ``prepare_map`` (which take the
observer and the lookup) and executed with ``engine.run_call`` / ``map_call``, the
path ``Pipeline.run``/``map`` take without them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes._call import prepare_map, prepare_run

from .kinds import EXECUTOR_KINDS, NODE_EXECUTOR_KINDS
from .pipelines import DIAMOND, expected_diamond


class Counting:
    """A thread-safe observer keeping (event, node name, item) counts and every duration."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.lock = threading.Lock()
        self.events: Counter[tuple[str, str, int]] = Counter()
        self.seconds: list[float] = []
        self.errors: list[tuple[str, int, BaseException]] = []

    def _add(self, event: str, node: int, item: int, seconds: float | None = None) -> None:
        with self.lock:
            self.events[(event, self.names[node] if node >= 0 else "", item)] += 1
            if seconds is not None:
                self.seconds.append(seconds)

    def item_start(self, item: int) -> None:
        self._add("item_start", -1, item)

    def item_end(self, item: int, seconds: float) -> None:
        self._add("item_end", -1, item, seconds)

    def node_start(self, node: int, item: int) -> None:
        self._add("node_start", node, item)

    def node_end(self, node: int, item: int, seconds: float) -> None:
        self._add("node_end", node, item, seconds)

    def node_cached(self, node: int, item: int) -> None:
        self._add("node_cached", node, item)

    def node_error(self, node: int, item: int, exc: BaseException) -> None:
        self._add("node_error", node, item)
        with self.lock:
            self.errors.append((self.names[node], item, exc))


class DoubledFromTable:
    """A lookup that knows `double`'s result for even inputs (picklable: it travels to workers)."""

    def __init__(self, node_index: int) -> None:
        self.node_index = node_index
        self.puts: list[tuple[int, tuple[Any, ...]]] = []

    def get(self, node: int, item: int, args: tuple[Any, ...]) -> tuple[Any] | None:
        if node == self.node_index and args[0] % 2 == 0:
            return (2 * args[0],)
        return None

    def put(self, node: int, item: int, args: tuple[Any, ...], result: Any) -> None:
        self.puts.append((node, args))


NAMES = [n.name for n in DIAMOND]


def _expected(events: list[str], items: list[int], names: list[str]) -> Counter[tuple[str, str, int]]:
    want: Counter[tuple[str, str, int]] = Counter()
    for i in items:
        for event in events:
            if event.startswith("item"):
                want[(event, "", i)] += 1
            else:
                for name in names:
                    want[(event, name, i)] += 1
    return want


@pytest.mark.parametrize("map_kind", EXECUTOR_KINDS)
def test_a_map_reports_every_item_and_node_once(map_kind: str, make_executor: Callable[[str], Any]) -> None:
    """Under every map executor, each item's start and end and each node's start and end (with a
    duration) reach the observer exactly once, numbered by the item's index in the whole map."""
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine)
        xs = list(range(9))
        call = prepare_map(pipeline.plans, {"x": xs}, "x", "zip", None, observer=None)
        observer = Counting(call.plan.node_names)
        call.observer = observer
        got = engine.map_call(call)
    assert got["total"] == [expected_diamond(x)["total"] for x in xs]
    assert observer.events == _expected(["item_start", "item_end", "node_start", "node_end"], xs, NAMES)
    assert len(observer.seconds) == len(xs) * (1 + len(NAMES))
    assert all(s >= 0 for s in observer.seconds)


@pytest.mark.parametrize("node_kind", NODE_EXECUTOR_KINDS)
def test_a_run_reports_every_node_once(node_kind: str, make_executor: Callable[[str], Any]) -> None:
    """Under every node executor, run() reports each node's start and end once, with item -1."""
    with HypernodesEngine(node_executor=make_executor(node_kind), max_workers=2) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine)
        call = prepare_run(pipeline.plans, {"x": 3}, None)
        observer = Counting(call.plan.node_names)
        call.observer = observer
        got = engine.run_call(call)
    assert got == expected_diamond(3)
    assert observer.events == _expected(["node_start", "node_end"], [-1], NAMES)


@node(output_name="y")
def _fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "async", "parallel", "PicklingExecutor"])
def test_an_error_reaches_the_observer_with_its_node_and_item(
    map_kind: str, make_executor: Callable[[str], Any]
) -> None:
    """The failing node and item are reported to the observer with the exception, which still propagates."""
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline([_fails_on_three], backend=engine)
        call = prepare_map(pipeline.plans, {"x": list(range(6))}, "x", "zip", None)
        observer = Counting(call.plan.node_names)
        call.observer = observer
        with pytest.raises(ValueError, match="three"):
            engine.map_call(call)
    assert [(name, item) for name, item, _ in observer.errors] == [("_fails_on_three", 3)]
    assert isinstance(observer.errors[0][2], ValueError)
    assert observer.events[("item_end", "", 3)] == 0


@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "AsyncExecutor", "parallel", "PicklingExecutor"])
def test_a_lookup_hit_replaces_the_call(map_kind: str, make_executor: Callable[[str], Any]) -> None:
    """A lookup that answers for `double` on even inputs: those items report `node_cached` instead of a
    start and end, the results are unchanged, and every call made is reported to the lookup."""
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine)
        xs = list(range(8))
        call = prepare_map(pipeline.plans, {"x": xs}, "x", "zip", None)
        k = call.plan.node_names.index("double")
        lookup = DoubledFromTable(k)
        observer = Counting(call.plan.node_names)
        call.observer, call.lookup = observer, lookup
        got = engine.map_call(call)
    assert got["total"] == [expected_diamond(x)["total"] for x in xs]
    for x in xs:
        cached = x % 2 == 0
        assert observer.events[("node_cached", "double", x)] == int(cached)
        assert observer.events[("node_start", "double", x)] == int(not cached)
    if engine._runtime.items.in_process:  # a worker's lookup is a copy: its puts stay there
        assert sorted(args[0] for node_, args in lookup.puts if node_ == k) == [1, 3, 5, 7]


@pytest.mark.parametrize("node_kind", ["sequential", "threaded", "async"])
def test_a_lookup_works_at_node_level(node_kind: str) -> None:
    """run() with a node executor asks the lookup too: a hit skips the node and releases its successors."""
    with HypernodesEngine(node_executor=node_kind) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine)
        call = prepare_run(pipeline.plans, {"x": 4}, None)
        k = call.plan.node_names.index("double")
        observer = Counting(call.plan.node_names)
        call.observer, call.lookup = observer, DoubledFromTable(k)
        assert engine.run_call(call) == expected_diamond(4)
    assert observer.events[("node_cached", "double", -1)] == 1
    assert observer.events[("node_start", "double", -1)] == 0
    assert observer.events[("node_end", "total", -1)] == 1
