"""Load: many threads on one pipeline and engine, a million-item map, and the ready queue
hammered from many threads.

The plan and the engine hold no per-call state, so concurrent calls of every shape
(run and map, zip and product, different inputs and outputs) on one Pipeline and
one engine must each get exactly their own answer. A map's memory is bounded by
its outputs: nothing per item is kept beyond the results.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

from hypernodes import HypernodesEngine, Pipeline, node

from .figures import FIGURES
from .pipelines import DIAMOND, expected_diamond

pytestmark = pytest.mark.reliability

CALLERS = 16
CALLS = 1000


def call_and_expect(pipeline: Pipeline, i: int) -> tuple[Any, Any]:
    """Call number ``i``: one of four call shapes, with inputs unique to ``i``; (result, expected)."""
    shape = i % 4
    if shape == 0:
        return pipeline.run({"x": i}), expected_diamond(i)
    if shape == 1:
        return pipeline.run({"x": i, "offset": i % 7}, output_name="total"), {
            "total": expected_diamond(i, i % 7)["total"]
        }
    if shape == 2:
        xs = list(range(i, i + 5))
        rows = [expected_diamond(x, step=i) for x in xs]
        return pipeline.map({"x": xs, "step": i}, "x"), {k: [r[k] for r in rows] for k in rows[0]}
    got = pipeline.map(
        {"x": [i, i + 1], "offset": [0, 1]}, map_over=["x", "offset"], map_mode="product", output_name=["low", "total"]
    )
    rows = [expected_diamond(x, o) for x in (i, i + 1) for o in (0, 1)]
    return got, {"low": [r["low"] for r in rows], "total": [r["total"] for r in rows]}


ENGINES: dict[str, dict[str, Any]] = {
    "sequential": {},
    "threaded": {"map_executor": "threaded", "node_executor": "threaded"},
    "async": {"map_executor": "async", "node_executor": "async"},
    "parallel": {"map_executor": "parallel", "node_executor": "threaded"},
    "ThreadPoolExecutor+async": {"map_executor": "ThreadPoolExecutor", "node_executor": "async"},
}


@pytest.mark.parametrize("name", list(ENGINES))
def test_sixteen_threads_share_one_pipeline_and_engine(name: str) -> None:
    """16 threads make 1,000 calls of four shapes on one Pipeline and one engine at once; every
    call gets exactly its own result."""
    spec = dict(ENGINES[name])
    with ThreadPoolExecutor(4) as user_pool:
        if spec.get("map_executor") == "ThreadPoolExecutor":
            spec["map_executor"] = user_pool
        with HypernodesEngine(**spec, max_workers=4) as engine:
            pipeline = Pipeline(DIAMOND[::-1], backend=engine)  # declared out of order
            numbers = itertools.count()
            lock = threading.Lock()
            start = threading.Barrier(CALLERS)
            wrong: list[tuple[int, Any, Any]] = []
            done = [0] * CALLERS

            def caller(me: int) -> None:
                start.wait()
                while True:
                    with lock:
                        i = next(numbers)
                    if i >= CALLS:
                        return
                    got, want = call_and_expect(pipeline, i)
                    if got != want:
                        wrong.append((i, got, want))
                    done[me] += 1

            with ThreadPoolExecutor(CALLERS, thread_name_prefix="caller") as callers:
                for future in [callers.submit(caller, me) for me in range(CALLERS)]:
                    future.result(timeout=300)
    assert not wrong, wrong[:3]
    assert sum(done) == CALLS
    assert min(done) > 0, "some caller never got to run: the calls were not concurrent"
    FIGURES.count("load: concurrent calls checked", CALLS)


# -- a million items ---------------------------------------------------------------


MILLION = 1_000_000

# Run in a fresh interpreter, so that memory freed by earlier tests cannot hide growth.
# Linux keeps a process's peak resident size (VmHWM); writing 5 to clear_refs restarts it.
MEMORY_CHILD = """
import sys
from hypernodes import HypernodesEngine, Pipeline, _core, node

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

def inc(x):
    return x + 1

xs = list(range(int(sys.argv[2])))
with HypernodesEngine(map_executor=sys.argv[1], max_workers=2) as engine:
    pipeline = Pipeline([node(inc, output_name="y")], backend=engine)
    pipeline.map({"x": [0, 1]}, "x")  # executors and workers started outside the measurement
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    ys = pipeline.map({"x": xs}, "x")["y"]
    peak = status("VmHWM") - before
