"""The benchmark scenarios, registered by name in :data:`SCENARIOS`.

A scenario takes the :class:`~bench._harness.Settings` and returns its result rows.
To add one, write such a function and decorate it with ``@register("name")``. Each
scenario checks the pipeline's result against its baseline's once (which also warms
the pipeline's plan cache) before timing both with :func:`~bench._harness.best_of`;
``seed``, whose calls take seconds, checks the results of its timed calls instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple

from loky import ProcessPoolExecutor

from hypernodes import HypernodesEngine, Node, Pipeline, node
from hypernodes._core import plan_batches
from hypernodes.executors import AsyncExecutor
from hypernodes.executors._spec import DEFAULT_WORKERS
from hypernodes.executors.backends import THREAD_TASKS_PER_WORKER

from ._harness import BenchError, Row, Settings, best_of, check

__all__ = [
    "CALLS",
    "CHAIN_CALLS",
    "CHAIN_LENGTH",
    "OPT_IN",
    "SCENARIOS",
    "SEED_NOTEBOOK",
    "SEED_ROUNDS",
    "Scenario",
    "register",
]

Scenario = Callable[[Settings], list[Row]]

SCENARIOS: dict[str, Scenario] = {}
"""Scenario name -> scenario, in the order ``python -m bench`` runs them."""

OPT_IN = frozenset({"dask", "cache", "hashing", "telemetry", "columns", "ml"})
"""Scenarios ``python -m bench`` runs only when named: ``dask`` starts a cluster, ``cache``
takes minutes (its cold maps do 30 s of work each), ``hashing`` needs dask and joblib,
``telemetry`` needs the OpenTelemetry SDK, and ``columns`` maps 10,000,000 items."""

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


CALLS = 20_000  # calls per timing round in overhead-call


@register("overhead-call")
def overhead_call(settings: Settings) -> list[Row]:
    """What one call costs: run() of a one-node pipeline and map() of one item, per call, against
    plain Python building the same result (a dict of the value, a dict of a one-element list)."""
    name = "overhead-call"
    pipeline = Pipeline(nodes=[node(_inc, output_name="y")])
    one, mapped = {"x": 1}, {"x": [1]}

    def run() -> dict[str, Any]:
        return pipeline.run(one)

    def map_one() -> dict[str, list[Any]]:
        return pipeline.map(mapped, map_over="x")

    def plain_run() -> dict[str, Any]:
        return {"y": _inc(one["x"])}

    def plain_map() -> dict[str, list[Any]]:
        return {"y": [_inc(x) for x in mapped["x"]]}

    check(name, "run", run(), plain_run())
    check(name, "map of one item", map_one(), plain_map())
    contenders = {"plain run": plain_run, "run": run, "plain map": plain_map, "map of one item": map_one}
    best = best_of(contenders, settings.repeat, loops=CALLS)
    per_call = _US / CALLS
    return [
        Row(name, "run, one node", "us/call", best["run"] * per_call, best["plain run"] * per_call),
        Row(name, "map, one item", "us/call", best["map of one item"] * per_call, best["plain map"] * per_call),
    ]


# -- seed: the workloads of the user's executor-comparison notebook ----------------------------

SEED_ROUNDS = 2  # seed's timing rounds: at most this many (its workloads take seconds per round)

SEED_NOTEBOOK = (
    ("NODE-LEVEL: 3 independent 0.1 s tasks -> combine", "node-level",
     (("Sequential", "sequential", 0.314), ("Async", "async", 0.102), ("Threaded", "threaded", 0.106))),
    ("MAP-LEVEL: 80 items x 0.05 s", "map-level",
     (("Sequential", "sequential", 4.326), ("Async", "async", 0.331), ("Threaded", "threads", 0.069),
      ("Parallel", "parallel", 1.324))),
    ("SYNC-WRAPPED: 40 items x 0.05 s", "sync-wrapped",
     (("AsyncExecutor", "AsyncExecutor", 0.164), ("ThreadPool", "threads", 0.059),
      ("ThreadPool+async nodes", "threads+node-async", 0.059))),
    ("NATIVE ASYNC: 50 items x await 0.1 s", "native-async",
     (("Sequential", "sequential", 5.196), ("Async", "async", 0.418))),
    ("CPU-BOUND: 20 items x 100,000 sha256", "cpu-bound",
     (("Sequential", "sequential", 0.936), ("Threaded", "threaded", 0.963), ("Parallel", "parallel", 0.201))),
)  # fmt: skip
"""The notebook's tables: (title, workload, ((label, seed variant, the notebook's seconds), ...)).

