"""Maps that survive bad items: ``on_error="continue"``, retries and timeouts, under every executor.

A failing item leaves a :class:`~hypernodes.Failure` in exactly the outputs that
depended on the failure; the others are computed. Retries rerun only the failing
node, as often as asked and only for the listed exception types. A timed-out call
fails its item with a ``TimeoutError`` while the other items finish. Time bounds
here only check that a call did not wait for a hang (generous margins); counts are
checked with counters (files, for worker processes).
"""

from __future__ import annotations

import asyncio
import io
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hypernodes import (
    Failure,
    HypernodesEngine,
    MapResult,
    MapSpecError,
    MemoryCache,
    NodeDefinitionError,
    Pipeline,
    PipelineCallback,
    RemoteError,
    node,
)
from hypernodes._policy import MAX_DELAY, Policy
from hypernodes.failures import ATTEMPTS_ATTR

from .kinds import EXECUTOR_KINDS

BAD = (2, 5)  # the items whose `parse` raises


@node(output_name="p")
def parse(x: int) -> int:
    if x in BAD:
        raise ValueError(f"cannot parse {x}")
    return x * 10


@node(output_name="sq")
def square(p: int) -> int:
    return p * p


@node(output_name="tag")
def label(x: int) -> str:
    return f"#{x}"


@node(output_name="out")
def join(sq: int, tag: str) -> str:
    return f"{tag}={sq}"


@node(output_name=("lo", "hi"))
def split(sq: int) -> tuple[int, int]:
    return divmod(sq, 100)


NODES = [parse, square, label, join, split]


def _check_shape(result: dict[str, list[Any]], n: int) -> None:
    """The exact result of the NODES pipeline over ``range(n)``: markers in the dependent outputs only."""
    assert isinstance(result, MapResult)
    assert list(result) == ["p", "sq", "tag", "out", "lo", "hi"]
    assert all(len(column) == n for column in result.values())
    assert result["tag"] == [f"#{x}" for x in range(n)]  # independent of the failure: always computed
    for x in range(n):
        if x in BAD:
            marker = result["p"][x]
            assert isinstance(marker, Failure)
            # one marker, shared by every output that depended on it
            assert all(result[o][x] is marker for o in ("p", "sq", "out", "lo", "hi"))
            assert (marker.item, marker.node, marker.attempts) == (x, "parse", 1)
            assert isinstance(marker.error, ValueError)
            assert marker.type_name == "builtins.ValueError"
            assert marker.message == f"cannot parse {x}"
            assert f"ValueError: cannot parse {x}" in marker.traceback
            assert f"node `parse`, map item {x}" in marker.traceback  # the note, in the traceback text
        else:
            sq = (x * 10) ** 2
            assert (result["p"][x], result["sq"][x], result["out"][x]) == (x * 10, sq, f"#{x}={sq}")
            assert (result["lo"][x], result["hi"][x]) == divmod(sq, 100)
    assert [f.item for f in result.failures] == [x for x in BAD if x < n]
    assert result.failed_items == [x for x in BAD if x < n]
    assert result.good_items == [x for x in range(n) if x not in BAD]
    assert not result.ok


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_continue_gives_markers_only_in_dependent_outputs(kind: str, make_executor: Callable[[str], Any]) -> None:
    """Under every map executor a failing item leaves markers exactly where its outputs depended on the failure."""
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=3) as engine:
        pipeline = Pipeline(NODES, backend=engine)
        n = 9
        _check_shape(pipeline.map({"x": list(range(n))}, map_over="x", on_error="continue"), n)
        # the same through the pipeline's own setting, and restricted to independent outputs
        pipeline_continue = Pipeline(NODES, backend=engine, on_error="continue")
        _check_shape(pipeline_continue.map({"x": list(range(n))}, map_over="x"), n)
        tags = pipeline_continue.map({"x": list(range(n))}, map_over="x", output_name="tag")
        assert tags == {"tag": [f"#{x}" for x in range(n)]}
        assert tags.ok
        # "raise" is still the default, and stops at a failing item
        with pytest.raises(ValueError, match="cannot parse"):
            pipeline.map({"x": list(range(n))}, map_over="x")


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_continue_with_nodes_on_an_executor(kind: str, make_executor: Callable[[str], Any]) -> None:
    """Under every node executor (one item's nodes as tasks) the result is the same."""
    with HypernodesEngine(node_executor=make_executor(kind)) as engine:
        pipeline = Pipeline(NODES, backend=engine)
        _check_shape(pipeline.map({"x": list(range(7))}, map_over="x", on_error="continue"), 7)


