"""The seed notebook's usage, as written there (sleeps shortened), on every engine it uses.

Every pipeline of the notebook must construct and give the notebook's results,
on each executor the notebook tries. How fast is ``python -m bench seed``'s job.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes.executors import AsyncExecutor

SLEEP = 0.001
RAN: list[str] = []


@node(output_name="task1")
def io_task1(x: int) -> int:
    RAN.append("io_task1")
    time.sleep(SLEEP)
    return x * 2


@node(output_name="task2")
def io_task2(x: int) -> int:
    time.sleep(SLEEP)
    return x * 3


@node(output_name="task3")
def io_task3(x: int) -> int:
    time.sleep(SLEEP)
    return x * 4


@node(output_name="final")
def combine_tasks(task1: int, task2: int, task3: int) -> dict[str, int]:
    return {"task1": task1, "task2": task2, "task3": task3}


@node(output_name="processed")
def process_item(x: int) -> int:
    RAN.append("process_item")
    time.sleep(SLEEP)
    return x**2


@node(output_name="async_result")
async def native_async_fn(x: int) -> int:
    await asyncio.sleep(SLEEP)
    return x**2


@node(output_name="hash_result")
def compute_heavy_hash(text: str) -> str:
    """CPU-intensive hashing operation (100 rounds here, 100,000 in the notebook)."""
    result = text
    for _ in range(100):
        result = hashlib.sha256(result.encode()).hexdigest()
    return result[:16]


@node(output_name="async_fetch")
async def async_io_operation(delay: float) -> dict[str, Any]:
    start = time.time()
    await asyncio.sleep(delay)
    return {"delay": delay, "duration": time.time() - start}


def test_node_level_sequential() -> None:
    """Cell 2: three independent tasks and a combine, run once."""
    pipeline_seq = Pipeline(
        nodes=[io_task1, io_task2, io_task3, combine_tasks],
        backend=HypernodesEngine(node_executor="sequential"),
    )
    result_seq = pipeline_seq.run(inputs={"x": 10})
    assert result_seq["final"] == {"task1": 20, "task2": 30, "task3": 40}
    assert set(result_seq) == {"task1", "task2", "task3", "final"}


def test_map_level_sequential() -> None:
    """Cell 8: 80 items through one node, dict of lists in item order."""
    items_list = list(range(80))
    pipeline_seq_map = Pipeline(nodes=[process_item], backend=HypernodesEngine(map_executor="sequential"))
    results = pipeline_seq_map.map(inputs={"x": items_list}, map_over="x")
    assert results == {"processed": [x**2 for x in items_list]}


def test_cpu_bound_and_async_sequential() -> None:
    """Cells 17 and 20: the CPU-bound map and a native async node under the sequential engine."""
    cpu_items = [f"item_{i}" for i in range(20)]
    pipeline_cpu_seq = Pipeline(nodes=[compute_heavy_hash], backend=HypernodesEngine(map_executor="sequential"))
    results = pipeline_cpu_seq.map(inputs={"text": cpu_items}, map_over="text")
    assert results["hash_result"] == [compute_heavy_hash.func(t) for t in cpu_items]
    with HypernodesEngine(map_executor="sequential") as engine:
        pipeline = Pipeline(nodes=[async_io_operation], backend=engine)
        fetched = pipeline.map(inputs={"delay": [SLEEP] * 5}, map_over="delay")
    assert [r["delay"] for r in fetched["async_fetch"]] == [SLEEP] * 5


@pytest.mark.parametrize("node_executor", ["sequential", "async", "threaded"])
def test_node_level_on_every_engine(node_executor: str) -> None:
    """Cells 2, 4 and 6: the node-level pipeline on the notebook's three node executors."""
    with HypernodesEngine(node_executor=node_executor) as engine:
        pipeline_seq = Pipeline(nodes=[io_task1, io_task2, io_task3, combine_tasks], backend=engine)
        result_seq = pipeline_seq.run(inputs={"x": 10})
    assert result_seq == {"task1": 20, "task2": 30, "task3": 40, "final": {"task1": 20, "task2": 30, "task3": 40}}