The notebook's figures are one cold run each on its author's machine (about 10 CPUs);
its native-async sequential row ran the sync twin (time.sleep).
"""

_MAP_SLEEP = 0.05  # process_item's sleep
_ASYNC_DELAY = 0.1  # async_io_operation's delay
_HASH_ROUNDS = 100_000  # chained sha256 per compute_heavy_hash call


class _SeedSize(NamedTuple):
    node_sleep: float  # each of io_task1..3
    map_items: int
    async_items: int
    sync_items: int
    cpu_items: int
    tiny_items: int


# the notebook's sizes, and --quick: 10x smaller
_SEED_FULL = _SeedSize(node_sleep=0.1, map_items=80, async_items=50, sync_items=40, cpu_items=20, tiny_items=200_000)
_SEED_QUICK = _SeedSize(node_sleep=0.01, map_items=8, async_items=5, sync_items=4, cpu_items=2, tiny_items=20_000)


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
    against: str = "plain Python",
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
        rows.append(Row("seed", label, "s", best[variant], best["baseline"], against))
    return rows


def _raw_map(executor: Executor, fn: Callable[[Any], Any], xs: list[Any]) -> list[Any]:
    return list(executor.map(fn, xs))


@register("seed")
def seed(settings: Settings) -> list[Row]:
    """The notebook's workloads on each engine it uses, each next to the raw executor it wraps.

    Rows are named ``<workload>/<engine>`` and timed in seconds per call (tiny-items:
    microseconds per item). A sequential row's baseline is the same calls in plain
    Python; an executor row's is the raw executor doing the same calls, in the same
    run: ``ThreadPoolExecutor.map``, loky's ``map``, or ``asyncio.gather``.
    """
    size = _SEED_QUICK if settings.quick else _SEED_FULL
    rounds = min(settings.repeat, SEED_ROUNDS)
    cpus = os.cpu_count() or 1
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=100))
        raw_loky = ProcessPoolExecutor(max_workers=cpus)  # the raw executor "parallel" wraps, started below
        stack.callback(raw_loky.shutdown)
        executors: list[Executor] = [AsyncExecutor(100), AsyncExecutor(50), AsyncExecutor(100)]
        executors += [ThreadPoolExecutor(max_workers=100) for _ in range(3)]
        for executor in executors:
            stack.callback(executor.shutdown)

        def engine(**kwargs: Any) -> HypernodesEngine:
            return stack.enter_context(HypernodesEngine(**kwargs))

        def mapped(
            fn: Callable[[Any], Any], output: str, name: str, values: list[Any], **kwargs: Any
        ) -> Callable[[], Any]:
            """A one-node pipeline of ``fn`` mapped over ``values`` (as input ``name``) on an engine of ``kwargs``."""
            pipeline = Pipeline(nodes=[node(fn, output_name=output)], backend=engine(**kwargs))
            return partial(pipeline.map, inputs={name: values}, map_over=name)

        def as_output(output: str, fn: Callable[[], list[Any]]) -> Callable[[], dict[str, list[Any]]]:
            """``fn``'s list as a map result of ``output``."""
            return lambda: {output: fn()}

        # node-level: three independent sleeping nodes and a combine node, run once.
        tasks = _io_tasks(size.node_sleep)
        nodes: list[Node[..., Any]] = [node(fn, output_name=f"task{i}") for i, fn in enumerate(tasks, 1)]
        nodes.append(node(_combine_tasks, output_name="final"))
        node_pool = stack.enter_context(ThreadPoolExecutor(max_workers=3))

        def combined(t1: int, t2: int, t3: int) -> dict[str, Any]:
            return {"task1": t1, "task2": t2, "task3": t3, "final": _combine_tasks(t1, t2, t3)}

        def node_plain() -> dict[str, Any]:
            return combined(*(fn(10) for fn in tasks))

        def node_threads() -> dict[str, Any]:
            futures = [node_pool.submit(fn, 10) for fn in tasks]
            return combined(*(f.result() for f in futures))

        def node_run(**kwargs: Any) -> Callable[[], dict[str, Any]]:
            return partial(Pipeline(nodes=nodes, backend=engine(**kwargs)).run, inputs={"x": 10})

        rows += _seed_rows("node-level", {"sequential": node_run()}, node_plain, rounds)
        node_executors = {"threaded": node_run(node_executor="threaded"), "async": node_run(node_executor="async")}
        rows += _seed_rows("node-level", node_executors, node_threads, rounds, "ThreadPoolExecutor")

        # map-level: one sleeping node mapped over the items.
        xs = list(range(size.map_items))

        rows += _seed_rows(
            "map-level",
            {"sequential": mapped(_process_item, "processed", "x", xs)},
            as_output("processed", lambda: [_process_item(x) for x in xs]),
            rounds,
        )
        rows += _seed_rows(
            "map-level",
            {
                "async": mapped(_process_item, "processed", "x", xs, map_executor=executors[0]),
                "threads": mapped(_process_item, "processed", "x", xs, map_executor=executors[3]),
            },
            as_output("processed", partial(_raw_map, pool, _process_item, xs)),
            rounds,
            "ThreadPoolExecutor(100)",
        )
        parallel_map = mapped(_process_item, "processed", "x", xs, map_executor="parallel", max_workers=cpus)
        parallel_map()  # start both pools' worker processes before timing
        _raw_map(raw_loky, _process_item, xs[:cpus])
        rows += _seed_rows(
            "map-level",
            {"parallel": parallel_map},
            as_output("processed", partial(_raw_map, raw_loky, _process_item, xs)),
            rounds,
            f"loky({cpus})",
        )

        # native-async: an `async def` node mapped over the delays.
        delays = [_ASYNC_DELAY] * size.async_items

        async def await_each() -> list[dict[str, float]]:
            return [await _async_io_operation(d) for d in delays]

        async def gather() -> list[dict[str, float]]:
            return list(await asyncio.gather(*(_async_io_operation(d) for d in delays)))

        rows += _seed_rows(
            "native-async",
            {"sequential": mapped(_async_io_operation, "async_fetch", "delay", delays)},
            lambda: {"async_fetch": asyncio.run(await_each())},
            rounds,
            comparable=_without_durations,
        )
        rows += _seed_rows(
            "native-async",
            {"async": mapped(_async_io_operation, "async_fetch", "delay", delays, map_executor=executors[1])},
            lambda: {"async_fetch": asyncio.run(gather())},
            rounds,
            "asyncio.gather",
            comparable=_without_durations,
        )

        # sync-wrapped: the notebook's cell 16, a blocking node under each wide executor.
        items = list(range(size.sync_items))

        rows += _seed_rows(
            "sync-wrapped",
            {
                "AsyncExecutor": mapped(_process_item, "processed", "x", items, map_executor=executors[2]),
                "threads": mapped(_process_item, "processed", "x", items, map_executor=executors[4]),
                "threads+node-async": mapped(
                    _process_item, "processed", "x", items, map_executor=executors[5], node_executor="async"
                ),
            },
            as_output("processed", partial(_raw_map, pool, _process_item, items)),
            rounds,
            "ThreadPoolExecutor(100)",
        )

        # cpu-bound: chained sha256 per item.
        texts = [f"item_{i}" for i in range(size.cpu_items)]

        rows += _seed_rows(
            "cpu-bound",
            {"sequential": mapped(_compute_heavy_hash, "hash_result", "text", texts)},
            as_output("hash_result", lambda: [_compute_heavy_hash(t) for t in texts]),
            rounds,
        )
        rows += _seed_rows(
            "cpu-bound",
            {
                "threaded": mapped(
                    _compute_heavy_hash, "hash_result", "text", texts, map_executor="threaded", max_workers=cpus
                ),
                "parallel": mapped(
                    _compute_heavy_hash, "hash_result", "text", texts, map_executor="parallel", max_workers=cpus
                ),
            },
            as_output("hash_result", partial(_raw_map, raw_loky, _compute_heavy_hash, texts)),
            rounds,
            f"loky({cpus})",
        )

        # tiny-items: per-item overhead of slicing, against the sequential core loop.
        rows += _tiny_items(settings, engine, size.tiny_items)
    return rows


