"""Faults: failing, hanging and dying work, Ctrl-C, and exceptions in callbacks.

Every fault is injected under every executor it can happen on. Each test checks
that the call does not hang (a generous bound; pytest-timeout is the last
resort), that the error is the node's own (type, message, a note naming the node
and item), that the rest of the work is cancelled, and that the engine works
afterwards. conftest checks after each test that no thread, child process or
event loop was left behind.

Items log their start to a file (``Started``), so work is counted the same way in
threads, worker processes and a Dask cluster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from hypernodes import HypernodesEngine, OutputArityError, Pipeline, node
from hypernodes.executors import AsyncExecutor
from hypernodes.executors.backends import worker_count

from .figures import FIGURES
from .kinds import EXECUTOR_KINDS, NODE_EXECUTOR_KINDS

pytestmark = pytest.mark.reliability

CONCURRENT_KINDS = [k for k in EXECUTOR_KINDS if k != "sequential"]
IN_PROCESS_KINDS = ["threaded", "async", "ThreadPoolExecutor", "AsyncExecutor"]
HANG_LIMIT_S = 60.0  # a "hanging" item gives up after this long, so a broken test cannot hang CI forever
PROMPT_S = 10.0  # "promptly": generous for a loaded 2-core machine; the work itself takes far longer


class ItemFailed(Exception):
    """A user's own exception type (module level, so it pickles)."""


