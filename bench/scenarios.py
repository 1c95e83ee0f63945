"""The benchmark scenarios, registered by name in :data:`SCENARIOS`.

A scenario takes the :class:`~bench._harness.Settings` and returns its result rows.
To add one, write such a function and decorate it with ``@register("name")``. Each
scenario checks the pipeline's result against its baseline's once (which also warms
the pipeline's plan cache) before timing both with :func:`~bench._harness.best_of`;
``seed``, whose calls take seconds, checks the results of its timed calls instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

from hypernodes import HypernodesEngine, Pipeline, node

from ._harness import Row, Settings, best_of, check

__all__ = ["CHAIN_CALLS", "CHAIN_LENGTH", "SCENARIOS", "SEED_NOTEBOOK_S", "SEED_ROUNDS", "Scenario", "register"]

Scenario = Callable[[Settings], list[Row]]

SCENARIOS: dict[str, Scenario] = {}
"""Scenario name -> scenario, in the order ``python -m bench`` runs them."""

CHAIN_LENGTH = 200  # nodes in the overhead-chain pipeline
CHAIN_CALLS = 2000  # calls per timing round in overhead-chain

_US = 1e6  # microseconds per second


def register(name: str) -> Callable[[Scenario], Scenario]:
    """Decorator: add a scenario to :data:`SCENARIOS` under ``name``."""

    def add(scenario: Scenario) -> Scenario:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is registered twice")
        SCENARIOS[name] = scenario
        return scenario

    return add


def _inc(x: int) -> int:
    return x + 1


@register("overhead-map")
def overhead_map(settings: Settings) -> list[Row]:
    """A one-node pipeline mapped over ``settings.items`` items, against a list comprehension."""
    name, variant = "overhead-map", "sequential"
    xs = list(range(settings.items))
    pipeline = Pipeline(nodes=[node(_inc, output_name="y")])

    def candidate() -> dict[str, list[Any]]:
        return pipeline.map(inputs={"x": xs}, map_over="x")

    def baseline() -> list[int]:
        return [_inc(x) for x in xs]

    check(name, variant, candidate(), {"y": baseline()})
    best = best_of({"baseline": baseline, variant: candidate}, settings.repeat)
    per_item = _US / settings.items
    return [Row(name, variant, "us/item", best[variant] * per_item, best["baseline"] * per_item)]


def _chain_functions(length: int) -> list[Callable[[int], int]]:
    """Distinct functions ``v1 .. v{length}`` with ``v{i}(v{i-1}) = v{i-1} + 1``.

    Nodes are wired by parameter name, so each function's parameter is literally
    named ``v{i-1}``; ``exec`` is the plainest way to spell that.
    """
    namespace: dict[str, Any] = {}
    for i in range(1, length + 1):
        exec(f"def v{i}(v{i - 1}):\n    return v{i - 1} + 1\n", namespace)
    return [namespace[f"v{i}"] for i in range(1, length + 1)]


@register("overhead-chain")
def overhead_chain(settings: Settings) -> list[Row]:
    """A ``CHAIN_LENGTH``-node chain run once per call, against a loop calling the same functions."""
    name = "overhead-chain"
    funcs = _chain_functions(CHAIN_LENGTH)
    pipeline = Pipeline(nodes=[node(fn, output_name=fn.__name__) for fn in funcs])
    last = funcs[-1].__name__
    one, every = f"run->{last}", "run->all outputs"

    def baseline() -> int:
        v = 0
        for fn in funcs:
            v = fn(v)
        return v

    def run_one() -> dict[str, Any]:
        return pipeline.run(inputs={"v0": 0}, output_name=last)

    def run_all() -> dict[str, Any]:
        return pipeline.run(inputs={"v0": 0}, output_name=None)

    every_value: dict[str, int] = {}
    v = 0
    for fn in funcs:
        v = every_value[fn.__name__] = fn(v)
    check(name, one, run_one(), {last: baseline()})
    check(name, every, run_all(), every_value)

    best = best_of({"baseline": baseline, one: run_one, every: run_all}, settings.repeat, loops=CHAIN_CALLS)
    per_node = _US / (CHAIN_CALLS * CHAIN_LENGTH)
    base = best["baseline"] * per_node
    return [Row(name, variant, "us/node", best[variant] * per_node, base) for variant in (one, every)]


# -- seed: the workloads of the user's executor-comparison notebook ----------------------------

SEED_ROUNDS = 2  # seed's timing rounds: at most this many (its workloads take seconds per round)

SEED_NOTEBOOK_S = {
    "node-level": 0.314,
    "map-level": 4.326,
    "native-async": 5.196,  # the notebook's sequential row here ran the sync twin (time.sleep)
    "cpu-bound": 0.936,
}
"""The notebook's own sequential figures: seconds for one cold run of each full-size workload."""

_MAP_SLEEP = 0.05  # process_item's sleep
_ASYNC_DELAY = 0.1  # async_io_operation's delay
_HASH_ROUNDS = 100_000  # chained sha256 per compute_heavy_hash call


class _SeedSize(NamedTuple):
    node_sleep: float  # each of io_task1..3
    map_items: int
    async_items: int
    cpu_items: int


_SEED_FULL = _SeedSize(node_sleep=0.1, map_items=80, async_items=50, cpu_items=20)  # the notebook's sizes
_SEED_QUICK = _SeedSize(node_sleep=0.01, map_items=8, async_items=5, cpu_items=2)  # --quick: 10x smaller


