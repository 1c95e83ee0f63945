"""What a new user hit (issue 15): errors lost at the process boundary, silent wrong results.

Process-level behaviour that needs a ``__main__`` module or a real signal runs a small
script in a fresh interpreter (on the core under test, through HYPERNODES_NO_EXTENSIONS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from types import ModuleType
from typing import Any

import pytest

from hypernodes import (
    ArgumentTypeError,
    DuplicateOutputError,
    ExecutorSpecError,
    HypernodesEngine,
    NodeDefinitionError,
    Pipeline,
    RemoteError,
    node,
)
from hypernodes.callbacks import CallbackContext, PipelineCallback
from hypernodes.executors import AsyncExecutor

SCRIPT_TIMEOUT_S = 120


class ApiError(Exception):
    """Like many HTTP and LLM client errors: ``__init__`` needs more than the message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Rebuildable(Exception):
    """An exception pickle can rebuild from its args."""


def _fails_on_one(x: int) -> int:
    if x == 1:
        raise ApiError("service unavailable", 503)
    return x


def _rebuildable_on_one(x: int) -> int:
    if x == 1:
        raise Rebuildable("plain")
    return x


def _lock_on_two(x: int) -> tuple[int, Any]:
    return x, threading.Lock() if x == 2 else x


def _script_env(core: ModuleType) -> dict[str, str]:
    return {**os.environ, "HYPERNODES_NO_EXTENSIONS": "1" if core.IMPLEMENTATION == "python" else "0"}


def _run_script(source: str, core: ModuleType, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        env=_script_env(core),
    )


# -- exceptions pickle cannot rebuild ----------------------------------------------------------


@pytest.mark.parametrize("level", ["map_executor", "node_executor"])
def test_an_exception_pickle_cannot_rebuild_arrives_as_a_remote_error(level: str) -> None:
    """An exception whose __init__ needs extra arguments, raised in a "parallel" worker, arrives as a
    RemoteError keeping its type name, message, traceback text and the node and item notes; no
    "worker died" note, and the pool keeps working."""
    pipeline_nodes = [node(_fails_on_one, output_name="y"), node(lambda y: y, output_name="z")]
    with HypernodesEngine(**{level: "parallel"}, max_workers=2) as engine:
        pipeline = Pipeline(pipeline_nodes, backend=engine)
        with pytest.raises(RemoteError) as info:
            pipeline.map({"x": [0, 1, 2]}, "x")
        exc = info.value
        assert exc.type_name == f"{__name__}.ApiError"
        assert exc.message == "service unavailable"
        assert str(exc).startswith(f"{__name__}.ApiError: service unavailable")
        assert "_fails_on_one" in exc.remote_traceback
        assert "ApiError: service unavailable" in exc.remote_traceback
        notes = getattr(exc, "__notes__", [])
        assert "hypernodes: raised in node `_fails_on_one`, map item 1" in notes
        assert not any("died" in n for n in notes)
        assert pipeline.map({"x": [0, 2]}, "x") == {"y": [0, 2], "z": [0, 2]}


def test_an_exception_pickle_can_rebuild_keeps_its_type() -> None:
    """A rebuildable exception from a "parallel" worker arrives as its own type, noted."""
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        with pytest.raises(Rebuildable, match="plain") as info:
            Pipeline([node(_rebuildable_on_one, output_name="y")], backend=engine).map({"x": [0, 1, 2]}, "x")
        assert "hypernodes: raised in node `_rebuildable_on_one`, map item 1" in info.value.__notes__


MAIN_EXCEPTIONS = """
import sys
from hypernodes import HypernodesEngine, Pipeline, RemoteError, node

class ApiError(Exception):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status

class Plain(Exception):
    pass

def item(x, kind):
    if x == 1:
        raise ApiError("quota", 429) if kind == "api" else Plain("plain")
    return x

with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
    pipeline = Pipeline([node(item, output_name="y")], backend=engine)
    for kind in ("api", "plain"):
        try:
            pipeline.map({"x": [0, 1, 2], "kind": kind}, "x")
        except RemoteError as exc:
            print("remote", exc.type_name, exc.message, exc.__notes__[-1], "died" in str(exc.__notes__))
        except Plain as exc:
            print("plain", exc, exc.__notes__[-1])
"""


