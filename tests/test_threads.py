"""Threads: concurrent calls on one pipeline, the ready queue from 16 threads, and the
free-threaded interpreter.

These run in every suite, on every interpreter. With the GIL, a 1 µs switch interval
makes the threads interleave between bytecodes; on a free-threaded build (python3.14t)
they run truly at once, and a data race in the library (a lazily made global, a cache,
the ready queue's counters) shows up as a wrong result or a node issued twice. The
long versions (1,000 calls per engine kind, 600-node queues) are in ``test_load.py``
(``reliability``), built from the same helpers.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest

from hypernodes import HypernodesEngine, Pipeline, engine, node

from .figures import FIGURES
from .pipelines import DIAMOND, expected_diamond

CALLERS = 16
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@contextmanager
def tiny_switch_interval() -> Iterator[None]:
    """With the GIL, hand it over every microsecond (no effect without a GIL)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def on_threads(fn: Any, n: int = CALLERS, prefix: str = "caller") -> list[Any]:
    """``fn(me)`` on ``n`` threads released together by a barrier; their results, in order."""
    start = threading.Barrier(n)

    def released(me: int) -> Any:
        start.wait(timeout=60)
        return fn(me)

    with tiny_switch_interval(), ThreadPoolExecutor(n, thread_name_prefix=prefix) as pool:
        futures = [pool.submit(released, me) for me in range(n)]
        return [f.result(timeout=300) for f in futures]


# -- concurrent calls on one pipeline ----------------------------------------------


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


def hammer_pipeline(pipeline: Pipeline, calls: int) -> None:
    """16 threads make ``calls`` calls of four shapes (run and map, zip and product, different
    inputs and outputs) on ``pipeline`` at once; each must get exactly its own result.

    The pipeline should be fresh: its plans are then compiled by racing first calls.
    """
    numbers = itertools.count()
    lock = threading.Lock()
    wrong: list[tuple[int, Any, Any]] = []

    def caller(me: int) -> int:
        done = 0
        while True:
            with lock:
                i = next(numbers)
            if i >= calls:
                return done
            got, want = call_and_expect(pipeline, i)
            if got != want:
                wrong.append((i, got, want))
            done += 1

    done = on_threads(caller)
    assert not wrong, wrong[:3]
    assert sum(done) == calls
    assert sum(1 for n in done if n) > 1, "only one caller ever got to run: the calls were not concurrent"
    FIGURES.count("threads: concurrent calls checked", calls)


@pytest.mark.parametrize("kind", ["sequential", "threaded", "async"])
def test_sixteen_threads_run_and_map_one_pipeline(kind: str, core: ModuleType) -> None:
    """16 threads make 320 run() and map() calls of four shapes on one fresh Pipeline and engine at
    once; every call gets exactly its own result."""
    with HypernodesEngine(map_executor=kind, node_executor=kind, max_workers=4) as eng:
        hammer_pipeline(Pipeline(DIAMOND[::-1], backend=eng), calls=320)


