"""Executors at node and map level: same answers as sequential, real concurrency, lifetime.

Every executor is tried as a name and as an instance (``tests/kinds.py``).
Concurrency is measured with counters (the most tasks in flight at once); time
bounds are only a safety net against hangs. Failures are in ``test_faults.py``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import loky
import psutil
import pytest

from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes._run import maps, payload, spill
from hypernodes.errors import ExecutorSpecError
from hypernodes.executors import AsyncExecutor
from hypernodes.executors.backends import PROCESS_TASKS_PER_WORKER

from .kinds import EXECUTOR_KINDS, NODE_EXECUTOR_KINDS, PicklingExecutor
from .pipelines import DIAMOND, double, expected_diamond

# -- same answers ---------------------------------------------------------------


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_map_executor_gives_the_sequential_result(kind: str, make_executor: Callable[[str], Any]) -> None:
    """Zip, product, broadcast, restricted outputs and empty maps match the sequential engine."""
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=3) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine)
        xs = list(range(23))
        got = pipeline.map({"x": xs, "offset": 3}, map_over="x")
        rows = [expected_diamond(x, offset=3) for x in xs]
        assert got == {name: [r[name] for r in rows] for name in rows[0]}

        product = pipeline.map({"x": [1, 2, 3], "step": [0, 100]}, map_over=["x", "step"], map_mode="product")
        assert product["total"] == [expected_diamond(x, step=s)["total"] for x in (1, 2, 3) for s in (0, 100)]

        assert pipeline.map({"x": xs}, map_over="x", output_name="high") == {"high": [2 * x + 1 for x in xs]}
        assert pipeline.map({"x": []}, map_over="x", output_name="total") == {"total": []}
        assert pipeline.run({"x": 4}) == expected_diamond(4)


@pytest.mark.parametrize("kind", NODE_EXECUTOR_KINDS)
def test_node_executor_gives_the_sequential_result(kind: str, make_executor: Callable[[str], Any]) -> None:
    """run() and map() with nodes on an executor match the sequential engine."""
    with HypernodesEngine(node_executor=make_executor(kind)) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine)
        assert pipeline.run({"x": 5, "offset": 2}) == expected_diamond(5, offset=2)
        assert pipeline.run({"x": 5}, output_name="shifted") == {"shifted": 15}
        assert pipeline.map({"x": [1, 2, 3]}, map_over="x", output_name="total") == {
            "total": [expected_diamond(x)["total"] for x in (1, 2, 3)]
        }


@pytest.mark.parametrize(
    ("map_kind", "node_kind"),
    [
        ("ThreadPoolExecutor", "async"),  # the notebook's cell 16, test 4
        ("threaded", "threaded"),
        ("AsyncExecutor", "threaded"),
        ("async", "async"),
        ("parallel", "threaded"),
        ("PicklingExecutor", "async"),
        ("threaded", "parallel"),
        ("sequential", "PicklingExecutor"),
    ],
)
def test_map_and_node_executors_compose(map_kind: str, node_kind: str, make_executor: Callable[[str], Any]) -> None:
    """Both levels at once give the sequential result."""
    with HypernodesEngine(map_executor=make_executor(map_kind), node_executor=make_executor(node_kind)) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine)
        xs = list(range(9))
        assert pipeline.map({"x": xs}, map_over="x")["total"] == [expected_diamond(x)["total"] for x in xs]


def test_results_keep_input_order_when_items_finish_out_of_order() -> None:
    """Items that finish in reverse order still come back in input order."""

    @node(output_name="y")
    def slow_first(x: int) -> int:
        time.sleep(0.002 * (20 - x))
        return x

    with HypernodesEngine(map_executor="threaded", max_workers=20) as engine:
        assert Pipeline([slow_first], backend=engine).map({"x": list(range(20))}, "x") == {"y": list(range(20))}


# -- concurrency, counted -------------------------------------------------------


class InFlight:
    """Counts calls running at once; ``peak`` is the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.calls = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("kind", ["threaded", "async", "ThreadPoolExecutor", "AsyncExecutor"])
def test_independent_nodes_run_at_once(kind: str, make_executor: Callable[[str], Any]) -> None:
    """The notebook's node-level case: three independent sleeping nodes are in flight together."""
    flight = InFlight()

    def io_task(factor: int) -> Callable[[int], int]:
        def task(x: int) -> int:
            with flight:
                time.sleep(0.1)
            return x * factor

        return task

    nodes = [node(io_task(k), output_name=f"task{k}") for k in (2, 3, 4)]
    nodes.append(node(lambda task2, task3, task4: task2 + task3 + task4, output_name="final"))
    with HypernodesEngine(node_executor=make_executor(kind)) as engine:
        assert Pipeline(nodes, backend=engine).run({"x": 10})["final"] == 90
    assert flight.peak == 3


