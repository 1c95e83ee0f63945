"""The ``telemetry`` scenario: what TelemetryCallback's spans cost, against the OpenTelemetry SDK's own.

Opt-in (``python -m bench telemetry``, needs ``hypernodes[telemetry]``): a 10,000-item map
of 3 nodes with ``TelemetryCallback`` (40,001 spans: the call, each item, each node) against
the same map without it, and against a plain loop that calls the same functions and creates
the same spans by hand with the SDK. Like with like: one tracer provider and in-memory
exporter for both (``SimpleSpanProcessor``), the same span names, parents, attributes
(``hypernodes.*``, the same keys and values), explicit start and end timestamps read with
``time.time_ns()``, each node's span made current while the node runs, and the same SDK
calls (``start_span`` with the attributes, ``set_attribute`` for the status, ``end``): the
callback's own per-span cost against the SDK's. Target: at most 1.3.

A third contender says where the gap comes from: a callback that makes the same spans with
no bookkeeping at all (it holds the open spans in attributes, so it only works for one
sequential call): what any callback making these spans pays for the engine's hook dispatch.

Timed in CPU seconds of this process (``time.process_time``), not wall-clock: all three
run on the calling thread, and on a shared, oversubscribed machine the wall-clock time
of a one-second loop mostly measures the other processes. The per-span ratio is given
twice: with the garbage collector on, as a program runs (the in-memory exporter keeps
every span, so collections cost both sides a lot), and off, as ``timeit`` and the other
scenarios time (our side's share of the work shows more).
"""

from __future__ import annotations

import gc
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hypernodes import Pipeline, PipelineCallback, node

from ._harness import BenchError, Row, Settings, check
from .scenarios import register

__all__ = ["TELEMETRY_ITEMS"]

TELEMETRY_ITEMS = 10_000
_US = 1e6


def _a(x: int) -> int:
    return x + 1


def _b(a: int) -> int:
    return a * 2


def _c(b: int) -> int:
    return b - 3


_STEPS = (("a", _a), ("b", _b), ("c", _c))


def _best_cpu(
    contenders: Mapping[str, Callable[[], object]], repeat: int, setup: Callable[[], object], collect: bool
) -> dict[str, float]:
    """``_harness.best_of`` in CPU seconds: interleaved rounds, the fastest kept, the garbage
    collector on or off (``collect``) while timed; ``setup`` runs untimed before each (it
    drops the spans of the round before)."""
    best = dict.fromkeys(contenders, math.inf)
    for _ in range(repeat):
        for name, fn in contenders.items():
            setup()
            gc.collect()
            if not collect:
                gc.disable()
            try:
                start = time.process_time()
                fn()
                best[name] = min(best[name], time.process_time() - start)
            finally:
                gc.enable()
    return best


def _by_hand(tracer: Any, trace: Any, context: Any, xs: list[int]) -> list[int]:
    """The same map as a loop, creating the spans TelemetryCallback creates, by hand (each
    node's span current while it runs, as the callback makes it)."""
    worker = f"{os.getpid()}:{threading.get_ident()}"
    call = tracer.start_span(
        "pipeline:bench",
        start_time=time.time_ns(),
        attributes={
            "hypernodes.kind": "map",
            "hypernodes.depth": 0,
            "hypernodes.pipeline_id": "bench",
            "hypernodes.worker": worker,
        },
    )
    call.set_attribute("hypernodes.total_items", len(xs))
    call_context = trace.set_span_in_context(call)
    out = []
    for i, x in enumerate(xs):
        item = tracer.start_span(
            "map_item",
            context=call_context,
            start_time=time.time_ns(),
            attributes={"hypernodes.item_index": i, "hypernodes.pipeline_id": "bench", "hypernodes.worker": worker},
        )
        item_context = trace.set_span_in_context(item)
        value = x
        for name, fn in _STEPS:
            span = tracer.start_span(
                f"node:{name}",
                context=item_context,
                start_time=time.time_ns(),
                attributes={
                    "hypernodes.node_id": name,
                    "hypernodes.item_index": i,
                    "hypernodes.pipeline_id": "bench",
                    "hypernodes.worker": worker,
                },
            )
            token = context.attach(trace.set_span_in_context(span))
            value = fn(value)
            context.detach(token)
            span.set_attribute("hypernodes.status", "ran")
            span.end(end_time=time.time_ns())
        item.set_attribute("hypernodes.status", "ran")
        item.end(end_time=time.time_ns())
        out.append(value)
    call.set_attribute("hypernodes.status", "ran")
    call.end(end_time=time.time_ns())
    return out