class Started:
    """A file that items append their number to when they start: counts work in any process."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        Path(self.path).touch()

    def numbers(self) -> list[int]:
        with open(self.path) as f:
            return [int(line) for line in f.read().split()]


def _log_start(log: str, x: int) -> None:
    with open(log, "a") as f:  # one short O_APPEND write per item: lines do not interleave
        f.write(f"{x}\n")


def _hang_until(flag: str) -> None:
    deadline = time.monotonic() + HANG_LIMIT_S
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def started(tmp_path: Path) -> Started:
    return Started(tmp_path / "started")


@pytest.fixture
def release(tmp_path: Path) -> Any:
    """A flag file whose creation releases hanging items; created at teardown at the latest."""
    flag = tmp_path / "release"
    yield str(flag)
    flag.touch()


def _engine(kind: str, make_executor: Callable[[str], Any], level: str = "map_executor") -> HypernodesEngine:
    return HypernodesEngine(**{level: make_executor(kind)}, max_workers=2)


def _notes(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


# -- a node raising on some items -------------------------------------------------


def _second_and_third_fail(x: int, log: str) -> int:
    if x == 1:
        time.sleep(0.5)  # fails first in item order, but last in time wherever items 1 and 2 overlap
    if x in (1, 2):
        _log_start(log, x)  # the log's order is the order in which they failed
        raise ItemFailed(f"item {x}")
    time.sleep(0.01)
    return x


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_the_first_failure_in_time_wins_with_its_type_and_item(
    kind: str, make_executor: Callable[[str], Any], started: Started
) -> None:
    """Items 1 and 2 fail, item 2 at once and item 1 after 0.5 s: the call raises exactly the
    exception that failed first, with its own type and a note naming its node and item. Where
    free workers take the next item, that is item 2 (a Dask scheduler may place items 1 and 2
    on one worker; the sequential engine reaches item 1 first)."""
    with _engine(kind, make_executor) as engine:
        pipeline = Pipeline([node(_second_and_third_fail, output_name="y")], backend=engine)
        with pytest.raises(ItemFailed) as info:
            pipeline.map({"x": list(range(8)), "log": started.path}, "x")
        first = started.numbers()[0]
        if kind not in ("sequential", "dask"):
            assert first == 2
        assert str(info.value) == f"item {first}"
        assert _notes(info.value) == [f"hypernodes: raised in node `_second_and_third_fail`, map item {first}"]
        assert pipeline.map({"x": [0, 3], "log": started.path}, "x") == {"y": [0, 3]}  # still usable
    FIGURES.count("faults injected: failing items")


def _third_fails(x: int, log: str) -> int:
    _log_start(log, x)
    if x == 3:
        raise ItemFailed("item 3")
    time.sleep(0.025)  # longer than a chunk (CHUNK_S): a running slice checks for a stop after every item
    return x


@pytest.mark.parametrize("kind", CONCURRENT_KINDS)
def test_a_failure_cancels_the_rest_of_the_map(
    kind: str, make_executor: Callable[[str], Any], started: Started
) -> None:
    """Item 3 of 160 fails at once: most items never start. On threads and the async executor the
    running slices stop too: once the call has raised, at most one more item per worker starts."""
    executor = make_executor(kind)
    with HypernodesEngine(map_executor=executor, max_workers=2) as engine:
        pipeline = Pipeline([node(_third_fails, output_name="y")], backend=engine)
        t0 = time.monotonic()
        with pytest.raises(ItemFailed, match="item 3"):
            pipeline.map({"x": list(range(160)), "log": started.path}, "x")
        assert time.monotonic() - t0 < PROMPT_S
        at_return = len(started.numbers())
        time.sleep(0.3)
        later = started.numbers()
        assert len(later) < 100, f"{len(later)} of 160 items started after item 3 failed"
        if kind in IN_PROCESS_KINDS:
            workers = 2 if isinstance(executor, str) else worker_count(executor)
            assert len(later) - at_return <= workers, "slices kept running after the call failed"
    FIGURES.count("faults injected: failing items")


@pytest.mark.parametrize("kind", [k for k in NODE_EXECUTOR_KINDS if k != "sequential"])
def test_a_failing_node_raises_its_own_exception_with_its_name_and_item(
    kind: str, make_executor: Callable[[str], Any]
) -> None:
    """At node level too, in run() and inside a map (noted with the item); a tuple-output arity
    error is reported at the offending node; the engine works afterwards."""

    def boom(doubled: int) -> int:
        if doubled == 4:
            raise KeyError("no such thing")
        return doubled

    with _engine(kind, make_executor, "node_executor") as engine:
        pipeline = Pipeline([_double, _plus_one, node(boom, output_name="z")], backend=engine)
        with pytest.raises(KeyError, match="no such thing") as info:
            pipeline.run({"x": 2})
        assert _notes(info.value) == ["hypernodes: raised in node `boom`"]
        with pytest.raises(KeyError, match="no such thing") as info:
            pipeline.map({"x": [0, 1, 2, 3]}, "x")
        assert _notes(info.value) == ["hypernodes: raised in node `boom`, map item 2"]
        bad_arity = Pipeline([_double, _plus_one, node(_one_value, output_name=("p", "q"))], backend=engine)
        with pytest.raises(OutputArityError, match="Node `_one_value` has 2 output names but returned a tuple of 1"):
            bad_arity.run({"x": 1})
        assert pipeline.run({"x": 1}) == {"doubled": 2, "plus_one": 2, "z": 2}
    FIGURES.count("faults injected: failing nodes")


@node(output_name="doubled")
def _double(x: int) -> int:
    return 2 * x


@node(output_name="plus_one")
def _plus_one(x: int) -> int:
    return x + 1


def _one_value(doubled: int) -> tuple[int]:
    return (doubled,)


# -- a node that hangs while another fails -----------------------------------------


def _first_fails_second_hangs(x: int, release: str) -> int:
    if x == 0:
        time.sleep(0.05)
        raise ItemFailed("item 0")
    if x == 1:
        _hang_until(release)
    return x


@pytest.mark.parametrize("kind", CONCURRENT_KINDS)
def test_a_hanging_item_does_not_hold_back_a_failure(
    kind: str, make_executor: Callable[[str], Any], release: str
) -> None:
    """Item 1 hangs while item 0 fails: the call raises item 0's error without waiting for item 1;
    once released, the engine maps again."""
    with _engine(kind, make_executor) as engine:
        pipeline = Pipeline([node(_first_fails_second_hangs, output_name="y")], backend=engine)
        t0 = time.monotonic()
        with pytest.raises(ItemFailed, match="item 0"):
            pipeline.map({"x": list(range(40)), "release": release}, "x")
        assert time.monotonic() - t0 < PROMPT_S, "the failure waited for the hanging item"
        Path(release).touch()
        assert pipeline.map({"x": [2, 3], "release": release}, "x") == {"y": [2, 3]}
    FIGURES.count("faults injected: hanging beside failing")


def _hangs(x: int, release: str) -> int:
    _hang_until(release)
    return x


def _fails_soon(x: int) -> int:
    time.sleep(0.05)
    raise ItemFailed("node failed")


@pytest.mark.parametrize("kind", [k for k in NODE_EXECUTOR_KINDS if k != "sequential"])
def test_a_hanging_node_does_not_hold_back_a_failing_one(
    kind: str, make_executor: Callable[[str], Any], release: str
) -> None:
    """Two independent nodes: one hangs, one fails. run() raises the failure without waiting."""
    with _engine(kind, make_executor, "node_executor") as engine:
        pipeline = Pipeline([node(_hangs, output_name="a"), node(_fails_soon, output_name="b")], backend=engine)
        t0 = time.monotonic()
        with pytest.raises(ItemFailed, match="node failed") as info:
            pipeline.run({"x": 1, "release": release})
        assert time.monotonic() - t0 < PROMPT_S, "the failure waited for the hanging node"
        assert _notes(info.value) == ["hypernodes: raised in node `_fails_soon`"]
        Path(release).touch()
        assert pipeline.run({"x": 1, "release": release}, output_name="a") == {"a": 1}
    FIGURES.count("faults injected: hanging beside failing")


def test_shutdown_waits_for_a_running_call_but_not_for_abandoned_process_work(release: str) -> None:
    """One thread maps healthy items on a "parallel" engine while another thread's map on the same
    engine fails and leaves an item hanging in a worker. shutdown() from that thread waits for the
    healthy call to finish, correctly, and then terminates the hung worker instead of joining it."""
    engine = HypernodesEngine(map_executor="parallel", max_workers=3)
    healthy = Pipeline([node(_slow, output_name="y")], backend=engine)
    failing = Pipeline([node(_first_fails_second_hangs, output_name="y")], backend=engine)
    healthy.map({"x": [0]}, "x")  # workers up
    with ThreadPoolExecutor(1, thread_name_prefix="healthy") as other:
        running = other.submit(healthy.map, {"x": list(range(10))}, "x")
        with pytest.raises(ItemFailed):
            failing.map({"x": [0, 1], "release": release}, "x")
        t0 = time.monotonic()
        engine.shutdown()
        assert time.monotonic() - t0 < PROMPT_S
        assert running.done()
        assert running.result() == {"y": list(range(10))}
    FIGURES.count("faults injected: hanging beside failing")


def test_shutting_down_after_a_failure_does_not_wait_for_abandoned_process_work(release: str) -> None:
    """A "parallel" map fails while another item hangs in a worker and is never released: the
    engine's shutdown terminates that worker instead of joining it forever."""
    engine = HypernodesEngine(map_executor="parallel", max_workers=2)
    pipeline = Pipeline([node(_first_fails_second_hangs, output_name="y")], backend=engine)
    with pytest.raises(ItemFailed):
        pipeline.map({"x": [0, 1], "release": release}, "x")
    t0 = time.monotonic()
    engine.shutdown()
    assert time.monotonic() - t0 < PROMPT_S
    FIGURES.count("faults injected: hanging beside failing")


