"""Items that kill their worker process: found by re-running pieces on fresh workers.

A "parallel" worker that dies (``os._exit``, a segfault, SIGKILL) breaks loky's pool,
which fails every pending slice alike. The map re-runs the slices that did not come
back, in smaller pieces, until the items that kill their worker alone are found: each
is that item's ``Failure`` (a ``WorkerDied``) under ``on_error="continue"``, every
other item keeping its result; under ``"raise"`` the ``WorkerDied`` names the item.
Items log each start to a file, so the re-runs are counted across processes.

Each death costs a fresh pool (~0.3 s idle, 2 s on a loaded box), so the costliest cases
run on one core only: the bisection runs in the caller, the same whichever core runs the items.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import BrokenExecutor
from pathlib import Path
from types import ModuleType

import pytest

from hypernodes import HypernodesEngine, Pipeline, WorkerDied, node

from .conftest import CORE_NAMES, load_core

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _crash(x: int, bad: tuple[int, ...], how: str, log: str) -> int:
    with open(log, "a") as f:  # one short O_APPEND write per start: lines do not interleave
        f.write(f"{x}\n")
    if x in bad:
        if how == "segfault":
            ctypes.string_at(0)
        elif how == "SIGKILL":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    return 10 * x


def _pipeline(engine: HypernodesEngine) -> Pipeline:
    return Pipeline([node(_crash, output_name="y")], backend=engine)


def _on_one_core(core: ModuleType) -> None:
    if core is not load_core(CORE_NAMES[0]):
        pytest.skip("costly; the bisection runs in the caller, the same on both cores")


def _starts(log: Path) -> list[int]:
    return [int(n) for n in log.read_text().split()]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "starts"
    path.touch()
    return path


@pytest.mark.parametrize(
    ("n", "bad", "how"),
    [(16, (15,), "segfault"), (20, (2, 17), "SIGKILL")],
)
def test_under_continue_exactly_the_crashing_items_fail_and_every_other_item_keeps_its_result(
    n: int, bad: tuple[int, ...], how: str, log: Path, core: ModuleType
) -> None:
    """Each crashing item is one Failure holding a WorkerDied naming it; every other item has its value;
    the crashing items run O(log n) times, the others a bounded number of times; the pool maps again
    afterwards. Two crashing items in different slices are both found."""
    if len(bad) > 1:
        _on_one_core(core)
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pipeline = _pipeline(engine)
        result = pipeline.map({"x": list(range(n)), "bad": bad, "how": how, "log": str(log)}, "x", on_error="continue")
        assert sorted(f.item for f in result.failures) == list(bad)
        for failure in result.failures:
            assert isinstance(failure.error, WorkerDied)
            assert failure.error.item == failure.item
            assert f"map item {failure.item} " in str(failure.error)
        assert [v for i, v in enumerate(result["y"]) if i not in bad] == [10 * i for i in range(n) if i not in bad]
        starts = _starts(log)
        for i in range(n):
            assert starts.count(i) <= (2 + 2 * n.bit_length() if i in bad else 2 + n.bit_length()), (i, starts)
        assert pipeline.map({"x": [1, 2], "bad": (), "how": how, "log": str(log)}, "x") == {"y": [10, 20]}


@pytest.mark.parametrize("bad", [0, 15])
def test_under_raise_the_error_names_the_crashing_item(bad: int, log: Path) -> None:
    """Wherever the crashing item is (first slice, middle, last slice), the raised WorkerDied (a
    BrokenExecutor) names it, chained from the pool's own error; the next map works."""
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pipeline = _pipeline(engine)
        inputs = {"x": list(range(16)), "bad": (bad,), "how": "os._exit", "log": str(log)}
        with pytest.raises(WorkerDied) as info:
            pipeline.map(inputs, "x")
        assert isinstance(info.value, BrokenExecutor)
        assert info.value.item == bad
        assert f"map item {bad} kills the worker process" in str(info.value)
        assert isinstance(info.value.__cause__, BrokenExecutor)
        assert pipeline.map({**inputs, "x": [1, 2, 3], "bad": ()}, "x") == {"y": [10, 20, 30]}


def test_a_map_where_every_item_crashes_ends_with_every_item_a_failure(log: Path, core: ModuleType) -> None:
    """No endless retry: every item is found crashing alone, each a WorkerDied Failure."""
    _on_one_core(core)
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        n = 8
        result = _pipeline(engine).map(
            {"x": list(range(n)), "bad": tuple(range(n)), "how": "os._exit", "log": str(log)}, "x", on_error="continue"
        )
        assert sorted(f.item for f in result.failures) == list(range(n))
        assert all(isinstance(f.error, WorkerDied) for f in result.failures)
        assert len(_starts(log)) <= n * (2 + n.bit_length())


def _crash_or_wait(x: int, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"{x}\n")
    if x == 0:
        os._exit(3)
    time.sleep(0.5)
    return x


def _interrupt_after_first_death(log: Path) -> None:
    """SIGINT to this process 0.5 s after item 0 started (and killed its worker): during the re-runs."""
    deadline = time.monotonic() + 30
    while 0 not in _starts(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_while_re_running_stops_promptly_and_the_engine_maps_again(log: Path, core: ModuleType) -> None:
    """Ctrl-C while the pieces of a dead slice run again: KeyboardInterrupt within seconds, no item
    starts afterwards (the fresh workers are killed), and the engine maps again."""
    _on_one_core(core)
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pipeline = Pipeline([node(_crash_or_wait, output_name="y")], backend=engine)
        killer = threading.Thread(target=_interrupt_after_first_death, args=(log,))
        t0 = time.monotonic()
        killer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pipeline.map({"x": list(range(16)), "log": str(log)}, "x", on_error="continue")
        finally:
            killer.join()
        assert time.monotonic() - t0 < 20
        time.sleep(0.6)  # an item still running finishes (0.5 s)
        at_rest = len(_starts(log))
        time.sleep(0.6)
        assert len(_starts(log)) == at_rest, "items kept starting after Ctrl-C"
        assert pipeline.map({"x": [1, 2], "log": str(log)}, "x") == {"y": [1, 2]}
