"""Callbacks under every executor: which hooks fire, in what order, with what ids and values;
nested pipelines; raising callbacks; the progress and timing callbacks."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from hypernodes import CallbackContext, HypernodesEngine, Pipeline, PipelineCallback, node
from hypernodes.telemetry import ProgressCallback, TimingCallback

from .kinds import EXECUTOR_KINDS, NODE_EXECUTOR_KINDS
from .pipelines import DIAMOND, expected_diamond


class Recorder(PipelineCallback):
    """Records every hook as a tuple, and the most hooks ever running at once."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.depths: list[tuple[str, int, list[str]]] = []
        self._lock = threading.Lock()
        self._inside = 0
        self.max_inside = 0

    def _add(self, *event: Any) -> None:
        with self._lock:
            self._inside += 1
            self.max_inside = max(self.max_inside, self._inside)
        self.events.append(event)
        with self._lock:
            self._inside -= 1

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
        self._add("pipeline_start", pipeline_id, sorted(inputs))
        self.depths.append((pipeline_id, ctx.depth, ctx.hierarchy_path))

    def on_pipeline_end(self, pipeline_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        assert duration >= 0
        self._add("pipeline_end", pipeline_id, sorted(outputs))

    def on_pipeline_error(self, pipeline_id: str, error: BaseException, duration: float, ctx: CallbackContext) -> None:
        self._add("pipeline_error", pipeline_id, type(error).__name__)

    def on_node_start(self, node_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
        self._add("node_start", node_id, inputs)

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        assert duration >= 0
        self._add("node_end", node_id, outputs)

    def on_error(self, node_id: str, error: BaseException, ctx: CallbackContext) -> None:
        self._add("error", node_id, type(error).__name__)

    def on_nested_pipeline_start(self, parent_id: str, child_pipeline_id: str, ctx: CallbackContext) -> None:
        self._add("nested_start", parent_id, child_pipeline_id)

    def on_nested_pipeline_end(
        self, parent_id: str, child_pipeline_id: str, duration: float, ctx: CallbackContext
    ) -> None:
        self._add("nested_end", parent_id, child_pipeline_id)

    def on_map_start(self, total_items: int, ctx: CallbackContext) -> None:
        self._add("map_start", total_items)

    def on_map_item_start(self, item_index: int, ctx: CallbackContext) -> None:
        self._add("item_start", item_index)

    def on_map_item_end(self, item_index: int, duration: float, ctx: CallbackContext) -> None:
        self._add("item_end", item_index)

    def on_map_items_done(self, count: int, ctx: CallbackContext) -> None:
        self._add("items_done", count)

    def on_map_end(self, total_duration: float, ctx: CallbackContext) -> None:
        self._add("map_end")

    def of_item(self, item: int) -> list[tuple[Any, ...]]:
        """The events of map item ``item``, in the order they arrived (from its start to its end)."""
        start = self.events.index(("item_start", item))
        end = self.events.index(("item_end", item))
        mine = self.events[start : end + 1]
        return [e for e in mine if e[0] not in ("item_start", "item_end") or e[1] == item]


NAMES = ["double", "split", "shift", "total"]


def _node_events(events: list[tuple[Any, ...]], x: int) -> None:
    """Each node of the diamond starts (with its inputs) and then ends (with its outputs)."""
    want = expected_diamond(x)
    starts = {e[1]: e[2] for e in events if e[0] == "node_start"}
    ends = {e[1]: e[2] for e in events if e[0] == "node_end"}
    assert set(starts) == set(ends) == set(NAMES)
    assert starts["double"] == {"x": x}
    assert starts["split"] == {"doubled": want["doubled"], "offset": 1}
    assert ends["split"] == {"low": want["low"], "high": want["high"]}
    assert ends["total"] == {"total": want["total"]}
    for name in NAMES:
        assert events.index(("node_start", name, starts[name])) < events.index(("node_end", name, ends[name]))


@pytest.mark.parametrize("map_kind", EXECUTOR_KINDS)
def test_a_map_fires_every_hook_in_order_under_every_executor(
    map_kind: str, make_executor: Callable[[str], Any]
) -> None:
    """Under every map executor: pipeline and map start first and end last; each item's node events
    (with their input and output values) lie between its start and end; the items_done counts add up
    to the items; and no two hooks ever run at once."""
    recorder = Recorder()
    xs = list(range(7))
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine, callbacks=[recorder], name="diamond")
        got = pipeline.map({"x": xs}, "x")
    assert got["total"] == [expected_diamond(x)["total"] for x in xs]
    events = recorder.events
    assert events[:2] == [("pipeline_start", "diamond", ["x"]), ("map_start", len(xs))]
    assert events[-2:] == [("map_end",), ("pipeline_end", "diamond", sorted(got))]
    for x in xs:
        mine = recorder.of_item(x)
        assert mine[0] == ("item_start", x)
        assert mine[-1] == ("item_end", x)
        _node_events([e for e in mine if e[0].startswith("node") and e[2] in _inputs_and_outputs(x)], x)
    assert sum(e[1] for e in events if e[0] == "items_done") == len(xs)
    assert recorder.max_inside == 1


def _inputs_and_outputs(x: int) -> list[dict[str, Any]]:
    want = expected_diamond(x)
    return [
        {"x": x},
        {"doubled": want["doubled"], "offset": 1},
        {"x": x, "step": 10},
        {"low": want["low"], "high": want["high"], "shifted": want["shifted"]},
        {"doubled": want["doubled"]},
        {"low": want["low"], "high": want["high"]},
        {"shifted": want["shifted"]},
        {"total": want["total"]},
    ]


@pytest.mark.parametrize("node_kind", NODE_EXECUTOR_KINDS)
def test_a_run_fires_node_hooks_under_every_node_executor(node_kind: str, make_executor: Callable[[str], Any]) -> None:
    """run() under every node executor: each node's start and end with its values, between the
    pipeline's start and end; upstream-style ids (the node's name) at the root."""
    recorder = Recorder()
    with HypernodesEngine(node_executor=make_executor(node_kind), max_workers=2) as engine:
        pipeline = Pipeline(DIAMOND, backend=engine, callbacks=[recorder])
        assert pipeline.run({"x": 3}) == expected_diamond(3)
    events = recorder.events
    assert events[0] == ("pipeline_start", pipeline.id, ["x"])
    assert events[-1] == ("pipeline_end", pipeline.id, sorted(expected_diamond(3)))
    _node_events(events[1:-1], 3)
    assert recorder.max_inside == 1


def test_pipeline_ids_are_stable_and_named() -> None:
    """A pipeline's id is its name, or derived from its nodes: the same in every process and run."""
    assert Pipeline(DIAMOND, name="text").id == "text"
    unnamed = Pipeline(DIAMOND).id
    assert unnamed == Pipeline(list(DIAMOND)).id
    assert unnamed.startswith("pipeline-")
    assert unnamed != Pipeline(DIAMOND[:1]).id


@node(output_name="doubled")
def _double(x: int) -> int:
    return 2 * x


@node(output_name="shown")
def _show(results: list[int]) -> str:
    return ",".join(map(str, results))


def _nested() -> tuple[Pipeline, Pipeline]:
    inner = Pipeline([_double], name="inner")
    per_item = inner.as_node(input_mapping={"xs": "x"}, output_mapping={"doubled": "results"}, map_over="xs")
    return inner, Pipeline([per_item, _show], name="outer")


@pytest.mark.parametrize("node_kind", ["sequential", "threaded", "async"])
def test_a_nested_map_reports_its_hierarchy(node_kind: str) -> None:
    """A nested pipeline mapping over a list inherits the outer callbacks: its events carry path ids
    (outer/inner, inner/_double), sit inside the outer node's start and end, and see depth 1."""
    recorder = Recorder()
    _, outer = _nested()
    outer = Pipeline(list(outer.nodes), name="outer", callbacks=[recorder], backend=HypernodesEngine(node_kind))
    try:
        assert outer.run({"xs": [1, 2, 3]}) == {"results": [2, 4, 6], "shown": "2,4,6"}
    finally:
        outer.engine.shutdown()  # type: ignore[union-attr]
    kinds = [e[:2] for e in recorder.events]
    start = kinds.index(("node_start", "inner"))
    end = kinds.index(("node_end", "inner"))
    inside = recorder.events[start + 1 : end]
    assert inside[0] == ("nested_start", "outer", "outer/inner")
    assert inside[1] == ("pipeline_start", "outer/inner", ["x"])
    assert inside[2] == ("map_start", 3)
    assert [e for e in inside if e[0] == "node_end"] == [
        ("node_end", "inner/_double", {"doubled": 2 * x}) for x in (1, 2, 3)
    ]
    assert inside[-2:] == [("pipeline_end", "outer/inner", ["doubled"]), ("nested_end", "outer", "outer/inner")]
    assert ("outer/inner", 1, ["outer", "outer/inner"]) in recorder.depths
    assert ("outer", 0, ["outer"]) in recorder.depths


@pytest.mark.parametrize("map_kind", ["parallel", "PicklingExecutor"])
def test_nested_pipelines_in_worker_processes_report_back(map_kind: str, make_executor: Callable[[str], Any]) -> None:
    """An outer map on processes whose items run a nested pipeline: the nested node events are
    recorded in the workers and arrive, with their path ids, inside their item."""
    recorder = Recorder()
    inner = Pipeline([_double], name="inner")
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        outer = Pipeline([inner], name="outer", backend=engine, callbacks=[recorder])
        assert outer.map({"x": [1, 2, 3]}, "x") == {"doubled": [2, 4, 6]}
    for x in (1, 2, 3):
        mine = recorder.of_item(x - 1)
        assert ("nested_start", "outer", "outer/inner") in mine
        assert ("node_end", "inner/_double", {"doubled": 2 * x}) in mine
        assert mine.index(("node_start", "inner", {"x": x})) < mine.index(
            ("node_end", "inner/_double", {"doubled": 2 * x})
        )


@node(output_name="y")
def _fragile(x: int) -> int:
    if x == 2:
        raise ValueError("two")
    return x


@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "parallel"])
def test_a_failing_item_reaches_on_error_and_on_pipeline_error(
    map_kind: str, make_executor: Callable[[str], Any]
) -> None:
    """A node's error reaches on_error with its node id, then on_pipeline_error; no on_pipeline_end."""
    recorder = Recorder()
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline([_fragile], backend=engine, callbacks=[recorder], name="p")
        with pytest.raises(ValueError, match="two"):
            pipeline.map({"x": [0, 1, 2, 3]}, "x")
    assert ("error", "_fragile", "ValueError") in recorder.events
    assert recorder.events[-1] == ("pipeline_error", "p", "ValueError")
    assert not [e for e in recorder.events if e[0] in ("pipeline_end", "map_end")]