assert ys == [x + 1 for x in xs], "wrong result"
outputs = sys.getsizeof(ys) + sum(map(sys.getsizeof, ys))
print(_core.IMPLEMENTATION, peak, outputs)
"""


def _can_reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _can_reset_peak_rss(), reason="needs Linux's VmHWM")
@pytest.mark.parametrize("kind", ["sequential", "threaded", "async", "parallel"])
def test_a_million_item_map_needs_memory_for_its_outputs_only(kind: str, core: ModuleType) -> None:
    """1,000,000 tiny items complete in order, and the process's resident memory peaks below
    twice the outputs' own size (plus 8 MB): nothing per item (a future, a dict, a copy of the
    inputs) is held beyond its results. Measured in a fresh interpreter on the core under test."""
    env = dict(os.environ)
    if core.IMPLEMENTATION == "python":
        env["HYPERNODES_NO_EXTENSIONS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, kind, str(MILLION)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    implementation, peak, outputs = out.stdout.split()
    assert implementation == core.IMPLEMENTATION
    figure = f"peak RSS +{int(peak) / MILLION:.0f} B/item, outputs {int(outputs) / MILLION:.0f} B/item"
    assert int(peak) <= 2 * int(outputs) + 8 * 2**20, figure
    FIGURES.record(f"memory: 1M-item map, {kind}, {core.IMPLEMENTATION} core", figure)


# -- the ready queue from many threads ---------------------------------------------


def _wide_dag(n: int, seed: int) -> tuple[Pipeline, dict[int, set[int]]]:
    """``n`` nodes, each reading up to 3 earlier ones: a DAG with much fan-in and fan-out."""
    import random

    rnd = random.Random(seed)
    nodes = []
    producers: dict[int, set[int]] = {}
    for i in range(n):
        deps = sorted(set(rnd.sample(range(i), min(i, rnd.randint(0, 3)))))
        producers[i] = set(deps)
        params = ", ".join(f"v{d}" for d in deps)
        namespace: dict[str, Any] = {}
        exec(f"def n{i}({params}):\n    return 0\n", namespace)
        nodes.append(node(namespace[f"n{i}"], output_name=f"v{i}"))
    return Pipeline(nodes), producers


@pytest.mark.parametrize("seed", range(6))
def test_the_ready_queue_is_consistent_under_many_threads(core: ModuleType, seed: int) -> None:
    """16 threads drive one ReadyQueue of 600 nodes (get_ready, done, is_active) with a tiny switch
    interval: every node is issued exactly once, never before its producers are done, and the queue
    ends inactive with every node done."""
    pipeline, producers = _wide_dag(600, seed)
    plan = pipeline.plans.get(None, frozenset(), "run()")
    index = {name: k for k, name in enumerate(plan.node_names)}
    deps = {index[f"n{i}"]: {index[f"n{d}"] for d in ds} for i, ds in producers.items()}
    queue = core.ReadyQueue(plan)
    finished = [False] * plan.n_nodes  # set before done(k): a successor must see it set
    issued: list[list[int]] = [[] for _ in range(CALLERS)]
    early: list[int] = []
    pending: list[int] = []
    pending_lock = threading.Lock()
    start = threading.Barrier(CALLERS)

    def worker(me: int) -> None:
        start.wait()
        deadline = time.monotonic() + 60  # a lost node would keep the queue active forever
        while queue.is_active() and time.monotonic() < deadline:
            ready = queue.get_ready()
            issued[me].extend(ready)
            early.extend(k for k in ready if not all(finished[d] for d in deps[k]))
            with pending_lock:
                pending.extend(ready)
                take = [pending.pop() for _ in range(min(len(pending), 2))]
            for k in take:
                finished[k] = True
            if take:
                queue.done(*take)
            time.sleep(0)  # let the other threads in: each must get a share of the work

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(CALLERS, thread_name_prefix="queue") as pool:
            for future in [pool.submit(worker, me) for me in range(CALLERS)]:
                future.result(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    every = sorted(k for mine in issued for k in mine)
    assert every == list(range(plan.n_nodes)), "a node was issued twice or never"
    assert not early, f"nodes issued before their producers were done: {early[:5]}"
    assert not queue.is_active()
    assert queue.n_done == plan.n_nodes
    assert sum(1 for mine in issued if mine) > 1, "only one thread ever got work"
    FIGURES.count("ready queue: nodes driven from 16 threads", plan.n_nodes)


def test_racing_done_calls_for_one_node_succeed_exactly_once(core: ModuleType) -> None:
    """16 threads call done(k) for the same issued node at once: one succeeds, the others get the
    'already marked done' ValueError, and the successor is released exactly once."""
    first = node(lambda: 1, output_name="a", name="first")
    second = node(lambda a: a, output_name="b", name="second")
    plan = Pipeline([first, second]).plans.get(None, frozenset(), "run()")
    for _ in range(200):
        queue = core.ReadyQueue(plan)
        (k,) = queue.get_ready()
        outcomes: list[str] = []
        start = threading.Barrier(CALLERS)

        def mark(k: int = k, queue: Any = queue, outcomes: list[str] = outcomes, start: Any = start) -> None:
            start.wait()
            try:
                queue.done(k)
                outcomes.append("ok")
            except ValueError as exc:
                outcomes.append("refused" if "already marked done" in str(exc) else str(exc))

        threads = [threading.Thread(target=mark) for _ in range(CALLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == ["ok"] + ["refused"] * (CALLERS - 1)
        assert len(queue.get_ready()) == 1
        assert queue.get_ready() == ()