def _tiny_items(settings: Settings, engine: Callable[..., HypernodesEngine], n_items: int) -> list[Row]:
    xs = list(range(n_items))
    cpus = os.cpu_count() or 1
    inc = node(_inc, output_name="y")
    sequential = Pipeline(nodes=[inc], backend=engine())
    candidates = {
        "threaded": Pipeline(nodes=[inc], backend=engine(map_executor="threaded", max_workers=cpus)),
        "parallel": Pipeline(nodes=[inc], backend=engine(map_executor="parallel", max_workers=cpus)),
    }
    expected = {"y": [x + 1 for x in xs]}
    calls = {"baseline": partial(sequential.map, inputs={"x": xs}, map_over="x")}
    for variant, pipeline in candidates.items():
        calls[variant] = partial(pipeline.map, inputs={"x": xs}, map_over="x")
        check("seed", f"tiny-items/{variant}", calls[variant](), expected)
    best = best_of(calls, settings.repeat)  # a round is ~60 ms: all of them
    per_item = _US / n_items
    return [
        Row("seed", f"tiny-items/{v}", "us/item", best[v] * per_item, best["baseline"] * per_item, "sequential map")
        for v in candidates
    ]


# -- scale: a million tiny items against ten thousand ------------------------------------------

SCALE_SMALL = 10_000
SCALE_LARGE = 1_000_000