def test_exceptions_defined_in_main_cross_the_process_boundary(core: ModuleType) -> None:
    """In a script, a __main__ exception pickle cannot rebuild arrives as a RemoteError naming
    __main__.ApiError and item 1; a rebuildable __main__ exception arrives as its own class."""
    out = _run_script(MAIN_EXCEPTIONS, core)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "remote __main__.ApiError quota hypernodes: raised in node `item`, map item 1 False",
        "plain plain hypernodes: raised in node `item`, map item 1",
    ]
    assert "Traceback" not in out.stderr, out.stderr


class _Errors(PipelineCallback):
    """Hears errors, and node ends (so the cores take their observed loops, and workers send events)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, BaseException]] = []
        self.ended: list[str] = []

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        self.ended.append(node_id)

    def on_error(self, node_id: str, error: BaseException, ctx: CallbackContext) -> None:
        self.errors.append((node_id, error))


def test_a_remote_error_reaches_the_callbacks_as_the_caller_gets_it() -> None:
    """With a callback on a "parallel" map (its events travel back with the failed slice, holding the
    error), the exception pickle cannot rebuild still arrives as a RemoteError, not a broken pool, and
    on_error hears that very RemoteError."""
    errors = _Errors()
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pipeline = Pipeline([node(_fails_on_one, output_name="y")], backend=engine, callbacks=[errors])
        with pytest.raises(RemoteError) as info:
            pipeline.map({"x": [0, 1, 2]}, "x")
    assert not any("died" in n for n in info.value.__notes__)
    assert [(name, type(error)) for name, error in errors.errors] == [("_fails_on_one", RemoteError)]
    assert errors.errors[0][1] is info.value


# -- outputs that cannot be pickled ------------------------------------------------------------


def test_an_unpicklable_output_of_a_process_map_is_named() -> None:
    """A lock returned by a node in a "parallel" map fails naming the output, the node and the item,
    with what to do; restricting output_name to picklable outputs works."""
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pipeline = Pipeline([node(_lock_on_two, output_name=("v", "w"))], backend=engine)
        with pytest.raises(TypeError, match="pickle") as info:
            pipeline.map({"x": [0, 1, 2, 3]}, "x")
        (note,) = [n for n in info.value.__notes__ if "cannot be pickled" in n]
        assert "output `w` of node `_lock_on_two`, map item 2" in note
        assert "return plain data" in note
        assert "output_name" in note
        assert pipeline.map({"x": [0, 1, 2, 3]}, "x", output_name="v") == {"v": [0, 1, 2, 3]}


def test_an_unpicklable_output_of_a_process_node_is_named() -> None:
    """A lock returned by a node on node_executor="parallel" fails naming the output and the node."""
    with HypernodesEngine(node_executor="parallel", max_workers=2) as engine:
        pipeline = Pipeline(
            [node(_lock_on_two, output_name=("v", "w")), node(lambda w: 1, output_name="u")], backend=engine
        )
        with pytest.raises(TypeError, match="pickle") as info:
            pipeline.run({"x": 2})
        notes = info.value.__notes__
        assert any("output `w` of node `_lock_on_two` cannot be pickled" in n for n in notes)
        assert "hypernodes: raised in node `_lock_on_two`" in notes


# -- Ctrl-C and sys.exit() in a process map ----------------------------------------------------

INTERRUPTED_MAP = """
import signal, sys, time
from hypernodes import HypernodesEngine, Pipeline, node

# As a terminal's script has it, also when this test runs from a background shell (where
# SIGINT is ignored, and a child inherits that):
signal.signal(signal.SIGINT, signal.default_int_handler)

def item(x, exit_at):
    if x == exit_at:
        sys.exit(3)
    time.sleep(0.2)
    return x