def test_a_slow_node_does_not_hold_back_nodes_that_do_not_need_it() -> None:
    """A chain finishes while an unrelated slow node is still running (no level-by-level barrier)."""
    chain_done = threading.Event()

    @node(output_name="slow")
    def slow(x: int) -> bool:
        return chain_done.wait(timeout=30)  # True only if the chain finished meanwhile

    @node(output_name="a")
    def first(x: int) -> int:
        time.sleep(0.01)
        return x + 1

    @node(output_name="b")
    def second(a: int) -> int:
        time.sleep(0.01)
        return a + 1

    @node(output_name="c")
    def third(b: int) -> int:
        chain_done.set()
        return b + 1

    with HypernodesEngine(node_executor="threaded", max_workers=4) as engine:
        result = Pipeline([slow, first, second, third], backend=engine).run({"x": 0})
    assert result == {"slow": True, "a": 1, "b": 2, "c": 3}


@pytest.mark.parametrize("kind", ["threaded", "ThreadPoolExecutor-100", "AsyncExecutor-100", "async"])
def test_forty_blocking_items_run_concurrently(kind: str) -> None:
    """40 sleeping items on a wide pool: at least 20 in flight at once (the notebook's cell 16)."""
    flight = InFlight()

    @node(output_name="y")
    def sleepy(x: int) -> int:
        with flight:
            time.sleep(0.05)
        return x * x

    executor: Any = kind
    if kind.startswith("ThreadPoolExecutor"):
        executor = ThreadPoolExecutor(100)
    elif kind.startswith("AsyncExecutor"):
        executor = AsyncExecutor(100)
    try:
        with HypernodesEngine(map_executor=executor, max_workers=40) as engine:
            assert Pipeline([sleepy], backend=engine).map({"x": list(range(40))}, "x") == {
                "y": [x * x for x in range(40)]
            }
    finally:
        if not isinstance(executor, str):
            executor.shutdown()
    assert flight.peak >= 20
    assert flight.calls == 40


@pytest.mark.parametrize("kind", ["threaded", "async", "ThreadPoolExecutor", "AsyncExecutor"])
def test_never_more_items_in_flight_than_max_workers(kind: str) -> None:
    """A pool of 5 runs at most 5 items at once, sync or async."""
    flight = InFlight()

    @node(output_name="y")
    def sync_item(x: int) -> int:
        with flight:
            time.sleep(0.01)
        return x

    @node(output_name="y")
    async def async_item(x: int) -> int:
        with flight:
            await asyncio.sleep(0.01)
        return x

    executor: Any = {"ThreadPoolExecutor": ThreadPoolExecutor(5), "AsyncExecutor": AsyncExecutor(5)}.get(kind, kind)
    try:
        with HypernodesEngine(map_executor=executor, max_workers=5) as engine:
            for fn in (sync_item, async_item):
                assert Pipeline([fn], backend=engine).map({"x": list(range(60))}, "x") == {"y": list(range(60))}
    finally:
        if not isinstance(executor, str):
            executor.shutdown()
    assert flight.calls == 120
    assert 1 < flight.peak <= 5