@register("scale")
def scale(settings: Settings) -> list[Row]:
    """Per-item cost of a 1,000,000-item map against a 10,000-item map on the same engine (the
    target: within 1.2x). Plain Python's own ratio is shown beside it: a million new results
    outgrow the CPU caches that ten thousand fit in. (The memory such a map needs is checked,
    and reported, by tests/test_load.py.)"""
    cpus = os.cpu_count() or 1
    xs = list(range(SCALE_LARGE))
    small = xs[:SCALE_SMALL]
    repeat = min(settings.repeat, 5)
    best = best_of(
        {"small": partial(_plain_map, small), "large": partial(_plain_map, xs)},
        repeat,
    )
    rows = [Row("scale", "1M-items/plain Python", "us/item", *_per_item(best), "10k items, same code")]
    inc = node(_inc, output_name="y")
    for kind in ("sequential", "threaded", "parallel"):
        with HypernodesEngine(map_executor=kind, max_workers=cpus) as engine:
            pipeline = Pipeline(nodes=[inc], backend=engine)
            check("scale", kind, pipeline.map(inputs={"x": small}, map_over="x"), {"y": _plain_map(small)})
            best = best_of(
                {
                    "small": partial(pipeline.map, inputs={"x": small}, map_over="x"),
                    "large": partial(pipeline.map, inputs={"x": xs}, map_over="x"),
                },
                repeat,
            )
        rows.append(Row("scale", f"1M-items/{kind}", "us/item", *_per_item(best), "10k-item map"))
    return rows


def _plain_map(xs: list[int]) -> list[int]:
    return [_inc(x) for x in xs]


def _per_item(best: Mapping[str, float]) -> tuple[float, float]:
    return best["large"] * _US / SCALE_LARGE, best["small"] * _US / SCALE_SMALL


# -- progress: what a progress bar costs -------------------------------------------------------

PROGRESS_TINY = 1_000_000
PROGRESS_SLEEPS = 80


def _nap(x: int) -> int:
    time.sleep(_MAP_SLEEP)
    return x


