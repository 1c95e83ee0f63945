"""Load: many threads on one pipeline and engine, a million-item map, and the ready queue
hammered from many threads.

The plan and the engine hold no per-call state, so concurrent calls of every shape
(run and map, zip and product, different inputs and outputs) on one Pipeline and
one engine must each get exactly their own answer. A map's memory is bounded by
its outputs: nothing per item is kept beyond the results.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

from hypernodes import HypernodesEngine, Pipeline

from .figures import FIGURES
from .pipelines import DIAMOND
from .test_threads import hammer_pipeline, hammer_ready_queue, race_done

pytestmark = pytest.mark.reliability

CALLS = 1000

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
    call gets exactly its own result (see ``test_threads.hammer_pipeline``)."""
    spec = dict(ENGINES[name])
    with ThreadPoolExecutor(4) as user_pool:
        if spec.get("map_executor") == "ThreadPoolExecutor":
            spec["map_executor"] = user_pool
        with HypernodesEngine(**spec, max_workers=4) as engine:
            hammer_pipeline(Pipeline(DIAMOND[::-1], backend=engine), CALLS)  # declared out of order


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


@pytest.mark.parametrize("seed", range(6))
def test_the_ready_queue_is_consistent_under_many_threads(core: ModuleType, seed: int) -> None:
    """16 threads drive one ReadyQueue of 600 nodes (get_ready, done, is_active) with a tiny switch
    interval: every node is issued exactly once, never before its producers are done, and the queue
    ends inactive with every node done (see ``test_threads.hammer_ready_queue``)."""
    hammer_ready_queue(core, 600, seed)


def test_racing_done_calls_for_one_node_succeed_exactly_once(core: ModuleType) -> None:
    """16 threads call done(k) for the same issued node at once, 200 times: one succeeds, the others
    get the 'already marked done' ValueError, and the successor is released exactly once."""
    race_done(core, 200)
