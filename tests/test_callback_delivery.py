"""Callbacks get what they are promised under every executor, and mistakes in them are not silent.

Nested pipelines' hooks fire under the async executor too; a node's timing is its call,
not the time it waited for a thread; a hook's own exception fails the call even under
``on_error="continue"``; and a callback whose hook is misspelt or takes the wrong
arguments is refused when it is made.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from hypernodes import HypernodesEngine, Pipeline, PipelineCallback, node
from hypernodes.telemetry import TimingCallback


@node(output_name="b")
def inner_step(a: int) -> int:
    return a + 1


@node(output_name="a")
async def outer_step(x: int) -> int:
    await asyncio.sleep(0)
    return x


class Nesting(PipelineCallback):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_nested_pipeline_start(self, parent_id: str, child_pipeline_id: str, ctx: Any) -> None:
        self.events.append(("nested_start", child_pipeline_id))

    def on_nested_pipeline_end(self, parent_id: str, child_pipeline_id: str, duration: float, ctx: Any) -> None:
        self.events.append(("nested_end", child_pipeline_id))

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: Any) -> None:
        self.events.append(("start", pipeline_id))


@pytest.mark.parametrize(
    "engine_options",
    [{"map_executor": "async"}, {"node_executor": "async"}, {"map_executor": "async", "node_executor": "async"}],
    ids=["async-map", "async-nodes", "async-both"],
)
def test_nested_pipelines_fire_their_hooks_under_the_async_executor(engine_options: dict[str, Any]) -> None:
    """Each item's nested pipeline reports its start and end and its own pipeline start."""
    inner = Pipeline([inner_step], name="inner")
    recorder = Nesting()
    with HypernodesEngine(**engine_options) as engine:
        outer = Pipeline([outer_step, inner.as_node()], backend=engine, callbacks=[recorder], name="outer")
        assert outer.map({"x": list(range(5))}, map_over="x")["b"] == [1, 2, 3, 4, 5]
    assert recorder.events.count(("nested_start", "outer/inner")) == 5
    assert recorder.events.count(("nested_end", "outer/inner")) == 5
    assert recorder.events.count(("start", "outer/inner")) == 5


@node(output_name="s")
def slow_step(a: int) -> int:
    time.sleep(0.02)
    return a


@node(output_name="t")
def no_op(s: int) -> int:
    return s


def test_timing_on_an_async_map_times_the_call_not_the_wait_for_a_thread() -> None:
    """Sync nodes offloaded from an async map are timed in their thread: a no-op is near zero
    however long it waited behind the slow node's calls."""
    timing = TimingCallback()
    with HypernodesEngine(map_executor="async") as engine:
        Pipeline([outer_step, slow_step, no_op], backend=engine, callbacks=[timing]).map(
            {"x": list(range(100))}, map_over="x"
        )
    rows = timing.timings
    # generous: 100 no-op calls take microseconds; their waits for a thread took far longer
    assert rows["no_op"].total < min(0.05, rows["slow_step"].total)


@node(output_name="y", retries=1, retry_on=ValueError, backoff=0)
def fails_once(x: int) -> int:
    if not fails_once_calls.get(x):
        fails_once_calls[x] = 1
        raise ValueError(f"first call of {x}")
    return x


fails_once_calls: dict[int, int] = {}


class BrokenRetryHook(PipelineCallback):
    def on_node_retry(self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: Any) -> None:
        raise RuntimeError("the retry hook broke")


@pytest.mark.parametrize("kind", ["sequential", "threaded", "async"])
def test_a_raising_retry_hook_fails_the_call_under_continue(kind: str) -> None:
    """A callback's exception is never kept as an item's failure: on_node_retry raising fails the map."""
    fails_once_calls.clear()
    with HypernodesEngine(map_executor=kind) as engine:
        pipeline = Pipeline([fails_once], backend=engine, callbacks=[BrokenRetryHook()])
        with pytest.raises(RuntimeError, match="the retry hook broke"):
            pipeline.map({"x": [0, 1]}, map_over="x", on_error="continue")


class Progress(PipelineCallback):
    node_events_in_maps = False

    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_map_items_done(self, count: int, ctx: Any) -> None:
        self.counts.append(count)


@node(output_name="y")
def double(x: int) -> int:
    return 2 * x


def test_progress_on_a_process_map_moves_every_few_percent(make_executor: Any) -> None:
    """A process map with a listening callback reports finished items in steps of a few percent
    of the map, not once per worker's share."""
    progress = Progress()
    with HypernodesEngine(map_executor=make_executor("parallel"), max_workers=2) as engine:
        result = Pipeline([double], backend=engine, callbacks=[progress]).map({"x": list(range(320))}, map_over="x")
    assert result["y"] == [2 * x for x in range(320)]
    assert sum(progress.counts) == 320
    assert max(progress.counts) <= 320 * 0.04


def test_a_misspelt_hook_is_refused_naming_the_closest_hook() -> None:
    """A public on_* method that is no hook fails when the class is defined, naming the closest hook."""
    with pytest.raises(TypeError, match=r"on_node_finish is not a callback hook.*Did you mean `on_node_end`"):

        class Misspelt(PipelineCallback):
            def on_node_finish(self, node_id: str, outputs: Any, duration: float, ctx: Any) -> None:
                pass