def test_async_executor_awaits_native_async_items_on_its_loop_without_a_thread_each() -> None:
    """50 awaiting items run concurrently as coroutines on the executor's loop."""
    flight = InFlight()
    loops: set[int] = set()
    threads: set[str] = set()

    @node(output_name="y")
    async def fetch(x: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        threads.add(threading.current_thread().name)
        with flight:
            await asyncio.sleep(0.05)
        return x

    executor = AsyncExecutor(max_workers=100)
    try:
        with HypernodesEngine(map_executor=executor) as engine:
            assert Pipeline([fetch], backend=engine).map({"x": list(range(50))}, "x") == {"y": list(range(50))}
    finally:
        executor.shutdown()
    assert flight.peak == 50
    assert len(loops) == 1
    assert threads == {"hypernodes-async-loop"}


def test_async_executor_offloads_sync_nodes_of_an_async_pipeline() -> None:
    """A blocking sync node after an async one does not stall the loop: items still overlap."""
    flight = InFlight()

    @node(output_name="fetched")
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    @node(output_name="parsed")
    def parse(fetched: int) -> int:
        with flight:
            time.sleep(0.05)
        return fetched + 1

    executor = AsyncExecutor(max_workers=20)
    try:
        with HypernodesEngine(map_executor=executor) as engine:
            got = Pipeline([fetch, parse], backend=engine).map({"x": list(range(20))}, "x", output_name="parsed")
    finally:
        executor.shutdown()
    assert got == {"parsed": [x + 1 for x in range(20)]}
    assert flight.peak >= 10


def test_parallel_map_spreads_items_over_worker_processes() -> None:
    """Items of a "parallel" map run in more than one process, none of them this one."""
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pids = Pipeline([node(_sleepy_pid, output_name="pid")], backend=engine).map({"x": list(range(8))}, "x")
    assert len(set(pids["pid"])) == 2
    assert os.getpid() not in pids["pid"]


def _sleepy_pid(x: int) -> int:
    time.sleep(0.05)
    return os.getpid()


# -- pre-batched work -----------------------------------------------------------


def test_a_process_map_sends_the_plan_once_and_few_slices() -> None:
    """1,000 items on 2 processes: the plan is pickled once, and there are 8 tasks (4 per worker), not 1,000."""
    executor = PicklingExecutor(max_workers=2)
    dumps_calls: list[int] = []
    real_dumps = payload.dumps

    def counting_dumps(obj: Any) -> tuple[str, bytes]:
        dumps_calls.append(1)
        return real_dumps(obj)

    try:
        with pytest.MonkeyPatch.context() as patch, HypernodesEngine(map_executor=executor) as engine:
            patch.setattr(spill, "dumps", counting_dumps)  # the payload is pickled there
            got = Pipeline([double], backend=engine).map({"x": list(range(1000))}, "x")
    finally:
        executor.shutdown()
    assert got == {"doubled": [2 * x for x in range(1000)]}
    assert len(dumps_calls) == 1
    assert executor.submitted == 2 * PROCESS_TASKS_PER_WORKER


def test_blocking_items_get_one_item_per_task_when_they_fit() -> None:
    """Items <= workers: one task per item, so no item waits behind another."""
    seen: list[tuple[int, int]] = []
    real = maps.run_items

    def spy(runtime: Any, runner: Any, call: Any, *rest: Any) -> Any:
        seen.append((call.items.lo, call.items.hi))
        return real(runtime, runner, call, *rest)

    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(100) as pool:
        patch.setattr(maps, "run_items", spy)
        with HypernodesEngine(map_executor=pool) as engine:
            Pipeline([double], backend=engine).map({"x": list(range(80))}, "x")
    assert sorted(seen) == [(i, i + 1) for i in range(80)]


# -- functions that only cloudpickle can ship -----------------------------------


def test_closures_and_main_module_functions_run_in_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closure, and a notebook-style function decorated in __main__, run under "parallel"."""
    offset = 100

    @node(output_name="y")
    def add_offset(x: int) -> int:
        return x + offset

    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def cube(y):\n    return y ** 3\n", namespace)
    cube = node(namespace["cube"], output_name="z")
    monkeypatch.setattr(sys.modules["__main__"], "cube", cube, raising=False)  # `@node` rebinds the name
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        got = Pipeline([add_offset, cube], backend=engine).map({"x": [1, 2]}, "x")
    assert got == {"y": [101, 102], "z": [101**3, 102**3]}


def test_unpicklable_broadcast_input_to_a_process_map_fails_before_anything_runs() -> None:
    """A lock can't go to a worker process: the pickling error says so and no item ran."""

    @node(output_name="y")
    def uses_lock(x: int, lock: Any) -> int:
        return x

    with (
        HypernodesEngine(map_executor="parallel", max_workers=2) as engine,
        pytest.raises(TypeError, match="lock") as info,
    ):
        Pipeline([uses_lock], backend=engine).map({"x": [1, 2], "lock": threading.Lock()}, "x")
    assert any("must be picklable" in n for n in getattr(info.value, "__notes__", []))


# -- lifetime -------------------------------------------------------------------


def test_engine_shared_by_pipelines_survives_one_being_collected() -> None:
    """Dropping one pipeline leaves the shared engine and the other pipeline working."""
    with HypernodesEngine(map_executor="threaded", node_executor="async") as engine:
        first = Pipeline(DIAMOND, backend=engine)
        second = Pipeline([double], backend=engine)
        assert first.map({"x": [1]}, "x", output_name="total") == {"total": [expected_diamond(1)["total"]]}
        del first
        gc.collect()
        assert second.map({"x": [1, 2]}, "x") == {"doubled": [2, 4]}
        assert second.run({"x": 3}) == {"doubled": 6}


def test_shutdown_stops_what_the_engine_made_and_leaves_user_executors_alone() -> None:
    """After shutdown no engine thread runs; a user's pool still accepts work; the engine restarts."""
    pool = ThreadPoolExecutor(2)
    engine = HypernodesEngine(map_executor=pool, node_executor="threaded")
    pipeline = Pipeline(DIAMOND, backend=engine)
    assert pipeline.map({"x": [1, 2]}, "x", output_name="total")["total"] == [
        expected_diamond(x)["total"] for x in (1, 2)
    ]
    started = list(engine._runtime.nodes.executor()._threads)  # type: ignore[attr-defined]
    assert started
    engine.shutdown()
    assert not [t for t in started if t.is_alive()]
    assert pool.submit(lambda: 7).result(timeout=10) == 7
    assert pipeline.run({"x": 2}, output_name="doubled") == {"doubled": 4}  # usable again
    engine.shutdown()
    pool.shutdown()


def test_an_engine_dropped_without_shutdown_releases_its_threads() -> None:
    """Garbage collection of an engine shuts down the executors it made."""
    engine = HypernodesEngine(map_executor="threaded", node_executor="async")
    Pipeline(DIAMOND, backend=engine).map({"x": [1, 2, 3]}, "x")
    assert [t for t in threading.enumerate() if t.name.startswith("hypernodes-")]
    del engine
    gc.collect()  # the conftest fixture then checks that no thread is left


def test_parallel_workers_are_shared_by_engines_and_stop_with_the_last() -> None:
    """Two "parallel" engines use one warm pool; it stops when the last engine shuts down."""
    first = HypernodesEngine(map_executor="parallel", max_workers=2)
    second = HypernodesEngine(map_executor="parallel", max_workers=2)
    pid_pipeline = [node(_sleepy_pid, output_name="pid")]
    pids_first = set(Pipeline(pid_pipeline, backend=first).map({"x": list(range(6))}, "x")["pid"])
    pids_second = set(Pipeline(pid_pipeline, backend=second).map({"x": list(range(6))}, "x")["pid"])
    assert pids_first == pids_second
    first.shutdown()
    assert all(psutil.pid_exists(pid) for pid in pids_first)
    second.shutdown()
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) for pid in pids_first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(psutil.pid_exists(pid) for pid in pids_first)