class Raising(PipelineCallback):
    """Raises from on_node_end for item 2; counts on_error calls."""

    def __init__(self) -> None:
        self.errors = 0

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        if outputs.get("y") == 2:
            raise RuntimeError("callback broke")

    def on_error(self, node_id: str, error: BaseException, ctx: CallbackContext) -> None:
        self.errors += 1


@node(output_name="y")
def _same(x: int) -> int:
    return x


@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "async", "parallel", "PicklingExecutor"])
def test_a_raising_callback_fails_the_call_with_its_own_exception(
    map_kind: str, make_executor: Callable[[str], Any]
) -> None:
    """A hook that raises fails the call with that exception, noted with the hook, the node and the
    item; on_error is not called for it; the engine (and its pool) works afterwards."""
    callback = Raising()
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline([_same], backend=engine, callbacks=[callback])
        with pytest.raises(RuntimeError, match="callback broke") as info:
            pipeline.map({"x": list(range(6))}, "x")
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "raised by callback Raising.on_node_end (node `_same`, map item 2)" in notes
        assert callback.errors == 0
        assert Pipeline([_same], backend=engine).map({"x": [5, 6]}, "x") == {"y": [5, 6]}


def test_two_threads_calling_one_pipeline_get_separate_contexts() -> None:
    """Concurrent calls of the same pipeline each get their own CallbackContext."""
    seen: dict[int, list[CallbackContext]] = {}  # the contexts themselves: ids of freed ones are reused
    lock = threading.Lock()

    class Contexts(PipelineCallback):
        def on_node_start(self, node_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
            with lock:
                seen.setdefault(inputs["x"], []).append(ctx)

    pipeline = Pipeline([_same], callbacks=[Contexts()])
    barrier = threading.Barrier(2)

    def call(x: int) -> None:
        barrier.wait(timeout=10)
        pipeline.run({"x": x})

    threads = [threading.Thread(target=call, args=(x,)) for x in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(seen[1]) == len(seen[2]) == 1
    assert seen[1][0] is not seen[2][0]


@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "parallel"])
def test_timing_callback_counts_calls_per_node(map_kind: str, make_executor: Callable[[str], Any]) -> None:
    """TimingCallback sums calls and time per node across a map's items (from worker processes too)."""
    timing = TimingCallback()
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        Pipeline(DIAMOND, backend=engine, callbacks=[timing]).map({"x": list(range(5))}, "x")
    timings = timing.timings
    assert set(timings) == set(NAMES)
    assert all(t.calls == 5 and t.total >= t.max >= 0 and t.mean <= t.max for t in timings.values())
    report = timing.report()
    assert all(name in report for name in NAMES)
    assert "calls" in report.splitlines()[0]
    timing.reset()
    assert timing.timings == {}