@register("progress")
def progress(settings: Settings) -> list[Row]:
    """ProgressCallback (writing to a null stream) against the same map without it: 1,000,000
    tiny items sequentially (target 1.1x) and 80 items of 0.05 s on 100 threads (target 1.02x)."""
    from hypernodes.telemetry import ProgressCallback

    rows = []
    n_tiny = PROGRESS_TINY // 10 if settings.quick else PROGRESS_TINY
    with open(os.devnull, "w") as null:
        bar = ProgressCallback(null, mode="terminal")
        inc = node(_inc, output_name="y")
        xs = list(range(n_tiny))
        plain, shown = Pipeline(nodes=[inc]), Pipeline(nodes=[inc], callbacks=[bar])
        check("progress", "tiny", shown.map(inputs={"x": xs}, map_over="x"), {"y": _plain_map(xs)})
        best = best_of(
            {"baseline": partial(plain.map, inputs={"x": xs}, map_over="x"),
             "bar": partial(shown.map, inputs={"x": xs}, map_over="x")},
            min(settings.repeat, 5),
        )  # fmt: skip
        per_item = _US / n_tiny
        rows.append(Row("progress", f"{n_tiny}-tiny-items/sequential", "us/item", best["bar"] * per_item,
                        best["baseline"] * per_item, "same map, no callback"))  # fmt: skip
        with ThreadPoolExecutor(100) as pool, HypernodesEngine(map_executor=pool) as engine:
            naps = node(_nap, output_name="y")
            ys = list(range(PROGRESS_SLEEPS))
            plain = Pipeline(nodes=[naps], backend=engine)
            shown = Pipeline(nodes=[naps], backend=engine, callbacks=[bar])
            check("progress", "sleeps", shown.map(inputs={"x": ys}, map_over="x"), {"y": ys})
            best = best_of(
                {"baseline": partial(plain.map, inputs={"x": ys}, map_over="x"),
                 "bar": partial(shown.map, inputs={"x": ys}, map_over="x")},
                min(settings.repeat, 5),
            )  # fmt: skip
        rows.append(Row("progress", f"{PROGRESS_SLEEPS}-sleeps/threads(100)", "s", best["bar"], best["baseline"],
                        "same map, no callback"))  # fmt: skip
    return rows


# -- cache: cold and warm maps with a cache ----------------------------------------------------

CACHE_ITEMS = 10_000  # --quick: 1,000
CACHE_WORK_S = 0.001  # each of the three nodes sleeps this long


def _work_a(x: int) -> int:
    time.sleep(CACHE_WORK_S)
    return x + 1


def _work_b(a: int) -> int:
    time.sleep(CACHE_WORK_S)
    return a * 2


def _work_c(b: int, x: int) -> int:
    time.sleep(CACHE_WORK_S)
    return b - x


