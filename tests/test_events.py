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
from hypernodes._events import Lookup

from .kinds import EXECUTOR_KINDS, NODE_EXECUTOR_KINDS
from .pipelines import DIAMOND, expected_diamond


class Counting:
    """A thread-safe observer keeping (event, node name, item) counts and every duration.

    Its remote twin (for worker processes) records the calls and the parent replays them.
    """

    node_events = True
    item_events = True

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.lock = threading.Lock()
        self.events: Counter[tuple[str, str, int]] = Counter()
        self.seconds: list[float] = []
        self.errors: list[tuple[str, int, BaseException]] = []
        self.done = 0
        self.recorded: list[tuple[str, tuple[Any, ...]]] | None = None  # set in a remote twin

    def _add(self, event: str, node: int, item: int, seconds: float | None = None) -> None:
        with self.lock:
            self.events[(event, self.names[node] if node >= 0 else "", item)] += 1
            if seconds is not None:
                self.seconds.append(seconds)

    def _record(self, method: str, *args: Any) -> bool:
        if self.recorded is None:
            return False
        self.recorded.append((method, args))
        return True

    def item_start(self, item: int) -> None:
        if not self._record("item_start", item):
            self._add("item_start", -1, item)

    def item_end(self, item: int, seconds: float) -> None:
        if not self._record("item_end", item, seconds):
            self._add("item_end", -1, item, seconds)

    def items_done(self, count: int) -> None:
        if not self._record("items_done", count):
            with self.lock:
                self.done += count

    def node_start(self, node: int, item: int, args: tuple[Any, ...]) -> None:
        if not self._record("node_start", node, item, args):
            self._add("node_start", node, item)

    def node_end(self, node: int, item: int, seconds: float, result: Any) -> None:
        if not self._record("node_end", node, item, seconds, result):
            self._add("node_end", node, item, seconds)

    def node_cached(self, node: int, item: int, result: Any) -> None:
        if not self._record("node_cached", node, item, result):
            self._add("node_cached", node, item)

    def node_error(self, node: int, item: int, exc: BaseException) -> None:
        if self._record("node_error", node, item, exc):
            return
        self._add("node_error", node, item)
        with self.lock:
            self.errors.append((self.names[node], item, exc))

    def remote(self) -> Counting:
        twin = Counting(self.names)
        twin.recorded = []
        return twin

    def drain(self) -> list[tuple[str, tuple[Any, ...]]]:
        assert self.recorded is not None
        events, self.recorded = self.recorded, []
        return events

    def replay(self, events: list[tuple[str, tuple[Any, ...]]]) -> None:
        for method, args in events:
            getattr(self, method)(*args)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()


class DoubledFromTable(Lookup):
    """A lookup that knows `double`'s result for even inputs (picklable: it travels to workers).

    It defines only ``get`` and ``put``: the drivers call the base class's no-op
    ``prefetch``, ``flush`` and ``inherit``."""

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
    assert observer.done == len(xs)


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


class ErrorsOnly(Counting):
    """An observer that wants neither node nor item events: the plain loops run, errors still arrive."""

    node_events = False
    item_events = False

    def remote(self) -> ErrorsOnly:
        twin = ErrorsOnly(self.names)
        twin.recorded = []
        return twin


@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "parallel"])
def test_an_observer_without_node_or_item_events_hears_progress_and_errors_only(
    map_kind: str, make_executor: Callable[[str], Any]
) -> None:
    """With both flags off no node or item event is sent; items_done adds up to the items, and an
    error still reaches the observer with its node and item."""
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline([_fails_on_three], backend=engine)
        call = prepare_map(pipeline.plans, {"x": [0, 1, 2, 4, 5]}, "x", "zip", None)
        observer = ErrorsOnly(call.plan.node_names)
        call.observer = observer
        assert engine.map_call(call) == {"y": [0, 1, 2, 4, 5]}
        assert observer.done == 5
        assert not observer.events
        call = prepare_map(pipeline.plans, {"x": list(range(6))}, "x", "zip", None)
        call.observer = observer
        with pytest.raises(ValueError, match="three"):
            engine.map_call(call)
    assert [(name, item) for name, item, _ in observer.errors] == [("_fails_on_three", 3)]
    assert set(observer.events) == {("node_error", "_fails_on_three", 3)}


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