class Bars(ProgressCallback):
    """A ProgressCallback that keeps every bar it opened, to read their final state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bars: list[Any] = []

    def _open(self, ctx: CallbackContext, total: int, unit: str) -> Any:
        bar = super()._open(ctx, total, unit)
        self.bars.append(bar)
        return bar


@pytest.mark.parametrize("mode", ["terminal", "log"])
@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "parallel"])
def test_progress_bars_count_every_item_and_close(
    mode: str, map_kind: str, make_executor: Callable[[str], Any]
) -> None:
    """A map's bar ends at total/total and is closed; a run's bar counts nodes; log mode writes whole
    lines, a handful for a map of 20,000 items, not one per item."""
    out = io.StringIO()
    bars = Bars(out, mode=mode, log_interval=60)
    with HypernodesEngine(map_executor=make_executor(map_kind), max_workers=2) as engine:
        pipeline = Pipeline([_same], backend=engine, callbacks=[bars], name="tiny")
        pipeline.map({"x": list(range(20_000))}, "x")
        pipeline.run({"x": 1})
    (map_bar, run_bar) = bars.bars
    assert (map_bar.n, map_bar.total) == (20_000, 20_000)
    assert (run_bar.n, run_bar.total) == (1, 1)
    assert map_bar.disable
    assert run_bar.disable
    text = out.getvalue()
    assert "20000/20000" in text
    if mode == "log":
        lines = [line for line in text.splitlines() if line.strip()]
        assert "\r" not in text
        assert len(lines) <= 6


def test_a_failed_map_closes_its_bar() -> None:
    """When a map fails its bar is closed where it stopped."""
    bars = Bars(io.StringIO(), mode="terminal")
    with pytest.raises(ValueError, match="two"):
        Pipeline([_fragile], callbacks=[bars]).map({"x": [0, 1, 2, 3]}, "x")
    (bar,) = bars.bars
    assert bar.disable
    assert bar.n < 4


def test_progress_without_tqdm_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tqdm, ProgressCallback() fails at once naming the extra to install."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install 'hypernodes\[progress\]'"):
        ProgressCallback()


def test_bad_callbacks_are_refused_at_construction() -> None:
    """callbacks= takes PipelineCallback instances: a class or another object is refused, by name."""
    with pytest.raises(TypeError, match=r"pass an instance: Recorder\(\)"):
        Pipeline([_same], callbacks=[Recorder])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="takes PipelineCallback instances"):
        Pipeline([_same], callbacks=[object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="a list of PipelineCallback"):
        Pipeline([_same], callbacks=Recorder())  # type: ignore[arg-type]


def test_no_callbacks_means_no_observer() -> None:
    """A pipeline without callbacks (and not inside an observed call) runs without an observer:
    the cores' plain loops (nothing is paid for the seam)."""
    seen: list[Any] = []

    class Spy(HypernodesEngine):
        def run_call(self, call: Any) -> dict[str, Any]:
            seen.append(call.observer)
            return super().run_call(call)

    with Spy() as engine:
        assert Pipeline([_same], backend=engine).run({"x": 1}) == {"y": 1}
        assert all(observer is None for observer in seen)  # a first call of its shape is prepared, not observed
        seen.clear()
        Pipeline([_same], backend=engine, callbacks=[Recorder()]).run({"x": 1})
        assert seen
        assert seen[0] is not None