def test_sixteen_threads_share_one_default_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipelines without an engine, first called from 16 threads at once, all get the one default
    engine (a second one would be dropped with its threads running), and their calls are right."""
    monkeypatch.setattr(engine, "_default", None)
    try:
        engines = on_threads(lambda me: engine.default_engine())
        assert all(e is engines[0] for e in engines), f"{len({id(e) for e in engines})} default engines made"
        hammer_pipeline(Pipeline(DIAMOND), calls=160)  # async nodes: the default engine's loop thread
    finally:
        if engine._default is not None:
            engine._default.shutdown()


# -- the ready queue from many threads ---------------------------------------------


def wide_dag(n: int, seed: int) -> tuple[Pipeline, dict[int, set[int]]]:
    """``n`` nodes, each reading up to 3 earlier ones: a DAG with much fan-in and fan-out."""
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


def hammer_ready_queue(core: ModuleType, n_nodes: int, seed: int) -> None:
    """16 threads drive one ReadyQueue of ``n_nodes`` nodes (get_ready, done, is_active): every
    node is issued exactly once, never before its producers are done, and the queue ends
    inactive with every node done."""
    pipeline, producers = wide_dag(n_nodes, seed)
    plan = pipeline.plans.get(None, frozenset(), "run()")
    index = {name: k for k, name in enumerate(plan.node_names)}
    deps = {index[f"n{i}"]: {index[f"n{d}"] for d in ds} for i, ds in producers.items()}
    queue = core.ReadyQueue(plan)
    finished = [False] * plan.n_nodes  # set before done(k): a successor must see it set
    early: list[int] = []
    pending: list[int] = []
    pending_lock = threading.Lock()

    def worker(me: int) -> list[int]:
        issued: list[int] = []
        deadline = time.monotonic() + 60  # a lost node would keep the queue active forever
        while queue.is_active() and time.monotonic() < deadline:
            ready = queue.get_ready()
            issued.extend(ready)
            early.extend(k for k in ready if not all(finished[d] for d in deps[k]))
            with pending_lock:
                pending.extend(ready)
                take = [pending.pop() for _ in range(min(len(pending), 2))]
            for k in take:
                finished[k] = True
            if take:
                queue.done(*take)
            # let the other threads in: each must get a share of the work. A real sleep after
            # taking work: with sleep(0), one thread under load once took every node (3.10 wheel check)
            time.sleep(0.001 if take else 0)
        return issued

    issued = on_threads(worker, prefix="queue")
    every = sorted(k for mine in issued for k in mine)
    assert every == list(range(plan.n_nodes)), "a node was issued twice or never"
    assert not early, f"nodes issued before their producers were done: {early[:5]}"
    assert not queue.is_active()
    assert queue.n_done == plan.n_nodes
    assert sum(1 for mine in issued if mine) > 1, "only one thread ever got work"
    FIGURES.count("ready queue: nodes driven from 16 threads", plan.n_nodes)


@pytest.mark.parametrize("seed", range(2))
def test_sixteen_threads_drive_one_ready_queue(core: ModuleType, seed: int) -> None:
    """16 threads drive one ReadyQueue of 300 nodes: each node is issued once, after its
    producers, and the queue ends with every node done (see :func:`hammer_ready_queue`)."""
    hammer_ready_queue(core, 300, seed)


def race_done(core: ModuleType, rounds: int) -> None:
    """16 threads call done(k) for the same issued node at once, ``rounds`` times: one succeeds,
    the others get the 'already marked done' ValueError, and the successor is released once."""
    first = node(lambda: 1, output_name="a", name="first")
    second = node(lambda a: a, output_name="b", name="second")
    plan = Pipeline([first, second]).plans.get(None, frozenset(), "run()")
    for _ in range(rounds):
        queue = core.ReadyQueue(plan)
        (k,) = queue.get_ready()

        def mark(me: int, k: int = k, queue: Any = queue) -> str:
            try:
                queue.done(k)
            except ValueError as exc:
                return "refused" if "already marked done" in str(exc) else str(exc)
            return "ok"

        assert sorted(on_threads(mark, prefix="done")) == ["ok"] + ["refused"] * (CALLERS - 1)
        assert len(queue.get_ready()) == 1
        assert queue.get_ready() == ()


def test_racing_done_calls_for_one_node_succeed_once(core: ModuleType) -> None:
    """16 threads mark one node done at once: exactly one succeeds (see :func:`race_done`)."""
    race_done(core, 20)


# -- the free-threaded interpreter -------------------------------------------------

# Imports every module of the package (an optional extra that is not installed skips
# its module), runs a threaded and a process map, and reports whether the GIL is on,
# here and in the worker processes.
GIL_CHILD = """
import importlib, json, pkgutil, sys
import hypernodes
from hypernodes import HypernodesEngine, Pipeline, _core, node

skipped = []
for info in pkgutil.walk_packages(hypernodes.__path__, "hypernodes."):
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        skipped.append(f"{info.name}: {exc}")

@node(output_name="gil")
def gil(x):
    return sys._is_gil_enabled()

report = {"core": _core.IMPLEMENTATION, "skipped": skipped}
for kind, n in (("threaded", 2), ("parallel", 4)):
    with HypernodesEngine(map_executor=kind, max_workers=2) as engine:
        report[kind] = Pipeline([gil], backend=engine).map({"x": list(range(n))}, "x")["gil"]
report["here"] = sys._is_gil_enabled()
print(json.dumps(report))
"""


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded CPython build (python3.14t)")
def test_importing_hypernodes_leaves_the_gil_off(core: ModuleType) -> None:
    """On a free-threaded build, importing hypernodes (every module, and its dependencies) and
    mapping on threads and on processes leaves the GIL off, here and in the worker processes:
    no extension module of ours or of a dependency asks for it. Run in a fresh interpreter
    without PYTHON_GIL, on the core under test."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    if core.IMPLEMENTATION == "python":
        env["HYPERNODES_NO_EXTENSIONS"] = "1"
    out = subprocess.run([sys.executable, "-c", GIL_CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["core"] == core.IMPLEMENTATION
    # CPython warns, naming the module, when an import turns the GIL on.
    assert report["here"] is False, f"the GIL was enabled by an import: {out.stderr}"
    assert report["threaded"] == [False, False]
    assert report["parallel"] == [False] * 4, f"the GIL was enabled in a worker process: {out.stderr}"