# -- worker processes dying ----------------------------------------------------------


def _dies_on_five(x: int, how: str) -> int:
    if x == 5:
        if how == "os._exit":
            os._exit(1)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.01)
    return x


def _slow(x: int) -> int:
    time.sleep(0.2)
    return x


def _kill_a_worker_soon(parent: psutil.Process, known: set[int]) -> threading.Thread:
    """Like the OOM killer: SIGKILL one of this process's new worker processes once it runs."""

    def kill() -> None:
        deadline = time.monotonic() + PROMPT_S
        while time.monotonic() < deadline:
            workers = [
                p for p in parent.children(recursive=True) if p.pid not in known and "resource_tracker" not in _cmd(p)
            ]
            if workers:
                time.sleep(0.3)
                workers[0].send_signal(signal.SIGKILL)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=kill, name="test-killer")
    thread.start()
    return thread


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("how", ["os._exit", "SIGKILL in the node", "SIGKILL from outside"])
@pytest.mark.parametrize("level", ["map_executor", "node_executor"])
def test_a_worker_process_killed_mid_map_is_a_clear_error_and_the_next_call_works(how: str, level: str) -> None:
    """A "parallel" worker dies (os._exit, SIGKILL) while a map runs: a BrokenExecutor naming the likely
    causes, promptly; the next call starts fresh workers and gives the right result. On the map executor
    (re-running pieces on fresh workers, see test_crash_bisect.py) the error is a WorkerDied naming the
    item, and a worker killed from outside is not fatal: the unfinished items run again, with a warning."""
    killer = None
    with HypernodesEngine(**{level: "parallel"}, max_workers=2) as engine:
        if how == "SIGKILL from outside":
            pipeline = Pipeline(
                [node(_slow, output_name="y"), node(_slow, output_name="z", name="slow2")], backend=engine
            )
            inputs: dict[str, Any] = {"x": list(range(40))}
            parent = psutil.Process()
            killer = _kill_a_worker_soon(parent, {p.pid for p in parent.children(recursive=True)})
        else:
            pipeline = Pipeline([node(_dies_on_five, output_name="y"), _double], backend=engine)
            inputs = {"x": list(range(10)), "how": "os._exit" if how == "os._exit" else "SIGKILL"}
        t0 = time.monotonic()
        try:
            if killer is not None and level == "map_executor":
                with pytest.warns(RuntimeWarning, match="ran again on fresh workers and all completed"):
                    assert pipeline.map(inputs, "x", output_name="z") == {"z": list(range(40))}
            else:
                with pytest.raises(BrokenExecutor) as info:
                    pipeline.map(inputs, "x")
        finally:
            if killer is not None:
                killer.join()
        assert time.monotonic() - t0 < 3 * PROMPT_S
        if killer is None or level == "node_executor":
            message = " ".join([str(info.value), *_notes(info.value)])
            died = "map item 5 kills the worker process" if level == "map_executor" else "worker process died while"
            assert died in message
            assert "segfault" in message
            assert "memory" in message
        again = {**inputs, "x": [1, 2, 3]}
        assert pipeline.map(again, "x", output_name="y") == {"y": [1, 2, 3]}
    FIGURES.count("faults injected: worker processes killed")