engine = HypernodesEngine(map_executor="parallel", max_workers=2)  # a script that never shuts it down
pipeline = Pipeline([node(item, output_name="y")], backend=engine)
pipeline.map({"x": [0, 1], "exit_at": -1}, "x")
print("warm", flush=True)
pipeline.map({"x": list(range(60)), "exit_at": int(sys.argv[1])}, "x")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGINT to a process group on Windows")
def test_ctrl_c_in_a_process_map_prints_only_the_keyboard_interrupt(core: ModuleType) -> None:
    """Ctrl-C (SIGINT to the script's process group, as a terminal sends it) during a "parallel" map
    prints the KeyboardInterrupt traceback and nothing from loky's or our threads."""
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_MAP, "-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_script_env(core),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "warm"
        threading.Event().wait(0.5)  # the map is under way, tasks queued behind the running ones
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=SCRIPT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    # loky's resource-tracker process gets the group's SIGINT too and may warn, on its own stderr,
    # about a semaphore the killed workers left (a UserWarning, no traceback): not ours to silence.
    lines = err.splitlines()
    tracker = [i for i, line in enumerate(lines) if "resource_tracker" in line and "UserWarning" in line]
    kept = [line for i, line in enumerate(lines) if i not in tracker and i - 1 not in tracker]
    err = "\n".join(kept)
    assert "InvalidStateError" not in err, err
    assert "Exception in" not in err, err
    assert err.count("Traceback") == 1, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err


def test_sys_exit_in_a_process_map_exits_quietly(core: ModuleType) -> None:
    """A node calling sys.exit(3) in a "parallel" map ends the script with status 3 and prints nothing."""
    out = _run_script(INTERRUPTED_MAP, core, "5")
    assert out.returncode == 3
    assert out.stdout.split() == ["warm"]
    assert out.stderr == ""


ABANDONED_ON_A_FRESH_POOL = """
import time
from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes.executors import _loky

def item(x):
    if x == 1:
        raise ValueError("bad item")
    time.sleep(300)
    return x

engine = HypernodesEngine(map_executor="parallel", max_workers=2)  # a script that never shuts it down
pipeline = Pipeline([node(item, output_name="y")], backend=engine)
for attempt in range(3):
    try:
        pipeline.map({"x": [0, 1, 2, 3]}, "x")
    except ValueError:
        print("failed", flush=True)
    if attempt < 2:
        _loky.kill(2)  # what Ctrl-C does: the next map starts a fresh pool
"""


def test_tasks_abandoned_on_a_pool_started_later_do_not_hang_the_exit(core: ModuleType) -> None:
    """Failed maps leave 300 s tasks running on a pool, then on fresh ones (after Ctrl-C): the script
    still exits at once, the workers terminated. loky registers an exit hook per pool it starts,
    which waits for every task; ours, which terminates them, must run before the newest of them."""
    out = _run_script(ABANDONED_ON_A_FRESH_POOL, core)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["failed"] * 3
    assert out.stderr == ""


def _fails_on_one_others_sleep(x: int) -> int:
    if x == 1:
        raise ValueError("item 1 is bad")
    time.sleep(0.5)
    return x


@pytest.mark.parametrize("fails", [False, True])
def test_shutdown_waits_for_the_pools_feeder_thread(fails: bool) -> None:
    """After a "parallel" engine's shutdown the pool's call-queue feeder thread has finished, after a
    clean map and after a failed one that left tasks running (their workers are terminated). loky does
    not wait for it; a script exiting while it still ran got a "leaked semlock" warning from loky's
    resource tracker (the sys.exit() test above, now and then)."""
    items = list(range(8))
    for _ in range(3):  # the feeder outlived a terminating shutdown about one time in three
        engine = HypernodesEngine(map_executor="parallel", max_workers=2)
        pipeline = Pipeline([node(_fails_on_one_others_sleep if fails else abs, output_name="y")], backend=engine)
        if fails:
            with pytest.raises(ValueError, match="item 1 is bad"):
                pipeline.map({"x": items}, "x")
        else:
            assert pipeline.map({"x": items}, "x")["y"] == items
        feeder = engine._runtime.items.executor()._call_queue._thread  # type: ignore[attr-defined]
        assert feeder is not None
        assert feeder.is_alive()
        engine.shutdown()
        assert not feeder.is_alive()


# -- CancelledError raised by an async node ----------------------------------------------------


async def _cancels_on_one(x: int) -> int:
    await asyncio.sleep(0.001)
    if x == 1:
        raise asyncio.CancelledError("upstream gave up")
    return x


async def _echo(x: int) -> int:
    return x