@pytest.mark.parametrize("map_executor", ["sequential", "AsyncExecutor", "ThreadPoolExecutor", "parallel"])
def test_map_level_on_every_engine(map_executor: str) -> None:
    """Cells 8, 10, 12 and 14: 80 items on the notebook's four map executors."""
    items_list = list(range(80))
    executor: Any = map_executor
    if map_executor == "AsyncExecutor":
        executor = AsyncExecutor(max_workers=100)
    elif map_executor == "ThreadPoolExecutor":
        executor = ThreadPoolExecutor(max_workers=100)
    max_workers = os.cpu_count() if map_executor == "parallel" else None
    try:
        with HypernodesEngine(map_executor=executor, max_workers=max_workers) as engine:
            pipeline = Pipeline(nodes=[process_item], backend=engine)
            results = pipeline.map(inputs={"x": items_list}, map_over="x")
    finally:
        if not isinstance(executor, str):
            executor.shutdown()
    assert results == {"processed": [x**2 for x in items_list]}


def test_native_async_versus_sync_wrapped() -> None:
    """Cell 16: the four async/threaded combinations give the same squares."""
    items = list(range(40))
    expected = [x**2 for x in items]

    @node(output_name="sync_result")
    def sync_fn(x: int) -> int:
        time.sleep(SLEEP)
        return x**2

    async_executor = AsyncExecutor(max_workers=100)
    other_async_executor = AsyncExecutor(max_workers=100)
    pool = ThreadPoolExecutor(max_workers=100)
    other_pool = ThreadPoolExecutor(max_workers=100)
    engines = [
        HypernodesEngine(map_executor=async_executor),
        HypernodesEngine(map_executor=other_async_executor),
        HypernodesEngine(map_executor=pool),
        HypernodesEngine(map_executor=other_pool, node_executor="async"),
    ]
    try:
        native = Pipeline(nodes=[native_async_fn], backend=engines[0]).map(inputs={"x": items}, map_over="x")
        wrapped = Pipeline(nodes=[sync_fn], backend=engines[1]).map(inputs={"x": items}, map_over="x")
        thread = Pipeline(nodes=[sync_fn], backend=engines[2]).map(inputs={"x": items}, map_over="x")
        thread_async = Pipeline(nodes=[sync_fn], backend=engines[3]).map(inputs={"x": items}, map_over="x")
    finally:
        for engine in engines:
            engine.shutdown()
        for executor in (async_executor, other_async_executor, pool, other_pool):
            executor.shutdown()
    assert native == {"async_result": expected}
    assert wrapped == thread == thread_async == {"sync_result": expected}


def test_cpu_bound_on_threads_and_processes() -> None:
    """The CPU-bound cells: threaded and parallel maps give the sequential hashes."""
    cpu_items = [f"item_{i}" for i in range(20)]
    expected = [compute_heavy_hash.func(t) for t in cpu_items]
    for spec in ("threaded", "parallel"):
        with HypernodesEngine(map_executor=spec, max_workers=os.cpu_count()) as engine:
            results = Pipeline(nodes=[compute_heavy_hash], backend=engine).map(
                inputs={"text": cpu_items}, map_over="text"
            )
        assert results == {"hash_result": expected}


def test_async_executor_runs_sync_and_async_functions() -> None:
    """AsyncExecutor.submit returns concurrent futures for plain and async def functions alike."""
    executor = AsyncExecutor(max_workers=8)
    try:
        sync_futures = [executor.submit(process_item.func, i) for i in range(8)]
        async_futures = [executor.submit(native_async_fn.func, i) for i in range(8)]
        assert [f.result(timeout=30) for f in sync_futures] == [i**2 for i in range(8)]
        assert [f.result(timeout=30) for f in async_futures] == [i**2 for i in range(8)]
    finally:
        executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(process_item.func, 1)


def test_async_executor_awaits_async_nodes_and_cleans_up_when_dropped() -> None:
    """submit() of an async Node awaits it; an executor dropped without shutdown() stops its loop thread."""
    import gc

    executor = AsyncExecutor(max_workers=4)
    assert executor.submit(native_async_fn, 3).result(timeout=30) == 9
    thread = executor._loop_thread._thread
    assert thread is not None
    del executor
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()