def test_a_hook_with_the_wrong_arguments_is_refused() -> None:
    """A hook that cannot take the hook's positional arguments fails when the class is defined."""
    with pytest.raises(TypeError, match=r"on_node_end.*cannot take the hook's arguments"):

        class TooFew(PipelineCallback):
            def on_node_end(self, node_id: str, outputs: Any, ctx: Any) -> None:
                pass

    class Flexible(PipelineCallback):  # *args, defaults, a staticmethod: all can take them
        def on_node_end(self, *args: Any) -> None:
            pass

        def on_node_start(self, node_id: str, inputs: Any, ctx: Any, extra: int = 0) -> None:
            pass

        @staticmethod
        def on_map_start(total_items: int, ctx: Any) -> None:
            pass

        def _on_private_helper(self) -> None:
            pass

    Flexible()


def test_switch_options_take_only_bools() -> None:
    """cache="no" (truthy) and friends are refused with a TypeError naming the option."""
    from hypernodes import NodeDefinitionError

    with pytest.raises(NodeDefinitionError, match=r"cache must be True or False, got str 'no'"):

        @node(output_name="y", cache="no")  # type: ignore[call-overload]
        def cached(x: int) -> int:
            return x

    with pytest.raises(TypeError, match=r"node_values must be True or False"):

        class Flag(PipelineCallback):
            node_values = 0  # type: ignore[assignment]


@node(output_name="y", retries=1, retry_on=ConnectionError, backoff=lambda attempt: _entered_backoff() or 30.0)
def retries_slowly(x: int) -> int:
    if x == 0:
        BACKING_OFF.wait(10)  # fail only once item 1 sleeps in its backoff
        raise KeyError("item 0 fails the map")
    raise ConnectionError("item 1 is retried after 30 s")


BACKING_OFF = threading.Event()


def _entered_backoff() -> None:
    BACKING_OFF.set()


def test_a_backoff_sleep_wakes_when_its_call_fails() -> None:
    """A threaded map that fails while another item sleeps in a 30 s backoff: the sleeper gives up at
    once, so the engine's shutdown does not wait for the backoff."""
    BACKING_OFF.clear()
    started = time.monotonic()
    with HypernodesEngine(map_executor="threaded", max_workers=2) as engine:
        with pytest.raises(KeyError, match="item 0 fails the map"):
            Pipeline([retries_slowly], backend=engine).map({"x": [0, 1]}, map_over="x")
        assert BACKING_OFF.is_set()
    assert time.monotonic() - started < 15  # generous: the backoff alone is 30 s


class Counting(PipelineCallback):
    """Counts node and pipeline hooks by id (node_values off: no values travel)."""

    node_values = False

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def _count(self, hook: str, name: str) -> None:
        self.counts[(hook, name)] = self.counts.get((hook, name), 0) + 1

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: Any) -> None:
        self._count("start", pipeline_id)

    def on_pipeline_end(self, pipeline_id: str, outputs: dict[str, Any], duration: float, ctx: Any) -> None:
        self._count("end", pipeline_id)

    def on_node_start(self, node_id: str, inputs: dict[str, Any], ctx: Any) -> None:
        self._count("node_start", node_id)

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: Any) -> None:
        self._count("node_end", node_id)

    def on_error(self, node_id: str, error: BaseException, ctx: Any) -> None:
        self._count("error", node_id)


@node(output_name="b")
def picky_step(a: int) -> int:
    if a == 2:
        raise ValueError("two")
    return a + 1


def test_a_nested_pipeline_in_a_process_node_task_reports_its_events(make_executor: Any) -> None:
    """Under a process node executor, the pipeline nested in a node task (run in a worker process)
    reports its pipeline and node hooks to the caller's callbacks, for run() and for each map item,
    and its node's error too when it fails."""
    inner = Pipeline([picky_step], name="inner")
    counter = Counting()
    with HypernodesEngine(node_executor=make_executor("parallel"), max_workers=2) as engine:
        outer = Pipeline([outer_step, inner.as_node()], backend=engine, callbacks=[counter], name="outer")
        assert outer.run({"x": 1}) == {"a": 1, "b": 2}
        assert outer.map({"x": [0, 1, 3]}, map_over="x")["b"] == [1, 2, 4]
        with pytest.raises(ValueError, match="two"):
            outer.run({"x": 2})
    counts = counter.counts
    assert counts[("start", "outer/inner")] == 5
    assert counts[("end", "outer/inner")] == 4
    assert counts[("node_start", "inner/picky_step")] == counts[("node_end", "inner/picky_step")] + 1 == 5
    assert counts[("error", "inner/picky_step")] == 1
    assert counts[("node_end", "inner")] == 4


@node(output_name="f")
def make_adder(a: int) -> Any:
    return lambda v: v + a  # plain pickle cannot carry it


@node(output_name="b")
def use_adder(f: Any, a: int) -> int:
    return int(f(a))


class ValueReader(Counting):
    node_values = True


def test_nested_events_that_cannot_travel_back_are_dropped_with_a_warning(make_executor: Any) -> None:
    """A node task's nested events holding a value pickle cannot carry (a callback reads values)
    do not fail the node: its result comes back, the events are dropped with a RuntimeWarning."""
    inner = Pipeline([make_adder, use_adder], name="inner")
    reader = ValueReader()
    with HypernodesEngine(node_executor=make_executor("parallel"), max_workers=2) as engine:
        outer = Pipeline([outer_step, inner.as_node()], backend=engine, callbacks=[reader], name="outer")
        with pytest.warns(RuntimeWarning, match="pipeline nested in node `inner`.*cannot be pickled"):
            assert outer.run({"x": 3})["b"] == 6
    assert ("start", "outer/inner") not in reader.counts
    assert reader.counts[("node_end", "inner")] == 1