@pytest.mark.parametrize(
    "spec", [{"map_executor": "async"}, {"map_executor": "AsyncExecutor"}, {"node_executor": "async"}]
)
def test_a_cancelled_error_raised_by_an_async_node_keeps_its_note(spec: dict[str, str]) -> None:
    """An async node raising CancelledError itself under an AsyncExecutor: that very exception reaches
    the caller, noted with the node and item (asyncio would otherwise take it for a cancellation)."""
    with contextlib.ExitStack() as stack:
        if spec.get("map_executor") == "AsyncExecutor":
            spec = {"map_executor": stack.enter_context(AsyncExecutor(8))}
        engine = stack.enter_context(HypernodesEngine(**spec))
        nodes = [node(_cancels_on_one, output_name="y"), node(_echo, output_name="z")]
        with pytest.raises(asyncio.CancelledError, match="upstream gave up") as info:
            Pipeline(nodes, backend=engine).map({"x": [0, 1, 2]}, "x")
        assert "hypernodes: raised in node `_cancels_on_one`, map item 1" in info.value.__notes__


async def _fails_or_sleeps(x: int) -> int:
    if x == 0:
        await asyncio.sleep(0.01)
        raise ValueError("item 0")
    await asyncio.sleep(30)
    return x


def test_the_items_cancelled_after_a_failure_stay_cancelled() -> None:
    """After one item fails under an AsyncExecutor, the others are cancelled (not turned into errors):
    the failure raises at once and the engine maps again."""
    with HypernodesEngine(map_executor="async") as engine:
        pipeline = Pipeline([node(_fails_or_sleeps, output_name="y")], backend=engine)
        with pytest.raises(ValueError, match="item 0"):
            pipeline.map({"x": list(range(8))}, "x")
        assert pipeline.map({"x": []}, "x") == {"y": []}


# -- a plain node returning a coroutine --------------------------------------------------------


async def _fetch(x: int) -> int:
    return x


def _wraps_fetch(x: int) -> Any:
    return _fetch(x)  # the bug: a plain function around an async call


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"map_executor": "threaded"},
        {"map_executor": "async"},
        {"map_executor": "parallel"},
        {"node_executor": "threaded"},
    ],
)
def test_a_plain_node_returning_a_coroutine_fails_naming_it(spec: dict[str, str]) -> None:
    """A plain node that returns a coroutine fails with NodeDefinitionError naming it (the coroutine is
    closed, so no 'never awaited' warning), instead of storing an un-awaited coroutine."""
    nodes = [node(_wraps_fetch, output_name="y"), node(lambda x: x, output_name="z")]
    with HypernodesEngine(**spec, max_workers=2) as engine:
        pipeline = Pipeline(nodes, backend=engine)
        with pytest.raises(NodeDefinitionError, match="Node `_wraps_fetch` is a plain function but returned a corou"):
            pipeline.map({"x": [1, 2]}, "x")
        with pytest.raises(NodeDefinitionError, match="async def") as info:
            pipeline.run({"x": 1})
        assert "hypernodes: raised in node `_wraps_fetch`" in info.value.__notes__


@pytest.mark.parametrize("spec", [{}, {"map_executor": "parallel"}, {"node_executor": "threaded"}])
def test_a_plain_node_returning_a_coroutine_fails_also_with_a_callback(spec: dict[str, str]) -> None:
    """With a callback (the cores' observed loops, and node events), the plain node returning a coroutine
    fails the same way, and on_error hears it."""
    errors = _Errors()
    nodes = [node(_wraps_fetch, output_name="y"), node(lambda x: x, output_name="z")]
    with HypernodesEngine(**spec, max_workers=2) as engine:
        pipeline = Pipeline(nodes, backend=engine, callbacks=[errors])
        with pytest.raises(NodeDefinitionError, match="Node `_wraps_fetch` is a plain function but returned a corou"):
            pipeline.map({"x": [1, 2]}, "x")
        with pytest.raises(NodeDefinitionError, match="async def"):
            pipeline.run({"x": 1})
    assert [(name, type(error)) for name, error in errors.errors][-1] == ("_wraps_fetch", NodeDefinitionError)


# -- one-shot iterators as shared inputs -------------------------------------------------------


def _total(x: int, weights: Any) -> int:
    return x + sum(weights)