class _Floor(PipelineCallback):
    """The least a callback can do to make the same spans: the SDK's calls and nothing else
    (no records, no place of the event: the open spans in attributes, so one sequential call only)."""

    node_values = False

    def __init__(self, tracer: Any, trace: Any, context: Any) -> None:
        self.tracer, self.trace, self.context = tracer, trace, context
        self.worker = f"{os.getpid()}:{threading.get_ident()}"

    def on_pipeline_start(self, pipeline_id: str, inputs: Any, ctx: Any) -> None:
        self.call = self.tracer.start_span(
            f"pipeline:{pipeline_id}",
            context=self.context.get_current(),
            start_time=time.time_ns(),
            attributes={
                "hypernodes.kind": "map",
                "hypernodes.depth": 0,
                "hypernodes.pipeline_id": pipeline_id,
                "hypernodes.worker": self.worker,
            },
        )
        self.call_context = self.trace.set_span_in_context(self.call)

    def on_map_start(self, total_items: int, ctx: Any) -> None:
        self.call.set_attribute("hypernodes.total_items", total_items)

    def on_map_item_start(self, item_index: int, ctx: Any) -> None:
        self.index = item_index
        self.item = self.tracer.start_span(
            "map_item",
            context=self.call_context,
            start_time=time.time_ns(),
            attributes={
                "hypernodes.item_index": item_index,
                "hypernodes.pipeline_id": "bench",
                "hypernodes.worker": self.worker,
            },
        )
        self.item_context = self.trace.set_span_in_context(self.item)

    def on_node_start(self, node_id: str, inputs: Any, ctx: Any) -> None:
        self.node = self.tracer.start_span(
            f"node:{node_id}",
            context=self.item_context,
            start_time=time.time_ns(),
            attributes={
                "hypernodes.node_id": node_id,
                "hypernodes.item_index": self.index,
                "hypernodes.pipeline_id": "bench",
                "hypernodes.worker": self.worker,
            },
        )
        self.token = self.context.attach(self.trace.set_span_in_context(self.node))

    def on_node_end(self, node_id: str, outputs: Any, duration: float, ctx: Any) -> None:
        self.context.detach(self.token)
        self.node.set_attribute("hypernodes.status", "ran")
        self.node.end(end_time=time.time_ns())

    def on_map_item_end(self, item_index: int, duration: float, ctx: Any) -> None:
        self.item.set_attribute("hypernodes.status", "ran")
        self.item.end(end_time=time.time_ns())

    def on_pipeline_end(self, pipeline_id: str, outputs: Any, duration: float, ctx: Any) -> None:
        self.call.set_attribute("hypernodes.status", "ran")
        self.call.end(end_time=time.time_ns())


@register("telemetry")
def telemetry_scenario(settings: Settings) -> list[Row]:
    """A 10,000-item, 3-node map with TelemetryCallback and an in-memory exporter: against the
    bare map (us per item), and per span against the SDK's spans made by hand in a loop."""
    try:
        from opentelemetry import context, trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError as exc:
        raise BenchError("the telemetry scenario needs pip install 'hypernodes[telemetry]'") from exc
    from hypernodes.telemetry import TelemetryCallback

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    n = TELEMETRY_ITEMS // 10 if settings.quick else TELEMETRY_ITEMS
    xs = list(range(n))
    nodes = [node(_a, output_name="a"), node(_b, output_name="b"), node(_c, output_name="c")]
    telemetry = TelemetryCallback(tracer_provider=provider)
    traced = Pipeline(nodes, callbacks=[telemetry], name="bench")
    bare = Pipeline(nodes, name="bench")
    floor = Pipeline(nodes, callbacks=[_Floor(tracer, trace, context)], name="bench")
    expected = [(x + 1) * 2 - 3 for x in xs]

    def drop_spans() -> None:
        exporter.clear()
        telemetry.reset()

    def with_telemetry() -> dict[str, list[Any]]:
        return traced.map(inputs={"x": xs}, map_over="x")

    def by_hand() -> list[int]:
        return _by_hand(tracer, trace, context, xs)

    drop_spans()
    check("telemetry", "traced", with_telemetry()["c"], expected)
    spans = len(exporter.get_finished_spans())
    if spans != 4 * n + 1:
        raise BenchError(f"telemetry: expected {4 * n + 1} spans, the callback made {spans}")
    drop_spans()
    check("telemetry", "by-hand", by_hand(), expected)
    if len(exporter.get_finished_spans()) != spans:
        raise BenchError("telemetry: the loop by hand made another number of spans than the callback")
    drop_spans()
    check("telemetry", "floor", floor.map(inputs={"x": xs}, map_over="x")["c"], expected)
    if len(exporter.get_finished_spans()) != spans:
        raise BenchError("telemetry: the bookkeeping-free callback made another number of spans than ours")
    contenders = {
        "bare": lambda: bare.map(inputs={"x": xs}, map_over="x"),
        "traced": with_telemetry,
        "by_hand": by_hand,
        "floor": lambda: floor.map(inputs={"x": xs}, map_over="x"),
    }
    rounds = min(settings.repeat, 5)
    best = _best_cpu(contenders, rounds, drop_spans, collect=True)
    no_gc = _best_cpu(contenders, rounds, drop_spans, collect=False)
    exporter.clear()
    telemetry.reset()
    provider.shutdown()
    return [
        Row("telemetry", f"{n}x3-map/with-telemetry", "cpu-us/item", best["traced"] * _US / n, best["bare"] * _US / n,
            "the same map without callbacks"),
        Row("telemetry", f"{n}x3-map/per-span", "cpu-us/span", best["traced"] * _US / spans,
            best["by_hand"] * _US / spans, "a loop making the same spans with the SDK by hand (target <= 1.3)"),
        Row("telemetry", f"{n}x3-map/per-span, gc off", "cpu-us/span", no_gc["traced"] * _US / spans,
            no_gc["by_hand"] * _US / spans, "the same loop by hand, both without the garbage collector"),
        Row("telemetry", f"{n}x3-map/floor per-span", "cpu-us/span", best["floor"] * _US / spans,
            best["by_hand"] * _US / spans, "the same loop by hand: a bookkeeping-free callback's spans"),
        Row("telemetry", f"{n}x3-map/floor per-span, gc off", "cpu-us/span", no_gc["floor"] * _US / spans,
            no_gc["by_hand"] * _US / spans, "the same, without the garbage collector"),
    ]  # fmt: skip