@register("cache")
def cache(settings: Settings) -> list[Row]:
    """A 3-node pipeline (1 ms of work per node) mapped over 10,000 items: cold (an empty cache)
    against the same map uncached, and warm (every item cached) in microseconds per item against
    the uncached map's, for MemoryCache and DiskCache, sequential and "parallel" (DiskCache only:
    a MemoryCache's writes stay in the worker processes)."""
    import tempfile

    from hypernodes import DiskCache, MemoryCache

    n = CACHE_ITEMS // 10 if settings.quick else CACHE_ITEMS
    xs = list(range(n))
    nodes = [node(_work_a, output_name="a"), node(_work_b, output_name="b"), node(_work_c, output_name="c")]
    expected = {"a": [x + 1 for x in xs], "b": [(x + 1) * 2 for x in xs], "c": [(x + 1) * 2 - x for x in xs]}
    per_item = _US / n
    rows: list[Row] = []
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("sequential", "parallel"):
            with HypernodesEngine(map_executor=kind, max_workers=cpus) as engine:
                plain = Pipeline(nodes, backend=engine)
                plain.map(inputs={"x": xs[: 2 * cpus]}, map_over="x")  # start the workers before timing
                started = time.perf_counter()
                check("cache", f"uncached/{kind}", plain.map(inputs={"x": xs}, map_over="x"), expected)
                uncached = time.perf_counter() - started
                stores: dict[str, Callable[[], Any]] = {
                    "MemoryCache": MemoryCache,
                    "DiskCache": partial(DiskCache, f"{tmp}/{kind}"),
                }
                for store, make in stores.items():
                    if kind == "parallel" and store == "MemoryCache":
                        continue
                    pipeline = Pipeline(nodes, backend=engine, cache=make())
                    started = time.perf_counter()
                    check("cache", f"cold/{kind}/{store}", pipeline.map(inputs={"x": xs}, map_over="x"), expected)
                    cold = time.perf_counter() - started
                    rows.append(Row("cache", f"cold/{kind}/{store}", "s", cold, uncached, "the same map, uncached"))
                    check("cache", f"warm/{kind}/{store}", pipeline.map(inputs={"x": xs}, map_over="x"), expected)
                    best = best_of({"warm": partial(pipeline.map, inputs={"x": xs}, map_over="x")}, settings.repeat)
                    rows.append(
                        Row("cache", f"warm/{kind}/{store}", "us/item", best["warm"] * per_item,
                            uncached * per_item, "the same map, uncached")
                    )  # fmt: skip
        rows.extend(_tiny_cached(settings, tmp))
    return rows


TINY_CACHED_ITEMS = 100_000  # --quick: 10,000


def _plus_one(x: int) -> int:
    return x + 1


def _tiny_cached(settings: Settings, tmp: str) -> list[Row]:
    """What the cache adds per tiny item (``x + 1``, 100,000 items, sequential): the cold map (an
    empty cache each round) and the warm one, minus the bare map, in microseconds per item."""
    from hypernodes import DiskCache, MemoryCache

    n = TINY_CACHED_ITEMS // 10 if settings.quick else TINY_CACHED_ITEMS
    xs = list(range(n))
    expected = {"y": [x + 1 for x in xs]}
    nodes = [node(_plus_one, output_name="y")]
    bare = Pipeline(nodes)
    check("cache", "tiny/bare", bare.map(inputs={"x": xs}, map_over="x"), expected)
    rounds = max(1, min(settings.repeat, 3))
    fresh = iter(range(10**6))
    stores: dict[str, Callable[[], Any]] = {
        "MemoryCache": MemoryCache,
        "DiskCache": lambda: DiskCache(f"{tmp}/tiny-{next(fresh)}"),
    }
    rows: list[Row] = []
    for store, make in stores.items():
        warm = Pipeline(nodes, cache=make())
        check("cache", f"tiny/warm/{store}", warm.map(inputs={"x": xs}, map_over="x"), expected)

        def cold(make: Callable[[], Any] = make) -> None:
            Pipeline(nodes, cache=make()).map(inputs={"x": xs}, map_over="x")

        best = best_of(
            {"bare": partial(bare.map, inputs={"x": xs}, map_over="x"), "cold": cold,
             "warm": partial(warm.map, inputs={"x": xs}, map_over="x")},
            rounds,
        )  # fmt: skip
        rows.extend(
            Row("cache", f"tiny/{phase}/{store}", "us/item over bare", (best[phase] - best["bare"]) * _US / n,
                best["bare"] * _US / n, "the bare map, us/item")
            for phase in ("cold", "warm")
        )  # fmt: skip
    return rows


# -- errors: a map that keeps going past failing items ------------------------------------------

ERRORS_ITEMS = 10_000
ERRORS_EVERY = 100  # 1% of the items fail
ERRORS_WORK = b"x" * 8192  # each item hashes this (a few microseconds of work, like a small parse)


def _parse(x: int, fail_every: int) -> int:
    """A few microseconds of work; raises for every ``fail_every``-th item (never when 0)."""
    digest = hashlib.blake2b(ERRORS_WORK, digest_size=8, salt=x.to_bytes(8, "little")).digest()
    if fail_every and x % fail_every == 0:
        raise ValueError(f"item {x} is malformed")
    return digest[0]