# -- Ctrl-C ------------------------------------------------------------------------------


def _slow_item(x: int, log: str) -> int:
    _log_start(log, x)
    time.sleep(0.1)
    return x


async def _slow_async_item(x: int, log: str) -> int:
    _log_start(log, x)
    await asyncio.sleep(0.1)
    return x


@pytest.mark.skipif(sys.platform == "win32", reason="os.kill(SIGINT) terminates the whole process on Windows")
@pytest.mark.parametrize(
    ("kind", "is_async"),
    [
        ("threaded", False),
        ("ThreadPoolExecutor", False),
        ("async", False),
        ("async", True),
        ("AsyncExecutor", True),
        ("parallel", False),
        ("parallel", True),
    ],
)
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_during_a_map_stops_it_promptly(
    kind: str, is_async: bool, make_executor: Callable[[str], Any], started: Started
) -> None:
    """SIGINT 0.3 s into a 20 s map: KeyboardInterrupt at once, no item starts afterwards (threads stop
    between items, coroutines are cancelled, worker processes are killed), and the engine maps again."""
    item = node(_slow_async_item if is_async else _slow_item, output_name="y")
    with _engine(kind, make_executor) as engine:
        pipeline = Pipeline([item], backend=engine)
        assert pipeline.map({"x": [0], "log": started.path}, "x") == {"y": [0]}  # executors (and workers) up
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        t0 = time.monotonic()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pipeline.map({"x": list(range(1, 401)), "log": started.path}, "x")
        finally:
            timer.cancel()
        assert time.monotonic() - t0 < PROMPT_S
        time.sleep(0.25)  # anything still running finishes its item (0.1 s) and stops
        at_rest = len(started.numbers())
        time.sleep(0.3)
        assert len(started.numbers()) == at_rest, "items kept starting after Ctrl-C"
        assert at_rest < 401
        assert pipeline.map({"x": [7, 8], "log": started.path}, "x") == {"y": [7, 8]}
    FIGURES.count("faults injected: Ctrl-C")


# -- exceptions inside callbacks ---------------------------------------------------------


def _bad_callback() -> None:
    raise RuntimeError("callback exploded")


async def _schedules_a_bad_callback(x: int) -> int:
    asyncio.get_running_loop().call_soon(_bad_callback)
    await asyncio.sleep(0.001)
    return x + 1