def test_continue_with_async_nodes_on_every_strategy() -> None:
    """Async nodes: the async slice, the awaited table on threads, and processes keep going alike."""

    @node(output_name="p", name="parse")
    async def aparse(x: int) -> int:
        await asyncio.sleep(0)
        if x in BAD:
            raise ValueError(f"cannot parse {x}")
        return x * 10

    for map_executor, node_executor in [
        ("async", "sequential"),
        ("threaded", "sequential"),
        ("sequential", "async"),
        ("parallel", "sequential"),
    ]:
        with HypernodesEngine(map_executor=map_executor, node_executor=node_executor, max_workers=2) as engine:
            pipeline = Pipeline([aparse, square, label, join, split], backend=engine)
            _check_shape(pipeline.map({"x": list(range(7))}, map_over="x", on_error="continue"), 7)


def test_failure_reporting_helpers() -> None:
    """raise_if_failed raises the first failure's own exception; good() keeps the good items; repr says it all."""
    result = Pipeline(NODES).map({"x": list(range(7))}, map_over="x", on_error="continue")
    assert isinstance(result, dict)
    with pytest.raises(ValueError, match="cannot parse 2") as info:
        result.raise_if_failed()
    assert any("2 of 7 map items failed (items 2, 5)" in note for note in info.value.__notes__)
    good = result.good()
    assert good["tag"] == ["#0", "#1", "#3", "#4", "#6"]
    assert all(not isinstance(v, Failure) for column in good.values() for v in column)
    assert "failures=2" in repr(result)
    assert "map item 2 in node `parse`: ValueError: cannot parse 2" in repr(result.failures[0])
    clean = Pipeline(NODES).map({"x": [0, 1]}, map_over="x", on_error="continue")
    clean.raise_if_failed()  # nothing failed: returns
    assert clean.ok
    assert clean.good() == dict(clean)
    assert clean.failures == ()
    copy = pickle.loads(pickle.dumps(result))
    assert isinstance(copy, MapResult)
    assert copy.failed_items == [2, 5]
    assert copy.failures[0].traceback == result.failures[0].traceback


def test_empty_map_and_all_failing() -> None:
    """No items gives empty lists and no failures; every item failing still returns every item."""
    empty = Pipeline(NODES).map({"x": []}, map_over="x", on_error="continue")
    assert empty == {name: [] for name in ["p", "sq", "tag", "out", "lo", "hi"]}
    assert empty.ok
    everything = Pipeline(NODES).map({"x": [2, 5]}, map_over="x", on_error="continue")
    assert everything.failed_items == [0, 1]
    assert everything.good_items == []
    assert everything["tag"] == ["#2", "#5"]