@pytest.mark.parametrize("make", [lambda: (w for w in [1, 2]), lambda: iter([1, 2]), lambda: map(int, "12")])
def test_a_one_shot_iterator_as_a_shared_map_input_is_refused(make: Any) -> None:
    """A generator, iterator or map object given as a shared map input is refused before any node runs
    (item 0 would use it up), with a message saying to pass a list; a list works; run() still takes one."""
    ran: list[int] = []

    def total(x: int, weights: Any) -> int:
        ran.append(x)
        return x + sum(weights)

    pipeline = Pipeline([node(total, output_name="y")])
    with pytest.raises(ArgumentTypeError, match="Shared input `weights` is a one-shot iterator") as info:
        pipeline.map({"x": [0, 1, 2], "weights": make()}, "x")
    assert "Pass a list" in str(info.value)
    assert ran == []
    assert pipeline.map({"x": [0, 1, 2], "weights": [1, 2]}, "x") == {"y": [3, 4, 5]}
    assert pipeline.run({"x": 0, "weights": make()}) == {"y": 3}


# -- re-wrapping a node ------------------------------------------------------------------------


def test_rewrapping_a_node_keeps_its_function_parameters() -> None:
    """node(existing_node, output_name="w") wraps the node's function: same parameters and defaults."""

    @node(output_name="y")
    def f(x: int, k: int = 2) -> int:
        return x * k

    w = node(f, output_name="w")
    assert w.parameters == ("x", "k")
    assert w.defaults == {"k": 2}
    assert w.func is f.func
    assert Pipeline([w]).run({"x": 3}) == {"w": 6}
    with pytest.raises(NodeDefinitionError, match="as_node"):
        node(Pipeline([f], name="inner").as_node(), output_name="z")


# -- constructor arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["backend", "engine"])
def test_an_engine_class_instead_of_an_engine_is_refused_at_construction(keyword: str) -> None:
    """Pipeline(backend=HypernodesEngine) (the class) fails at construction, naming the class and the fix."""
    with pytest.raises(ExecutorSpecError, match=rf"Pipeline\({keyword}=...\) got the class HypernodesEngine") as info:
        Pipeline([node(_echo, output_name="y")], **{keyword: HypernodesEngine})
    assert f"{keyword}=HypernodesEngine()" in str(info.value)


def test_a_bad_map_mode_is_refused_without_map_over() -> None:
    """as_node(map_mode="bogus") fails at once, with or without map_over."""
    inner = Pipeline([node(_echo, output_name="y")], name="inner")
    with pytest.raises(NodeDefinitionError, match="Unknown map_mode 'bogus'"):
        inner.as_node(map_mode="bogus")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pipeline([node(_echo, output_name="y")], name=123),
        lambda: Pipeline([node(_echo, output_name="y")]).as_node(name=123),
        lambda: node(_echo, output_name="y", name=123),
    ],
    ids=["Pipeline", "as_node", "node"],
)
def test_a_name_that_is_not_a_string_is_refused(make: Any) -> None:
    """Pipeline(name=123), as_node(name=123) and node(name=123) fail at construction naming the value."""
    with pytest.raises(NodeDefinitionError, match=r"string.*, got int 123"):
        make()


def test_nesting_one_pipeline_twice_says_how_to_tell_them_apart() -> None:
    """The same pipeline nested twice: the DuplicateOutputError names both positions and suggests
    as_node(name=..., output_mapping=...); following the advice works."""
    inner = Pipeline([node(_echo, output_name="y")], name="P")
    with pytest.raises(DuplicateOutputError, match=r"nodes\[0\] and nodes\[1\], both named `P`") as info:
        Pipeline([inner, inner])
    assert 'as_node(name="P_2", output_mapping={"y": "y_2"})' in str(info.value)
    both = Pipeline([inner, inner.as_node(name="P_2", output_mapping={"y": "y_2"})])
    assert both.run({"x": 1}) == {"y": 1, "y_2": 1}


def test_the_unpicklable_input_message_says_parallel() -> None:
    """An unpicklable input to a map_executor="parallel" map says "parallel", as the user wrote it."""
    with HypernodesEngine(map_executor="parallel", max_workers=1) as engine:
        pipeline = Pipeline([node(_total, output_name="y")], backend=engine)
        with pytest.raises(TypeError) as info:
            pipeline.map({"x": [1], "weights": threading.Lock()}, "x")
        (note,) = [n for n in info.value.__notes__ if "cannot be pickled" in n]
        assert 'A map on "parallel"' in note
        assert "ProcessPoolExecutor" not in note