@pytest.mark.parametrize(
    "spec",
    [{}, {"map_executor": "async"}, {"node_executor": "async"}, {"map_executor": "threaded", "node_executor": "async"}],
    ids=["engine-loop", "async-map", "async-node", "threads+async-node"],
)
def test_an_exception_in_an_event_loop_callback_is_logged_and_harms_nothing(
    spec: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """An async node schedules a loop callback that raises: asyncio logs it (it is not swallowed
    silently), every item still gets its result, and the loop keeps serving the next call."""
    with caplog.at_level(logging.ERROR, logger="asyncio"), HypernodesEngine(**spec, max_workers=4) as engine:
        pipeline = Pipeline([node(_schedules_a_bad_callback, output_name="y"), _double], backend=engine)
        assert pipeline.map({"x": list(range(6))}, "x") == {"y": [1, 2, 3, 4, 5, 6], "doubled": [0, 2, 4, 6, 8, 10]}
        assert pipeline.run({"x": 10}) == {"y": 11, "doubled": 20}
    logged = [r for r in caplog.records if r.exc_info and "callback exploded" in str(r.exc_info[1])]
    assert len(logged) == 7
    FIGURES.count("faults injected: exceptions in callbacks", 7)


async def _async_identity(x: int) -> int:
    await asyncio.sleep(0)
    return x


def test_an_exception_in_a_future_done_callback_is_logged_and_the_executor_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user's done-callback on an AsyncExecutor future raises (for a thread task and a coroutine):
    concurrent.futures logs it, and the executor runs a map afterwards."""

    def bad(_: Future[Any]) -> None:
        raise RuntimeError("done-callback exploded")

    executor = AsyncExecutor(4)
    try:
        with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
            for fn in (_plus_one.func, _async_identity):
                future = executor.submit(fn, 1)
                future.add_done_callback(bad)
                assert future.result(timeout=PROMPT_S) in (1, 2)
            future = executor.submit(_async_identity, 1)
            future.result(timeout=PROMPT_S)
            future.add_done_callback(bad)  # already done: called (and logged) right here
        with HypernodesEngine(map_executor=executor) as engine:
            assert Pipeline([_double], backend=engine).map({"x": [1, 2]}, "x") == {"doubled": [2, 4]}
    finally:
        executor.shutdown()
    logged = [r for r in caplog.records if r.exc_info and "done-callback exploded" in str(r.exc_info[1])]
    assert len(logged) == 3
    FIGURES.count("faults injected: exceptions in callbacks", 3)


class RefusesAfter(ThreadPoolExecutor):
    """A user's executor that stops accepting work after ``n`` tasks, like a cluster going away."""

    def __init__(self, n: int) -> None:
        super().__init__(2)
        self.left = n

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.left <= 0:
            raise RuntimeError("cluster went away")
        self.left -= 1
        return super().submit(fn, *args, **kwargs)


REFUSED_NOTE = "hypernodes: RefusesAfter.submit() raised this, so the task never ran"


def test_an_executor_refusing_work_mid_map_fails_the_call_cleanly(started: Started) -> None:
    """submit() raises on the third slice: the call raises that error (noted), the slices already
    submitted stop, and the engine works again once the executor accepts work."""
    with RefusesAfter(2) as executor, HypernodesEngine(map_executor=executor) as engine:
        pipeline = Pipeline([node(_slow_item, output_name="y")], backend=engine)
        with pytest.raises(RuntimeError, match="cluster went away") as info:
            pipeline.map({"x": list(range(400)), "log": started.path}, "x")
        assert any(n.startswith(REFUSED_NOTE) for n in _notes(info.value))
        time.sleep(0.3)
        assert len(started.numbers()) <= 4
        executor.left = 10
        assert pipeline.map({"x": [1, 2], "log": started.path}, "x") == {"y": [1, 2]}
    FIGURES.count("faults injected: executors refusing work")


def test_a_node_executor_refusing_work_fails_the_run_cleanly(started: Started) -> None:
    """At node level: the third of four independent nodes is refused; run() raises that error,
    noted, and works again once the executor accepts work."""
    with RefusesAfter(2) as executor, HypernodesEngine(node_executor=executor) as engine:
        nodes = [node(_slow_item, output_name=f"y{k}", name=f"slow{k}") for k in range(4)]
        pipeline = Pipeline(nodes, backend=engine)
        with pytest.raises(RuntimeError, match="cluster went away") as info:
            pipeline.run({"x": 1, "log": started.path})
        assert any(n.startswith(REFUSED_NOTE) for n in _notes(info.value))
        executor.left = 10
        assert pipeline.run({"x": 1, "log": started.path}) == {f"y{k}": 1 for k in range(4)}
    FIGURES.count("faults injected: executors refusing work")


EXIT_AFTER_A_FAILED_MAP = """
import os, sys, time
from hypernodes import HypernodesEngine, Pipeline, node

def item(x, release):
    if x == 0:
        time.sleep(0.2)
        raise ValueError("item 0")
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:  # hangs
        time.sleep(0.01)
    return x

engine = HypernodesEngine(map_executor="parallel", max_workers=2)  # never shut down
try:
    Pipeline([node(item, output_name="y")], backend=engine).map({"x": [0, 1], "release": sys.argv[1]}, "x")
except ValueError:
    print("raised")
"""


def test_a_script_exits_promptly_after_a_failed_map_left_a_worker_hanging(release: str) -> None:
    """A script's "parallel" map fails while another item hangs in a worker, and the script ends
    without shutting the engine down: the interpreter exits at once (the hung worker is
    terminated) instead of waiting for the item."""
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", EXIT_AFTER_A_FAILED_MAP, release], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["raised"]
    assert time.monotonic() - t0 < PROMPT_S, "the interpreter waited for the hung item"
    FIGURES.count("faults injected: hanging beside failing")