def _score(parsed: int) -> int:
    return parsed + 1


@register("errors")
def errors(settings: Settings) -> list[Row]:
    """``on_error="continue"`` over 10,000 items of which 1% fail, against the same map with no
    failures (and the default "raise"), sequentially and on 4 threads (target 1.05x); and the
    continue loop's own cost on a map of ``x + 1`` with no failures, against the plain loop."""
    rows = []
    n = ERRORS_ITEMS // 10 if settings.quick else ERRORS_ITEMS
    xs = list(range(n))
    nodes = [node(_parse, output_name="parsed"), node(_score, output_name="score")]
    expected = [_score(_parse(x, 0)) for x in xs]
    for label, engine in [
        ("sequential", HypernodesEngine()),
        ("threads(4)", HypernodesEngine(map_executor="threaded", max_workers=4)),
    ]:
        with engine:
            pipeline = Pipeline(nodes=nodes, backend=engine)
            failing = {"x": xs, "fail_every": ERRORS_EVERY}
            kept = pipeline.map(inputs=failing, map_over="x", on_error="continue")
            good = [v for i, v in enumerate(expected) if i % ERRORS_EVERY]
            check("errors", label, (kept.failed_items, kept.good()["score"]), (xs[::ERRORS_EVERY], good))
            check("errors", label, pipeline.map(inputs={"x": xs, "fail_every": 0}, map_over="x")["score"], expected)
            best = best_of(
                {"baseline": partial(pipeline.map, inputs={"x": xs, "fail_every": 0}, map_over="x"),
                 "continue": partial(pipeline.map, inputs=failing, map_over="x", on_error="continue")},
                settings.repeat,
            )  # fmt: skip
        rows.append(Row("errors", f"{n}-items-1%-failing/{label}", "ms", best["continue"] * 1e3,
                        best["baseline"] * 1e3, "no failures, raise"))  # fmt: skip
    tiny = Pipeline(nodes=[node(_inc, output_name="y")])
    ys = list(range(settings.items))
    check("errors", "tiny", tiny.map(inputs={"x": ys}, map_over="x", on_error="continue")["y"], _plain_map(ys))
    best = best_of(
        {"baseline": partial(tiny.map, inputs={"x": ys}, map_over="x"),
         "continue": partial(tiny.map, inputs={"x": ys}, map_over="x", on_error="continue")},
        settings.repeat,
    )  # fmt: skip
    per_item = _US / settings.items
    rows.append(Row("errors", f"{settings.items}-tiny-items-no-failures/sequential", "us/item",
                    best["continue"] * per_item, best["baseline"] * per_item, "same map, raise"))  # fmt: skip
    return rows


# -- freethreading: CPU-bound Python nodes on threads without the GIL --------------------------

FREETHREADING_ITEMS = 64  # --quick: 16
FREETHREADING_WORK = 60_000  # loop steps per item: ~5-10 ms of pure Python


