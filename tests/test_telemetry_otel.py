"""TelemetryCallback on OpenTelemetry: the span tree (names, parents, attributes, status) under
every executor, parented to the caller's span; failures, cache hits and retries; the item index
callbacks see; the waterfall figure; the notebook-era example; the errors naming the extra."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("plotly")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hypernodes import CallbackContext, DiskCache, HypernodesEngine, MemoryCache, Pipeline, PipelineCallback, node
from hypernodes.telemetry import TelemetryCallback
from hypernodes.telemetry.waterfall import COLORS

from .kinds import make as make_kind

KINDS = ["sequential", "threaded", "async", "parallel", "PicklingExecutor", "dask"]
ONE_CORE = pytest.mark.parametrize("core", ["python"], indirect=True)
"""The callback reads hooks, which both cores feed alike (the span tree test runs on both):
one core keeps the time down."""


@pytest.fixture(scope="module")
def otel() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """One SDK provider with an in-memory exporter, passed explicitly (the global one can be set only once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def exporter(otel: tuple[TracerProvider, InMemorySpanExporter]) -> InMemorySpanExporter:
    otel[1].clear()
    return otel[1]


@pytest.fixture
def telemetry(otel: tuple[TracerProvider, InMemorySpanExporter]) -> TelemetryCallback:
    return TelemetryCallback(tracer_provider=otel[0])


def _executor(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "dask":
        return request.getfixturevalue("dask_client").get_executor()
    return make_kind(kind)


@pytest.fixture
def engine_for(request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[Any] = []

    def make(kind: str, level: str = "map") -> HypernodesEngine:
        executor = _executor(kind, request)
        engine = HypernodesEngine(**{f"{level}_executor": executor})
        made.append((engine, executor))
        return engine

    yield make
    for engine, executor in made:
        engine.shutdown()
        if not isinstance(executor, str):
            executor.shutdown(wait=True)


@node(output_name="y")
def inc(x: int) -> int:
    return x + 1


@node(output_name="z")
def double(y: int) -> int:
    return y * 2


@node(output_name="w")
def total(y: int, z: int) -> int:
    return y + z


INNER = Pipeline([double], name="inner")


def _tree(spans: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def _parent(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return by_id.get(span.parent.span_id) if span.parent is not None else None


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _within(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.start_time is not None
    assert child.end_time is not None
    assert parent.start_time is not None
    assert parent.end_time is not None
    return parent.start_time <= child.start_time <= child.end_time <= parent.end_time


@pytest.mark.parametrize("kind", KINDS)
def test_map_span_tree_under_every_executor(
    kind: str, engine_for: Any, otel: Any, exporter: InMemorySpanExporter, telemetry: TelemetryCallback
) -> None:
    """A map under an outer span: its call span is the outer span's child; one map_item span per
    item under it; each item's node spans under the item, with the item index; the nested
    pipeline's call span under its node's span and its node under that; each child lies within
    its parent's start and end, worker processes' spans too (recorded here from their events)."""
    pipeline = Pipeline([inc, INNER, total], callbacks=[telemetry], backend=engine_for(kind), name="outer")
    with otel[0].get_tracer("test").start_as_current_span("request") as request:
        assert pipeline.map(inputs={"x": [1, 2, 3]}, map_over="x") == {"y": [2, 3, 4], "z": [4, 6, 8], "w": [6, 9, 12]}
    spans = exporter.get_finished_spans()
    by_id = _tree(spans)
    (call,) = _named(spans, "pipeline:outer")
    assert call.parent is not None
    assert call.parent.span_id == request.get_span_context().span_id
    assert {s.context.trace_id for s in spans} == {request.get_span_context().trace_id}
    assert call.attributes is not None
    assert call.attributes["hypernodes.kind"] == "map"
    assert call.attributes["hypernodes.total_items"] == 3
    items = _named(spans, "map_item")
    assert sorted(s.attributes["hypernodes.item_index"] for s in items) == [0, 1, 2]  # type: ignore[index]
    assert all(_parent(s, by_id) is call and _within(s, call) for s in items)
    for item in items:
        index = item.attributes["hypernodes.item_index"]  # type: ignore[index]
        nodes = [s for s in spans if _parent(s, by_id) is item]
        assert sorted(s.name for s in nodes) == ["node:inc", "node:inner", "node:total"]
        assert all(s.attributes["hypernodes.item_index"] == index for s in nodes)  # type: ignore[index]
        assert all(_within(s, item) and s.attributes["hypernodes.status"] == "ran" for s in nodes)  # type: ignore[index]
        (nested_node,) = (s for s in nodes if s.name == "node:inner")
        (nested_call,) = (s for s in spans if _parent(s, by_id) is nested_node)
        assert nested_call.name == "pipeline:outer/inner"
        assert _within(nested_call, nested_node)
        (inner_node,) = (s for s in spans if _parent(s, by_id) is nested_call)
        assert inner_node.name == "node:inner/double"
        assert _within(inner_node, nested_call)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    workers = {s.attributes["hypernodes.worker"].split(":")[0] for s in spans if s.name == "node:inc"}  # type: ignore[index, union-attr]
    if kind in ("parallel", "dask"):
        assert str(os.getpid()) not in workers
    else:
        assert workers == {str(os.getpid())}


@pytest.mark.parametrize("kind", ["sequential", "threaded", "async", "parallel", "dask"])
def test_run_span_tree_under_every_node_executor(
    kind: str, engine_for: Any, otel: Any, exporter: InMemorySpanExporter, telemetry: TelemetryCallback
) -> None:
    """run() under an outer span: the call span under it, one span per node under the call
    (no item index), the nested pipeline's call under its node, its node under that (in a
    worker process for "parallel" and Dask: its events come back with the node task's result)."""
    pipeline = Pipeline([inc, INNER, total], callbacks=[telemetry], backend=engine_for(kind, "node"), name="outer")
    with otel[0].get_tracer("test").start_as_current_span("request") as request:
        assert pipeline.run(inputs={"x": 1}) == {"y": 2, "z": 4, "w": 6}
    spans = exporter.get_finished_spans()
    by_id = _tree(spans)
    (call,) = _named(spans, "pipeline:outer")
    assert call.parent is not None
    assert call.parent.span_id == request.get_span_context().span_id
    nodes = [s for s in spans if _parent(s, by_id) is call]
    assert sorted(s.name for s in nodes) == ["node:inc", "node:inner", "node:total"]
    assert all("hypernodes.item_index" not in s.attributes for s in nodes)  # type: ignore[operator]
    (nested,) = _named(spans, "pipeline:outer/inner")  # a node task in a worker process sends them back
    (nested_node,) = _named(spans, "node:inner")
    assert _parent(nested, by_id) is nested_node
    assert _within(nested, nested_node)
    (inner_node,) = _named(spans, "node:inner/double")
    assert _parent(inner_node, by_id) is nested
    assert _within(inner_node, nested)
    if kind in ("parallel", "dask"):
        assert inner_node.attributes["hypernodes.worker"].split(":")[0] != str(os.getpid())  # type: ignore[index, union-attr]
    (first,) = _named(spans, "node:inc")
    (last,) = _named(spans, "node:total")
    assert first.end_time <= last.start_time  # type: ignore[operator]


@node(output_name="y")
def fragile(x: int) -> int:
    if x == 2:
        raise ValueError("two is bad")
    return x + 1


@ONE_CORE
@pytest.mark.parametrize("kind", ["sequential", "threaded", "parallel"])
def test_failures_are_error_spans_with_the_exception(
    kind: str, engine_for: Any, exporter: InMemorySpanExporter, telemetry: TelemetryCallback
) -> None:
    """Under on_error="continue" the failed item's node span and item span have status ERROR
    and record the exception; the others and the call are fine. Under "raise" the call's
    span is an error too."""
    pipeline = Pipeline([fragile, double], callbacks=[telemetry], backend=engine_for(kind), name="f")
    pipeline.map(inputs={"x": [1, 2, 3]}, map_over="x", on_error="continue")
    spans = exporter.get_finished_spans()
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert sorted(s.name for s in failed) == ["map_item", "node:fragile"]
    assert all(s.attributes["hypernodes.item_index"] == 1 for s in failed)  # type: ignore[index]
    (node_span,) = (s for s in failed if s.name == "node:fragile")
    assert node_span.attributes["hypernodes.status"] == "failed"  # type: ignore[index]
    (event,) = node_span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert "two is bad" in (node_span.status.description or "")
    assert len(_named(spans, "node:double")) == 2

    exporter.clear()
    with pytest.raises(ValueError, match="two is bad"):
        pipeline.run(inputs={"x": 2})
    spans = exporter.get_finished_spans()
    assert {s.name: s.status.status_code for s in spans} == {
        "node:fragile": StatusCode.ERROR,
        "pipeline:f": StatusCode.ERROR,
    }


@ONE_CORE
@pytest.mark.parametrize("kind", ["sequential", "threaded", "parallel"])
def test_cache_hits_are_cached_spans(
    kind: str, engine_for: Any, exporter: InMemorySpanExporter, telemetry: TelemetryCallback, tmp_path: Path
) -> None:
    """A second map over cached items: every item span and node span says cached (attribute,
    status, the cache's signature), none says ran."""
    cache = DiskCache(str(tmp_path / "cache"))  # shared with worker processes, as a MemoryCache is not
    pipeline = Pipeline([inc, double], callbacks=[telemetry], cache=cache, backend=engine_for(kind), name="c")
    pipeline.map(inputs={"x": [1, 2]}, map_over="x")
    exporter.clear()
    pipeline.map(inputs={"x": [1, 2]}, map_over="x")
    spans = [s for s in exporter.get_finished_spans() if s.name != "pipeline:c"]
    assert spans
    assert {s.attributes["hypernodes.status"] for s in spans} == {"cached"}  # type: ignore[index]
    assert all(s.attributes["hypernodes.cached"] is True for s in spans)  # type: ignore[index]
    assert all(s.attributes["hypernodes.cache_signature"] for s in spans if s.name == "map_item")  # type: ignore[index]
    assert {s.name for s in spans} <= {"map_item", "node:inc", "node:double"}


@node(output_name="y", retries=2, retry_on=OSError, backoff=0.0)
def flaky(x: int, marks: str) -> int:
    mark = Path(marks) / f"tried-{x}"
    if not mark.exists():  # the first attempt of each item fails, in whatever process runs it
        mark.touch()
        raise OSError(f"flaky {x}")
    return x


@ONE_CORE
@pytest.mark.parametrize("kind", ["sequential", "threaded", "parallel"])
def test_retries_are_counted_on_the_node_span(
    kind: str, engine_for: Any, exporter: InMemorySpanExporter, telemetry: TelemetryCallback, tmp_path: Path
) -> None:
    """Each item's retried node span says 2 attempts, 1 retry, status "retried", and holds one
    "retry" event naming the exception; its item span says retried too."""
    pipeline = Pipeline([flaky], callbacks=[telemetry], backend=engine_for(kind), name="r")
    assert pipeline.map(inputs={"x": [1, 2, 3], "marks": str(tmp_path)}, map_over="x") == {"y": [1, 2, 3]}
    spans = exporter.get_finished_spans()
    nodes = _named(spans, "node:flaky")
    assert len(nodes) == 3
    for span in nodes:
        attributes = span.attributes or {}
        assert (attributes["hypernodes.attempts"], attributes["hypernodes.retries"]) == (2, 1)
        assert attributes["hypernodes.status"] == "retried"
        (event,) = span.events
        assert event.name == "retry"
        assert event.attributes["exception.type"] == "OSError"
    assert {s.attributes["hypernodes.status"] for s in _named(spans, "map_item")} == {"retried"}  # type: ignore[index]


@ONE_CORE
def test_trace_map_items_false_puts_nodes_under_the_call(otel: Any, exporter: InMemorySpanExporter) -> None:
    """trace_map_items=False exports no item spans: node spans sit under the call's span, still
    carrying their item index; the waterfall still has the items."""
    telemetry = TelemetryCallback(trace_map_items=False, tracer_provider=otel[0])
    Pipeline([inc], callbacks=[telemetry], name="m").map(inputs={"x": [1, 2]}, map_over="x")
    spans = exporter.get_finished_spans()
    (call,) = _named(spans, "pipeline:m")
    nodes = _named(spans, "node:inc")
    assert not _named(spans, "map_item")
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in nodes)
    assert sorted(s.attributes["hypernodes.item_index"] for s in nodes) == [0, 1]  # type: ignore[index]
    assert [r.kind for r in telemetry.spans].count("map_item") == 2


class ItemWatcher(PipelineCallback):
    node_values = False

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, tuple[int | None, ...], int]] = []
        self.lock = threading.Lock()

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        with self.lock:
            self.seen.append((node_id, ctx.item_index, ctx.item_indices, ctx.event_worker[0]))


@ONE_CORE
@pytest.mark.parametrize("kind", ["threaded", "parallel"])
def test_node_hooks_know_their_item(kind: str, engine_for: Any) -> None:
    """ctx.item_index names the map item of each node event (a nested pipeline's node: the outer
    item), ctx.item_indices the item per pipeline level, ctx.event_worker where it ran."""
    watcher = ItemWatcher()
    pipeline = Pipeline([inc, INNER], callbacks=[watcher], backend=engine_for(kind), name="o")
    result = pipeline.map(inputs={"x": [10, 20, 30]}, map_over="x")
    by_item = {n: i for i, n in enumerate(result["z"])}
    assert len(watcher.seen) == 9
    for node_id, item, items, pid in watcher.seen:
        assert item in (0, 1, 2)
        assert items == ((item,) if node_id in ("inc", "inner") else (item, None))
        assert (pid != os.getpid()) == (kind == "parallel")
    assert sorted(by_item.values()) == [0, 1, 2]


@ONE_CORE
def test_waterfall_rows_bars_and_colours(telemetry: TelemetryCallback) -> None:
    """The figure has one Bar trace per status, coloured by status; rows follow the tree (the
    call, each item, its nodes), each bar starts at its span's real start (ms since the first),
    nodes of an item in order; a cached node is green, a failed one red, a retried one orange."""
    pipeline = Pipeline([fragile, double], callbacks=[telemetry], cache=MemoryCache(), name="w")
    pipeline.map(inputs={"x": [1]}, map_over="x")
    telemetry.reset()
    pipeline.map(inputs={"x": [1, 2, 3]}, map_over="x", on_error="continue")
    fig = telemetry.get_waterfall_chart()
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"ran", "cached", "failed"}
    for name, trace in traces.items():
        assert trace.orientation == "h"
        assert trace.marker.color == COLORS[name]
    rows = list(fig.layout.yaxis.categoryarray)
    assert rows[:4] == ["w", "  item 0", "    fragile", "    double"]
    assert [r.strip("\u200b ") for r in rows] == [
        "w",
        "item 0",
        "fragile",
        "double",
        "item 1",
        "fragile",
        "item 2",
        "fragile",
        "double",
    ]
    bars = [(y, base, x, t.name) for t in fig.data for y, base, x in zip(t.y, t.base, t.x)]
    assert {(y.strip("\u200b "), name) for y, _, _, name in bars if name != "ran"} == {
        ("item 0", "cached"), ("fragile", "cached"), ("double", "cached"), ("item 1", "failed"), ("fragile", "failed")
    }  # fmt: skip
    start = {y: base for y, base, _, _ in bars}
    assert start["w"] == 0.0
    assert start["    fragile\u200b\u200b"] <= start["    double\u200b"]  # item 2: fragile then double
    assert start["  item 0"] <= start["  item 1"] <= start["  item 2"]
    assert all(x > 0 for _, _, x, _ in bars)  # zero-length cache hits are drawn thin, not hidden


@ONE_CORE
def test_waterfall_lanes_and_aggregation(engine_for: Any, telemetry: TelemetryCallback) -> None:
    """Beyond max_item_rows a map draws one row per lane (thread), each item a bar on it; beyond
    max_bars items are grouped, fewer bars covering the same span of time."""
    pipeline = Pipeline([inc, double], callbacks=[telemetry], backend=engine_for("threaded"), name="big")
    pipeline.map(inputs={"x": list(range(60))}, map_over="x")
    fig = telemetry.get_waterfall_chart(max_item_rows=20)
    rows = list(fig.layout.yaxis.categoryarray)
    assert rows[0] == "big"
    assert all("lane" in r and "items" in r for r in rows[1:])
    assert sum(int(r.rsplit(": ", 1)[1].split()[0]) for r in rows[1:]) == 60
    assert sum(len(t.y) for t in fig.data) == 61
    grouped = telemetry.get_waterfall_chart(max_item_rows=20, max_bars=4)
    assert 1 + len(rows) - 1 <= sum(len(t.y) for t in grouped.data) <= 1 + 4 + len(rows)
    with pytest.raises(ValueError, match="max_bars"):
        telemetry.get_waterfall_chart(max_bars=0)


@ONE_CORE
def test_waterfall_written_to_html_and_png_needs_kaleido(
    telemetry: TelemetryCallback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """save_waterfall_chart writes HTML with plotly alone; an image without kaleido is an
    ImportError naming kaleido; an unknown extension a ValueError listing the allowed ones."""
    Pipeline([inc], callbacks=[telemetry]).run(inputs={"x": 1})
    out = telemetry.save_waterfall_chart(tmp_path / "chart.html")
    assert out.exists()
    assert "plotly" in out.read_text()[:100_000].lower()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a))
    with pytest.raises(ImportError, match="pip install kaleido"):
        telemetry.save_waterfall_chart(tmp_path / "chart.png")
    with pytest.raises(ValueError, match=r"\.html"):
        telemetry.save_waterfall_chart(tmp_path / "chart.txt")


@ONE_CORE
def test_without_opentelemetry_or_plotly_the_error_names_the_extra(
    telemetry: TelemetryCallback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither OpenTelemetry nor logfire installed: the constructor says to install
    hypernodes[telemetry]; no plotly: the chart says so too. Bad arguments are TypeErrors."""
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ImportError, match=r"pip install 'hypernodes\[telemetry\]'"):
        telemetry.get_waterfall_chart()
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'hypernodes\[telemetry\]'"):
        TelemetryCallback()
    monkeypatch.undo()
    with pytest.raises(TypeError, match=r"logfire\.Logfire instance"):
        TelemetryCallback(logfire_instance=object())
    with pytest.raises(TypeError, match="True or False"):
        TelemetryCallback(trace_map_items="yes")  # type: ignore[arg-type]


@ONE_CORE
def test_a_logfire_instance_gets_the_spans() -> None:
    """With logfire_instance= the spans go to that instance's tracer provider (here one
    configured locally, sending nowhere, with an in-memory exporter added)."""
    logfire = pytest.importorskip("logfire")
    exporter = InMemorySpanExporter()
    instance = logfire.configure(
        local=True, send_to_logfire=False, console=False, additional_span_processors=[SimpleSpanProcessor(exporter)]
    )
    try:
        telemetry = TelemetryCallback(logfire_instance=instance)
        Pipeline([inc, double], callbacks=[telemetry], name="lf").run(inputs={"x": 1})
        assert sorted(s.name for s in exporter.get_finished_spans()) == ["node:double", "node:inc", "pipeline:lf"]
    finally:
        instance.shutdown()


NOTEBOOK = """
import time
from hypernodes import node, Pipeline
from hypernodes.telemetry import ProgressCallback, TelemetryCallback

@node(output_name="cleaned")
def clean_data(raw: str) -> str:
    time.sleep(0.002)
    return raw.strip()

@node(output_name="normalized")
def normalize(cleaned: str) -> str:
    return cleaned.lower()

inner_pipeline = Pipeline(nodes=[clean_data, normalize], name="preprocessing")

@node(output_name="final_result")
def aggregate(normalized: str) -> dict:
    return {"processed": normalized, "length": len(normalized)}

telemetry_nested = TelemetryCallback()
outer_pipeline = Pipeline(
    nodes=[inner_pipeline, aggregate],
    callbacks=[ProgressCallback(enable=False), telemetry_nested],
    name="main_pipeline",
)
result = outer_pipeline.run(inputs={"raw": " Database "})
chart = telemetry_nested.get_waterfall_chart()

@node(output_name="squared")
def square(x: int) -> int:
    return x * x

telemetry_map = TelemetryCallback(trace_map_items=False)
map_pipeline = Pipeline(nodes=[square], callbacks=[ProgressCallback(enable=False), telemetry_map], name="square")
results = map_pipeline.map(inputs={"x": [1, 2, 3]}, map_over="x")
"""


@ONE_CORE
def test_the_notebook_era_example_runs_unchanged() -> None:
    """The notebook-era telemetry notebook's cells (nested pipeline with progress and telemetry,
    its waterfall chart, a map with trace_map_items=False), unchanged but for shorter sleeps,
    run on the global tracer provider and give a chart whose rows name the pipelines and nodes."""
    scope: dict[str, Any] = {}
    exec(compile(NOTEBOOK, "<notebook>", "exec"), scope)
    assert scope["result"]["final_result"] == {"processed": "database", "length": 8}
    rows = [r.strip() for r in scope["chart"].layout.yaxis.categoryarray]
    assert rows == ["main_pipeline", "preprocessing", "main_pipeline/preprocessing", "preprocessing/clean_data",
                    "preprocessing/normalize", "aggregate"]  # fmt: skip
    assert scope["results"] == {"squared": [1, 4, 9]}
    assert [d["type"] for d in scope["telemetry_map"].span_data].count("node") == 3


@node(output_name="y")
def instrumented(x: int, provider: Any) -> int:
    with provider.get_tracer("client").start_as_current_span(
        "http.request"
    ):  # as an HTTP client's instrumentation would
        return x + 1


@ONE_CORE
@pytest.mark.parametrize("kind", ["sequential", "threaded", "async"])
def test_spans_made_inside_a_node_nest_under_its_span(
    kind: str, engine_for: Any, otel: Any, exporter: InMemorySpanExporter, telemetry: TelemetryCallback
) -> None:
    """While a node runs in this process its span is the current one: a span its own code
    makes (an instrumented client) is that node span's child, item by item; after the call
    the caller's context is as it was."""
    pipeline = Pipeline([instrumented], callbacks=[telemetry], backend=engine_for(kind), name="i")
    with otel[0].get_tracer("test").start_as_current_span("request") as request:
        pipeline.map(inputs={"x": [1, 2, 3], "provider": otel[0]}, map_over="x")
        from opentelemetry import trace

        assert trace.get_current_span() is request
    spans = exporter.get_finished_spans()
    by_id = _tree(spans)
    inner = _named(spans, "http.request")
    assert len(inner) == 3
    parents = [_parent(s, by_id) for s in inner]
    assert all(p is not None and p.name == "node:instrumented" for p in parents)
    assert len({p.context.span_id for p in parents if p is not None}) == 3


class _FakeLogfire:
    """A Logfire instance's shape (``config.get_tracer_provider()``), holding a lock as the real one does."""

    def __init__(self, provider: Any) -> None:
        self.lock = threading.Lock()  # not picklable
        self.config = self
        self.provider = provider

    def get_tracer_provider(self) -> Any:
        return self.provider


@ONE_CORE
def test_pickles_without_its_tracer_or_logfire_instance(otel: Any, exporter: InMemorySpanExporter) -> None:
    """A TelemetryCallback (on a nested pipeline that travels to worker processes, say) pickles
    without its tracer, Logfire instance or records; the original keeps sending spans."""
    import pickle

    telemetry = TelemetryCallback(logfire_instance=_FakeLogfire(otel[0]))
    Pipeline([inc], callbacks=[telemetry], name="p").run(inputs={"x": 1})
    copy = pickle.loads(pickle.dumps(telemetry))
    assert (copy.logfire_instance, copy.spans) == (None, [])
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["node:inc", "pipeline:p"]