def _io_tasks(delay: float) -> tuple[Callable[[int], int], ...]:
    """The notebook's io_task1..3: each sleeps ``delay`` and returns x*2, x*3, x*4."""

    def io_task1(x: int) -> int:
        time.sleep(delay)
        return x * 2

    def io_task2(x: int) -> int:
        time.sleep(delay)
        return x * 3

    def io_task3(x: int) -> int:
        time.sleep(delay)
        return x * 4

    return io_task1, io_task2, io_task3


def _combine_tasks(task1: int, task2: int, task3: int) -> dict[str, int]:
    return {"task1": task1, "task2": task2, "task3": task3}


def _process_item(x: int) -> int:
    time.sleep(_MAP_SLEEP)
    return x**2


async def _async_io_operation(delay: float) -> dict[str, float]:
    """Simulated async I/O, as in the notebook; ``duration`` is measured, so checks ignore it."""
    start = time.perf_counter()
    await asyncio.sleep(delay)
    return {"delay": delay, "duration": time.perf_counter() - start}


def _compute_heavy_hash(text: str) -> str:
    result = text
    for _ in range(_HASH_ROUNDS):
        result = hashlib.sha256(result.encode()).hexdigest()
    return result[:16]


def _without_durations(result: Any) -> Any:
    """A native-async result with the measured ``duration`` of each item dropped."""
    if isinstance(result, dict):
        return {k: _without_durations(v) for k, v in result.items() if k != "duration"}
    if isinstance(result, list):
        return [_without_durations(v) for v in result]
    return result


def _seed_rows(
    workload: str,
    candidates: Mapping[str, Callable[[], object]],
    baseline: Callable[[], object],
    rounds: int,
    comparable: Callable[[Any], Any] = lambda result: result,
) -> list[Row]:
    """Time ``baseline`` and each candidate (seconds per call), then check every candidate's result.

    Unlike the overhead scenarios these calls take seconds, so there is no separate
    checking call: the timed calls keep their results and the last round's are checked.
    """
    results: dict[str, object] = {}

    def keeping(key: str, fn: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            results[key] = fn()

        return call

    contenders = {"baseline": keeping("baseline", baseline)}
    contenders.update({variant: keeping(variant, fn) for variant, fn in candidates.items()})
    best = best_of(contenders, rounds)
    rows: list[Row] = []
    for variant in candidates:
        label = f"{workload}/{variant}"
        check("seed", label, comparable(results[variant]), comparable(results["baseline"]))
        rows.append(Row("seed", label, "s", best[variant], best["baseline"]))
    return rows


@register("seed")
def seed(settings: Settings) -> list[Row]:
    """The notebook's four workloads on each engine hypernodes runs today, against plain Python.

    Each workload gives one row per engine, named ``<workload>/<variant>`` and timed
    in seconds per call. Only the sequential engine runs today; the executors
    release adds its threaded/async/parallel engines to ``engines``.
    """
    size = _SEED_QUICK if settings.quick else _SEED_FULL
    rounds = min(settings.repeat, SEED_ROUNDS)
    with HypernodesEngine(node_executor="sequential", map_executor="sequential") as sequential:
        engines = {"sequential": sequential}
        rows: list[Row] = []

        # node-level: three independent sleeping nodes and a combine node, run once.
        tasks = _io_tasks(size.node_sleep)
        nodes = [node(fn, output_name=f"task{i}") for i, fn in enumerate(tasks, 1)]
        nodes.append(node(_combine_tasks, output_name="final"))

        def node_baseline() -> dict[str, Any]:
            t1, t2, t3 = (fn(10) for fn in tasks)
            return {"task1": t1, "task2": t2, "task3": t3, "final": _combine_tasks(t1, t2, t3)}

        node_pipelines = {v: Pipeline(nodes=nodes, backend=e) for v, e in engines.items()}
        rows += _seed_rows(
            "node-level",
            {v: partial(p.run, inputs={"x": 10}) for v, p in node_pipelines.items()},
            node_baseline,
            rounds,
        )

        # map-level: one sleeping node mapped over the items.
        xs = list(range(size.map_items))
        map_pipelines = {
            v: Pipeline(nodes=[node(_process_item, output_name="processed")], backend=e) for v, e in engines.items()
        }
        rows += _seed_rows(
            "map-level",
            {v: partial(p.map, inputs={"x": xs}, map_over="x") for v, p in map_pipelines.items()},
            lambda: {"processed": [_process_item(x) for x in xs]},
            rounds,
        )

        # native-async: an `async def` node mapped over the delays (sequential awaits one at a time).
        delays = [_ASYNC_DELAY] * size.async_items
        async_pipelines = {
            v: Pipeline(nodes=[node(_async_io_operation, output_name="async_fetch")], backend=e)
            for v, e in engines.items()
        }

        async def await_each() -> list[dict[str, float]]:
            return [await _async_io_operation(d) for d in delays]

        rows += _seed_rows(
            "native-async",
            {v: partial(p.map, inputs={"delay": delays}, map_over="delay") for v, p in async_pipelines.items()},
            lambda: {"async_fetch": asyncio.run(await_each())},
            rounds,
            comparable=_without_durations,
        )

        # cpu-bound: chained sha256 per item.
        texts = [f"item_{i}" for i in range(size.cpu_items)]
        cpu_pipelines = {
            v: Pipeline(nodes=[node(_compute_heavy_hash, output_name="hash_result")], backend=e)
            for v, e in engines.items()
        }
        rows += _seed_rows(
            "cpu-bound",
            {v: partial(p.map, inputs={"text": texts}, map_over="text") for v, p in cpu_pipelines.items()},
            lambda: {"hash_result": [_compute_heavy_hash(t) for t in texts]},
            rounds,
        )
    return rows