# -- nesting and event loops ----------------------------------------------------


def test_nested_pipeline_sharing_the_outer_pool_does_not_deadlock() -> None:
    """An inner pipeline mapped on the very pool running the outer items runs inline instead of waiting."""
    with ThreadPoolExecutor(2) as pool:
        inner = Pipeline([double], backend=HypernodesEngine(map_executor=pool), name="inner")
        per_item = inner.as_node(input_mapping={"xs": "x"}, map_over="xs", name="per_item")
        outer = Pipeline([per_item], backend=HypernodesEngine(map_executor=pool))
        got = outer.map({"xs": [[1, 2], [3], [4, 5, 6], [7]]}, map_over="xs")
    assert got == {"doubled": [[2, 4], [6], [8, 10, 12], [14]]}


def test_nested_pipeline_on_the_async_executor_running_the_outer_coroutines() -> None:
    """Outer async items hold every slot of a 2-wide AsyncExecutor; the inner map on it runs inline."""

    @node(output_name="y")
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.001)
        return x + 1

    @node(output_name="xs")
    async def expand(item: int) -> list[int]:
        return [item, item * 10]

    with HypernodesEngine(map_executor="async", max_workers=2) as engine:
        inner = Pipeline([fetch], backend=engine, name="inner")
        per_item = inner.as_node(input_mapping={"xs": "x"}, output_mapping={"y": "ys"}, map_over="xs")
        outer = Pipeline([expand, per_item], backend=engine)
        got = outer.map({"item": [1, 2, 3, 4, 5]}, map_over="item")
    assert got["ys"] == [[i + 1, i * 10 + 1] for i in (1, 2, 3, 4, 5)]