def test_bad_on_error_fails_before_any_node_runs() -> None:
    """An unknown on_error is refused by map() and by Pipeline(), naming what is allowed."""
    calls: list[int] = []

    @node(output_name="y")
    def record(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(MapSpecError, match="on_error must be 'raise' or 'continue', got 'ignore'"):
        Pipeline([record]).map({"x": [1]}, map_over="x", on_error="ignore")
    with pytest.raises(MapSpecError, match="Pipeline\\(\\): on_error must be"):
        Pipeline([record], on_error="skip")
    assert calls == []


# -- nested maps ------------------------------------------------------------------

INNER = Pipeline([parse, square], name="inner")


@pytest.mark.parametrize("kind", ["sequential", "threaded", "parallel"])
def test_nested_map_failure_fails_its_outer_item(kind: str) -> None:
    """An inner item that fails (inner pipeline on "raise") fails the outer item at the nested node only."""
    nested = INNER.as_node(input_mapping={"xs": "x"}, output_mapping={"sq": "squares"}, map_over="xs", name="each")

    @node(output_name="total")
    def total(squares: list[int]) -> int:
        return sum(squares)

    @node(output_name="size")
    def size(xs: list[int]) -> int:
        return len(xs)

    with HypernodesEngine(map_executor=kind, max_workers=2) as engine:
        outer = Pipeline([nested, total, size], backend=engine)
        result = outer.map({"xs": [[0, 1], [1, 2, 3], [4]]}, map_over="xs", on_error="continue")
    assert result["size"] == [2, 3, 1]
    assert result["total"][0] == 100
    assert result["total"][2] == 1600
    marker = result["total"][1]
    assert isinstance(marker, Failure)
    assert result["squares"][1] is marker
    assert (marker.item, marker.node) == (1, "each")
    assert isinstance(marker.error, ValueError)
    assert "node `parse`, map item 1" in marker.traceback  # the inner item, noted by the inner map
    assert result.failed_items == [1]


def test_nested_map_that_continues_returns_markers_inside_its_lists() -> None:
    """An inner pipeline on "continue" keeps going: the outer item gets its lists with the inner markers."""
    inner = Pipeline([parse, square], name="inner", on_error="continue")
    nested = inner.as_node(input_mapping={"xs": "x"}, output_mapping={"sq": "squares"}, map_over="xs", name="each")
    result = Pipeline([nested]).map({"xs": [[1, 2], [3]]}, map_over="xs", on_error="continue")
    assert result.ok  # the outer items did not fail
    first = result["squares"][0]
    assert first[0] == 100
    assert isinstance(first[1], Failure)
    assert first[1].item == 1
    assert result["squares"][1] == [900]


# -- retries ----------------------------------------------------------------------


def _bump(directory: str, x: int) -> int:
    """One more call for item ``x``, counted in a file (shared with worker processes); the new count."""
    path = Path(directory) / f"calls-{x}"
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def _calls(directory: Path, x: int) -> int:
    path = directory / f"calls-{x}"
    return int(path.read_text()) if path.exists() else 0


@node(output_name="y", retries=3, retry_on=ConnectionError, backoff=0)
def flaky(x: int, directory: str, fails: int) -> int:
    """Fails ``fails`` times per item with a ConnectionError, then returns."""
    if _bump(directory, x) <= fails:
        raise ConnectionError(f"flaky {x}")
    return x + 1


@node(output_name="z")
def upstream_count(x: int, directory: str) -> int:
    return _bump(directory, 1000 + x)


@node(output_name="w")
def after_flaky(y: int, z: int) -> int:
    return y + z


@pytest.mark.parametrize("kind", ["sequential", "threaded", "parallel", "PicklingExecutor"])
def test_retries_rerun_only_the_failing_node(kind: str, tmp_path: Path, make_executor: Callable[[str], Any]) -> None:
    """A node failing k <= retries times per item succeeds on call k+1; its upstream node runs once per item."""
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([upstream_count, flaky, after_flaky], backend=engine)
        result = pipeline.map({"x": [0, 1, 2], "directory": str(tmp_path), "fails": 2}, map_over="x")
    assert result["y"] == [1, 2, 3]
    assert [_calls(tmp_path, x) for x in range(3)] == [3, 3, 3]
    assert [_calls(tmp_path, 1000 + x) for x in range(3)] == [1, 1, 1]  # upstream not rerun


def test_retries_give_up_after_n_with_the_attempt_count(tmp_path: Path) -> None:
    """Failing more often than retries: the final exception records N+1 attempts (attribute, note, marker)."""
    pipeline = Pipeline([flaky])
    with pytest.raises(ConnectionError) as info:
        pipeline.run({"x": 0, "directory": str(tmp_path), "fails": 10})
    assert getattr(info.value, ATTEMPTS_ATTR) == 4
    assert _calls(tmp_path, 0) == 4
    assert any("failed after 4 attempts (retries=3)" in note for note in info.value.__notes__)
    result = pipeline.map({"x": [1, 2], "directory": str(tmp_path), "fails": 10}, map_over="x", on_error="continue")
    assert [f.attempts for f in result.failures] == [4, 4]


def test_retries_only_on_the_listed_exception_types(tmp_path: Path) -> None:
    """An exception not in retry_on fails at once, with a note saying why it was not retried."""

    @node(output_name="y", retries=5, retry_on=(ConnectionError, TimeoutError), backoff=0)
    def wrong_kind(x: int, directory: str) -> int:
        _bump(directory, x)
        raise KeyError(x)

    with pytest.raises(KeyError) as info:
        Pipeline([wrong_kind]).run({"x": 7, "directory": str(tmp_path)})
    assert _calls(tmp_path, 7) == 1
    assert any(
        "not retried (KeyError is not in retry_on=(ConnectionError, TimeoutError))" in n for n in info.value.__notes__
    )


@pytest.mark.parametrize("kind", ["sequential", "async", "AsyncExecutor"])
def test_async_retries_wait_on_the_loop(kind: str, make_executor: Callable[[str], Any]) -> None:
    """An async node retries with asyncio.sleep: other items run during its backoff (counted, not timed)."""
    attempts: dict[int, int] = {}
    in_backoff = threading.Event()
    ran_during_backoff: list[int] = []

    def backoff(attempt: int) -> float:
        in_backoff.set()
        return 0.05

    @node(output_name="y", retries=2, backoff=backoff)
    async def aflaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 0 and attempts[x] == 1:
            raise ConnectionError("first call fails")
        if x != 0 and in_backoff.is_set() and attempts.get(0) == 1:
            ran_during_backoff.append(x)
        await asyncio.sleep(0.01)
        return x

    with HypernodesEngine(map_executor=make_executor(kind), max_workers=8) as engine:
        result = Pipeline([aflaky], backend=engine).map({"x": list(range(8))}, map_over="x")
    assert result["y"] == list(range(8))
    assert attempts[0] == 2
    if kind != "sequential":  # items run at once on the loop: some ran while item 0 waited
        assert ran_during_backoff


def test_backoff_grows_exponentially_with_jitter() -> None:
    """Delays double each attempt, times a factor in [0.5, 1], capped; a function sets them itself."""
    assert isinstance(flaky._call, Policy)
    policy = Policy(lambda: 0, "n", 5, (Exception,), 0.1, None)
    for attempt in range(1, 6):
        delay = policy.delay(attempt)
        assert 0.05 * 2 ** (attempt - 1) <= delay <= 0.1 * 2 ** (attempt - 1)
    assert Policy(lambda: 0, "n", 50, (Exception,), 10.0, None).delay(20) == MAX_DELAY
    assert Policy(lambda: 0, "n", 5, (Exception,), lambda a: a / 10, None).delay(3) == pytest.approx(0.3)


def test_bad_retry_and_timeout_options_fail_at_the_decorator() -> None:
    """Malformed options name what is allowed; retry_on/backoff without retries are refused, not dropped."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"retries": True}, "retries must be an int >= 0"),
        ({"retries": 1, "retry_on": ValueError("x")}, "retry_on must be an Exception subclass"),
        ({"retries": 1, "retry_on": KeyboardInterrupt}, "retry_on must be an Exception subclass"),
        ({"retries": 1, "backoff": -1}, "backoff must be a number of seconds >= 0"),
        ({"retry_on": ValueError}, "only apply with retries=N"),
        ({"backoff": 1.0}, "only apply with retries=N"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"timeout": "5"}, "timeout must be a positive number"),
    ]
    for options, fragment in cases:
        with pytest.raises(NodeDefinitionError, match=fragment):
            node(lambda x: x, output_name="y", **options)
    plain = node(lambda x: x, output_name="y")
    assert plain._call is plain.func  # no options: the function itself, nothing in between
    assert (plain.retries, plain.timeout) == (0, None)


# -- timeouts ---------------------------------------------------------------------

RELEASE = threading.Event()  # lets the abandoned calls of this process return at the end of a test


@pytest.fixture
def release() -> Any:
    RELEASE.clear()
    yield RELEASE
    RELEASE.set()


@node(output_name="y", timeout=0.3)
def maybe_hang(x: int, hang: float) -> int:
    """Item 1 hangs (for ``hang`` s, or until RELEASE in this process); the others return at once."""
    if x == 1:
        RELEASE.wait(hang)
    return x * 2


@node(output_name="y", timeout=0.3)
async def amaybe_hang(x: int, hang: float) -> int:
    if x == 1:
        await asyncio.sleep(hang)
    return x * 2


@pytest.mark.parametrize(
    ("kind", "hung"),
    [
        ("sequential", maybe_hang),
        ("threaded", maybe_hang),
        ("parallel", maybe_hang),
        ("async", amaybe_hang),
        ("sequential", amaybe_hang),
        ("AsyncExecutor", maybe_hang),
    ],
)
def test_a_hung_item_times_out_beside_good_items(
    kind: str, hung: Any, release: threading.Event, make_executor: Callable[[str], Any]
) -> None:
    """A hung call fails its item with a TimeoutError naming node and timeout; the map does not wait for it."""
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([hung], backend=engine)
        pipeline.map({"x": [0, 2], "hang": 3.0}, map_over="x")  # workers started before the clock (loky: seconds)
        started = time.perf_counter()
        result = pipeline.map({"x": [0, 1, 2, 3], "hang": 3.0}, map_over="x", on_error="continue")
        elapsed = time.perf_counter() - started
    assert elapsed < 2.5  # the hang is 3 s: it was not waited for (a generous bound, not a speed test)
    assert result["y"][0] == 0
    assert result["y"][2:] == [4, 6]
    (failure,) = result.failures
    assert failure.item == 1
    assert failure.node == hung.name
    assert isinstance(failure.error, TimeoutError)
    assert f"node `{hung.name}` did not finish within its timeout of 0.3 s" in failure.message
    assert f"node `{hung.name}`, map item 1" in failure.traceback
    what = "its coroutine was cancelled" if hung.is_async else "the call was abandoned"
    assert what in failure.message


def test_timeout_under_raise_fails_the_map(release: threading.Event) -> None:
    """With on_error="raise" the timeout is the map's error, raised as soon as it passes."""
    with pytest.raises(TimeoutError, match=r"timeout of 0\.3 s") as info:
        Pipeline([maybe_hang]).map({"x": [0, 1], "hang": 3.0}, map_over="x")
    assert any("map item 1" in note for note in info.value.__notes__)


def test_a_timeout_can_be_retried(release: threading.Event) -> None:
    """A TimeoutError is retried like any listed exception; each attempt gets a fresh timeout."""
    calls: list[int] = []

    @node(output_name="y", timeout=0.2, retries=1, retry_on=TimeoutError, backoff=0)
    def slow_once(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            RELEASE.wait(3)
        return x

    assert Pipeline([slow_once]).run({"x": 5}) == {"y": 5}
    assert calls == [5, 5]


def test_the_nodes_own_timeout_error_is_not_ours() -> None:
    """A TimeoutError a timed async node raises itself keeps its message (it is not taken for the timeout)."""

    @node(output_name="y", timeout=5)
    async def own(x: int) -> int:
        raise TimeoutError("the service said so")

    with pytest.raises(TimeoutError, match="the service said so"):
        Pipeline([own]).run({"x": 1})


# -- callbacks, progress, cache -----------------------------------------------------


class Recorder(PipelineCallback):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_node_retry(self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: Any) -> None:
        self.events.append(("retry", node_id, type(error).__name__, attempt, delay))

    def on_error(self, node_id: str, error: BaseException, ctx: Any) -> None:
        self.events.append(("error", node_id, type(error).__name__))

    def on_map_item_failed(self, item_index: int, failure: Any, ctx: Any) -> None:
        self.events.append(("item_failed", item_index, failure.node))

    def on_map_items_done(self, count: int, ctx: Any) -> None:
        self.events.append(("done", count))


@pytest.mark.parametrize("kind", ["sequential", "threaded", "parallel", "PicklingExecutor"])
def test_callbacks_see_each_attempt_and_failure(kind: str, tmp_path: Path, make_executor: Callable[[str], Any]) -> None:
    """on_node_retry per retried attempt, on_error and on_map_item_failed per failure, under every executor."""
    recorder = Recorder()
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([flaky], backend=engine, callbacks=[recorder])
        # item 0 fails twice then succeeds; item 1 fails every time (4 calls)
        result = pipeline.map(
            {"x": [0, 1], "directory": str(tmp_path), "fails": 2},
            map_over="x",
            on_error="continue",
        )
        assert result.ok
        recorder.events.clear()
        for x in (0, 1):
            (tmp_path / f"calls-{x}").unlink()
        result = pipeline.map(
            {"x": [0, 1], "directory": str(tmp_path), "fails": 99},
            map_over="x",
            on_error="continue",
        )
    assert result.failed_items == [0, 1]
    retries = [e for e in recorder.events if e[0] == "retry"]
    assert sorted(e[3] for e in retries) == [1, 1, 2, 2, 3, 3]
    assert all(e[1:3] == ("flaky", "ConnectionError") and e[4] == 0 for e in retries)
    assert sorted(e for e in recorder.events if e[0] == "error") == [("error", "flaky", "ConnectionError")] * 2
    assert sorted(e for e in recorder.events if e[0] == "item_failed") == [
        ("item_failed", 0, "flaky"),
        ("item_failed", 1, "flaky"),
    ]
    assert sum(e[1] for e in recorder.events if e[0] == "done") == 2  # failed items count as done


class ApiError(Exception):
    """An exception pickle cannot rebuild: its __init__ takes two arguments, its args hold one."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@node(output_name="y", retries=1, retry_on=ApiError, backoff=0)
def flaky_api(x: int, directory: str) -> int:
    if _bump(directory, x) <= 1:
        raise ApiError(f"throttled {x}", 429)
    return x


def test_a_retried_error_that_cannot_travel_back_arrives_as_its_stand_in(
    tmp_path: Path, make_executor: Callable[[str], Any]
) -> None:
    """The retried attempt's exception cannot be unpickled in the caller: on_node_retry gets its
    RemoteError stand-in (naming the type and message), and the result still comes back."""
    seen: list[BaseException] = []

    class Errors(PipelineCallback):
        def on_node_retry(self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: Any) -> None:
            seen.append(error)

    with HypernodesEngine(node_executor=make_executor("parallel"), max_workers=2) as engine:
        pipeline = Pipeline([flaky_api], backend=engine, callbacks=[Errors()])
        assert pipeline.run({"x": 3, "directory": str(tmp_path)}) == {"y": 3}
    assert len(seen) == 1
    assert isinstance(seen[0], RemoteError)
    assert "ApiError" in str(seen[0])
    assert "throttled 3" in str(seen[0])


class FailingRetryHook(Recorder):
    def on_node_retry(self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: Any) -> None:
        raise RuntimeError("hook broke")


@pytest.mark.parametrize("kind", ["parallel", "PicklingExecutor"])
def test_node_tasks_in_worker_processes_report_their_retries(
    kind: str, tmp_path: Path, make_executor: Callable[[str], Any]
) -> None:
    """A node retried in a worker process (node_executor): each attempt reaches on_node_retry in
    the caller when the node's task ends, its error included, also when the node finally fails;
    a hook that raises is named with the node and the map item."""
    recorder = Recorder()
    with HypernodesEngine(node_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([flaky], backend=engine, callbacks=[recorder])
        assert pipeline.run({"x": 5, "directory": str(tmp_path), "fails": 2}) == {"y": 6}
        assert recorder.events == [("retry", "flaky", "ConnectionError", attempt, 0) for attempt in (1, 2)]
        recorder.events.clear()
        result = pipeline.map({"x": [0, 1], "directory": str(tmp_path), "fails": 99}, map_over="x", on_error="continue")
        assert result.failed_items == [0, 1]
        # the items run one after the other (the map level is sequential): each item's three
        # retried attempts, then its error
        per_item = [("retry", "flaky", "ConnectionError", attempt, 0) for attempt in (1, 2, 3)]
        per_item.append(("error", "flaky", "ConnectionError"))
        assert [e for e in recorder.events if e[0] in ("retry", "error")] == per_item * 2
        broken = Pipeline([flaky], backend=engine, callbacks=[FailingRetryHook()])
        (tmp_path / "calls-7").unlink(missing_ok=True)
        with pytest.raises(Exception, match="hook broke") as info:
            broken.map({"x": [7], "directory": str(tmp_path), "fails": 1}, map_over="x")
        assert any("flaky" in note and "map item 0" in note for note in getattr(info.value, "__notes__", []))


def test_progress_counts_failed_items_apart() -> None:
    """The progress bar reaches the total and shows the failed items beside it."""
    pytest.importorskip("tqdm")
    from hypernodes.telemetry import ProgressCallback

    stream = io.StringIO()
    pipeline = Pipeline(NODES, callbacks=[ProgressCallback(file=stream, mode="terminal")])
    result = pipeline.map({"x": list(range(7))}, map_over="x", on_error="continue")
    assert result.failed_items == [2, 5]
    text = stream.getvalue()
    assert "7/7" in text
    assert "failed=2" in text


def test_the_cache_never_stores_a_failure(tmp_path: Path) -> None:
    """A failed item is recomputed on the next call; the good items come from the cache."""
    pipeline = Pipeline([sometimes], cache=MemoryCache())
    inputs = {"x": [0, 1, 2], "directory": str(tmp_path)}
    first = pipeline.map(inputs, map_over="x", on_error="continue")
    assert first.failed_items == [1]
    assert [_calls(tmp_path, x) for x in range(3)] == [1, 1, 1]
    again = pipeline.map(inputs, map_over="x", on_error="continue")
    assert again.failed_items == [1]
    assert again["y"][0] == 0
    assert [_calls(tmp_path, x) for x in range(3)] == [1, 2, 1]  # only the failed item ran again


@node(output_name="y")
def sometimes(x: int, directory: str) -> int:
    _bump(directory, x)
    if x == 1:
        raise ConnectionError("down")
    return x


# -- what travels back from worker processes ---------------------------------------------


class NeedsTwoArgs(Exception):
    """Cannot be rebuilt by pickle: its __init__ needs two arguments, and it holds a lock."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.lock = threading.Lock()


@node(output_name="y")
def raises_unpicklable(x: int) -> int:
    if x == 1:
        raise NeedsTwoArgs("no", 503)
    return x


@pytest.mark.parametrize("kind", ["parallel", "PicklingExecutor"])
def test_failures_travel_back_from_processes_as_data(kind: str, make_executor: Callable[[str], Any]) -> None:
    """An exception pickle cannot rebuild comes back as a RemoteError in the marker, with its type and traceback."""
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        result = Pipeline([raises_unpicklable], backend=engine).map({"x": [0, 1, 2]}, map_over="x", on_error="continue")
    assert result["y"][0] == 0
    assert result["y"][2] == 2
    (failure,) = result.failures
    assert isinstance(failure.error, RemoteError)
    assert failure.type_name.endswith("NeedsTwoArgs")
    assert failure.message == "no"
    assert "raise NeedsTwoArgs" in failure.traceback
    assert "map item 1" in failure.traceback


def test_core_continue_loop_matches_between_cores(core: Any) -> None:
    """The cores' run_batch_continue: markers where dependent, values elsewhere, one marker per failure."""
    result = Pipeline(NODES).map({"x": list(range(6))}, map_over="x", on_error="continue")
    _check_shape(result, 6)
    found = core.find_failures([result["p"], result["tag"], result["sq"]])
    assert [f.item for f in found] == [2, 5, 2, 5]