def _crunch(x: int) -> int:
    """Pure-Python arithmetic that holds the interpreter the whole time (no C call releases it)."""
    acc = x
    for i in range(FREETHREADING_WORK):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def gil_enabled() -> bool:
    """Whether this interpreter runs with a GIL (always, before 3.13; on a 3.13t/3.14t build,
    only if ``PYTHON_GIL=1`` or an extension module turned it back on)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


@register("freethreading")
def freethreading(settings: Settings) -> list[Row]:
    """A CPU-bound map (64 items of ~5-10 ms of pure Python) on ``"threaded"`` against a raw
    ``ThreadPoolExecutor`` of as many threads running the same slices (the target: threaded at
    least 0.95x its speed, i.e. a ratio of at most 1.05), and ``"sequential"``, ``"threaded"``,
    the raw pool and ``"parallel"`` (loky processes) against the sequential map. Needs a
    free-threaded interpreter with the GIL off; elsewhere it says so and measures nothing."""
    if gil_enabled():
        print(
            f"bench: freethreading needs a free-threaded interpreter with the GIL off (python3.14t); Python "
            f"{platform.python_version()} here runs with the GIL, so nothing was measured.",
            file=sys.stderr,
        )
        return []
    cpus = os.cpu_count() or 1
    xs = list(range(FREETHREADING_ITEMS // 4 if settings.quick else FREETHREADING_ITEMS))
    expected = {"y": [_crunch(x) for x in xs]}
    slices = plan_batches(len(xs), cpus, THREAD_TASKS_PER_WORKER)  # what "threaded" cuts the map into

    def chunk(lo: int, hi: int) -> list[int]:
        return [_crunch(x) for x in xs[lo:hi]]

    crunch = node(_crunch, output_name="y")
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(cpus))

        def raw_threads() -> dict[str, list[int]]:
            futures = [pool.submit(chunk, lo, hi) for lo, hi in slices]
            return {"y": [y for f in futures for y in f.result()]}

        def mapped(kind: str, max_workers: int | None) -> Callable[[], Any]:
            engine = stack.enter_context(HypernodesEngine(map_executor=kind, max_workers=max_workers))
            return partial(Pipeline(nodes=[crunch], backend=engine).map, inputs={"x": xs}, map_over="x")

        calls: dict[str, Callable[[], Any]] = {
            "plain": lambda: {"y": [_crunch(x) for x in xs]},
            "sequential": mapped("sequential", None),
            "raw": raw_threads,
            "threaded": mapped("threaded", cpus),
            "threaded-default": mapped("threaded", None),
            "parallel": mapped("parallel", cpus),
        }
        for variant, call in calls.items():  # also starts the pools and the worker processes
            check("freethreading", variant, call(), expected)
        best = best_of(calls, min(settings.repeat, 5))
    raw = f"ThreadPoolExecutor({cpus}), same slices"
    default = DEFAULT_WORKERS["threaded"]
    return [
        Row("freethreading", "cpu-map/sequential", "s", best["sequential"], best["plain"]),
        Row("freethreading", f"cpu-map/threaded, {cpus} workers", "s", best["threaded"], best["raw"], raw),
        Row(
            "freethreading",
            f"cpu-map/threaded, max_workers=None ({default})",
            "s",
            best["threaded-default"],
            best["raw"],
            raw,
        ),
        *(
            Row("freethreading", f"speedup/{label}", "s", best[key], best["sequential"], "sequential map")
            for key, label in (
                ("threaded", f"threaded, {cpus} workers"),
                ("raw", f"raw ThreadPoolExecutor({cpus})"),
                ("parallel", f"parallel, {cpus} processes"),
            )
        ),
    ]


# -- import: what `import hypernodes` costs ------------------------------------------------------

IMPORT_BASELINE = "concurrent.futures"


def _import_us(module: str, env: Mapping[str, str]) -> float:
    """``import module`` in a fresh interpreter, in microseconds, as ``python -X importtime`` reports it."""
    command = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    for line in reversed(out.stderr.splitlines()):  # the module itself is the last line that names it
        fields = line.split("|")
        if len(fields) == 3 and fields[2].strip() == module:
            return float(fields[1])
    raise BenchError(f"import: `python -X importtime` printed no line for {module!r}:\n{out.stderr[-500:]}")


@register("import")
def import_time(settings: Settings) -> list[Row]:
    """``import hypernodes`` in a fresh interpreter (milliseconds, ``python -X importtime``'s total
    for it; the target: at most 60 ms), against ``import concurrent.futures``, the standard
    library's own executors. Bytecode is written before timing (as an installed package has it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import hypernodes"], env=env, check=True)  # writes the .pyc files
    best = dict.fromkeys(("hypernodes", IMPORT_BASELINE), float("inf"))
    for _ in range(max(settings.repeat, 10)):  # ~0.1 s a round; one fresh interpreter is noisy
        for module in best:
            best[module] = min(best[module], _import_us(module, env))
    return [Row("import", "hypernodes", "ms", best["hypernodes"] / 1e3, best[IMPORT_BASELINE] / 1e3,
                f"import {IMPORT_BASELINE}")]  # fmt: skip