def test_engine_shut_down_from_one_of_its_own_threads() -> None:
    """shutdown() inside a node running on the engine's own pool neither raises nor hangs."""
    holder: list[HypernodesEngine] = []

    @node(output_name="y")
    def stop_engine(x: int) -> int:
        holder[0].shutdown()
        return x

    engine = HypernodesEngine(map_executor="threaded", max_workers=2)
    holder.append(engine)
    pipeline = Pipeline([stop_engine], backend=engine)
    assert pipeline.map({"x": [1]}, "x") == {"y": [1]}  # one slice: nothing else was queued
    assert pipeline.map({"x": [2]}, "x") == {"y": [2]}  # a fresh pool
    engine.shutdown()


def test_process_node_tasks_see_the_current_closure_values() -> None:
    """Functions are pickled per call: a value changed between calls (a notebook re-run) is seen."""
    factor = 2

    @node(output_name="a")
    def scaled(x: int) -> int:
        return x * factor

    @node(output_name="b")
    def plus(x: int) -> int:
        return x + factor

    with HypernodesEngine(node_executor="parallel", max_workers=2) as engine:
        pipeline = Pipeline([scaled, plus], backend=engine)
        assert pipeline.run({"x": 10}) == {"a": 20, "b": 12}
        factor = 3
        assert pipeline.run({"x": 10}) == {"a": 30, "b": 13}
        assert pipeline.map({"x": [1]}, "x") == {"a": [3], "b": [4]}


def test_parallel_engines_leave_the_users_own_loky_executor_alone() -> None:
    """A loky reusable executor passed in by the user survives "parallel" engines coming and going."""
    users_executor = loky.get_reusable_executor(max_workers=2)
    try:
        with HypernodesEngine(map_executor=users_executor) as theirs:
            for workers in (1, 2):
                with HypernodesEngine(map_executor="parallel", max_workers=workers) as ours:
                    assert Pipeline([double], backend=ours).map({"x": [1, 2]}, "x") == {"doubled": [2, 4]}
                assert Pipeline([double], backend=theirs).map({"x": [3]}, "x") == {"doubled": [6]}
        assert users_executor.submit(abs, -5).result(timeout=60) == 5
    finally:
        users_executor.shutdown(wait=True)


def test_async_executor_map_from_inside_a_running_event_loop() -> None:
    """A notebook cell runs inside an event loop: the map still works and does not block forever."""

    @node(output_name="y")
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    executor = AsyncExecutor(max_workers=10)

    async def cell() -> dict[str, list[int]]:
        with HypernodesEngine(map_executor=executor, node_executor="async") as engine:
            return Pipeline([fetch, double], backend=engine).map({"x": [1, 2, 3]}, "x")

    try:
        assert asyncio.run(cell()) == {"y": [2, 3, 4], "doubled": [2, 4, 6]}
    finally:
        executor.shutdown()


# -- bad combinations -----------------------------------------------------------


def test_one_executor_object_for_both_levels_is_refused() -> None:
    """The same pool for items and nodes would deadlock: refused at construction."""
    with ThreadPoolExecutor(2) as pool, pytest.raises(ExecutorSpecError, match="same executor object"):
        HypernodesEngine(map_executor=pool, node_executor=pool)


@pytest.mark.parametrize("node_kind", ["parallel", "ThreadPoolExecutor"])
def test_node_executors_that_cannot_run_in_worker_processes_are_refused(
    node_kind: str, make_executor: Callable[[str], Any]
) -> None:
    """A process map cannot carry an executor object or start processes of its own."""
    with pytest.raises(ExecutorSpecError, match="cannot run inside the worker processes"):
        HypernodesEngine(map_executor="parallel", node_executor=make_executor(node_kind))


def _fails_on_one(x: int) -> int:
    if x == 1:
        raise ValueError("item 1")
    return x


@pytest.mark.parametrize("node_kind", ["sequential", "threaded"])
def test_worker_processes_run_items_on_the_callers_core(node_kind: str, core: Any) -> None:
    """A "parallel" map's workers use the core the caller uses (both cores are tested through
    process maps too): the worker's traceback passes through that core's batch loop."""
    with HypernodesEngine(map_executor="parallel", node_executor=node_kind, max_workers=2) as engine:
        pipeline = Pipeline([node(_fails_on_one, output_name="y")], backend=engine)
        with pytest.raises(ValueError, match="item 1") as info:
            pipeline.map({"x": [0, 1, 2]}, "x")
    remote = str(info.value.__cause__)  # loky attaches the worker's formatted traceback
    files = {"python": "_sched_py.py", "cython": "_sched.pyx"}
    assert files[core.IMPLEMENTATION] in remote
    assert all(f not in remote for name, f in files.items() if name != core.IMPLEMENTATION)
