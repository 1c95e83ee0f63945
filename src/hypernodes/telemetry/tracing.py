"""Traces of calls on OpenTelemetry: :class:`TelemetryCallback`.

One span per call (``pipeline:<id>``), per map item (``map_item``, when
``trace_map_items``) and per node (``node:<node id>``); a nested pipeline's call sits
under its node's span, and a top-level call under the span current where it was
made (a request handler's trace goes on through the pipeline). Names stay few (the
item index is an attribute, not part of the name), as tracing backends group by name.

How spans are made. Each span is started and ended with explicit timestamps and an
explicit parent, never through OpenTelemetry's "current span" of the thread a hook
runs on: hooks of a concurrent map are not called on the thread that ran the node,
and a worker process's events arrive later, in a burst. Every event carries the time,
process and thread where it happened (``CallbackContext.event_time_ns`` and
``event_worker``), so the spans of worker processes and Dask workers are made here,
in the caller, with the right parents and timestamps. Workers need no exporter and
no configuration; the alternative (propagating the trace context to workers that
export themselves) needs an exporter set up in every worker process and on every
Dask worker, and loses the spans of a worker that dies before it flushes.

Every span is also kept as a small record (not the SDK's span object, which is
dropped once ended); :meth:`TelemetryCallback.get_waterfall_chart` draws those, so
the chart works even where no OpenTelemetry SDK is configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from threading import get_ident
from time import time_ns
from typing import Any

from ..callbacks import CallbackContext, PipelineCallback
from .records import CACHED, FAILED, RAN, RETRIED, UNFINISHED, SpanRecord

__all__ = ["TelemetryCallback"]

_INSTALL = (
    "TelemetryCallback records spans through the OpenTelemetry API, which is not installed "
    "(nor is logfire): pip install 'hypernodes[telemetry]'"
)


def _otel() -> Any:
    """The OpenTelemetry API modules (``trace``, ``context``) or an ImportError naming the extra."""
    try:
        from opentelemetry import context, trace
    except ImportError:
        raise ImportError(_INSTALL) from None
    return trace, context


def _place(ctx: CallbackContext) -> tuple[str, tuple[int, ...]]:
    """The current event's pipeline id and its map item per pipeline level (-1: none).

    Reads the context's own fields (``callbacks.py``, this package): the public
    ``item_indices`` and ``hierarchy_path`` copy them, and this runs for every span.
    """
    stack, items = ctx._stack, ctx._items
    if stack and len(items) == len(stack):
        return stack[-1], items
    if len(items) != len(stack):  # an event reported without its items
        items = (*items, *(-1,) * (len(stack) - len(items)))[: len(stack)]
    return (stack[-1] if stack else ""), items


def _version() -> str | None:
    """The installed hypernodes' version, for the spans' instrumentation scope (the package's
    ``__version__`` is a layer above this one)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hypernodes")
    except PackageNotFoundError:
        return None


_LANES: dict[int, tuple[tuple[int, int], str]] = {}
"""Thread id -> its lane (process id, thread id) and ``hypernodes.worker`` attribute, in this
process: made once per thread (a forked child starts over: its process id is another)."""

if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_LANES.clear)


def _lane(ident: int) -> tuple[tuple[int, int], str]:
    """The lane and worker attribute of thread ``ident`` of this process, kept in ``_LANES``."""
    lane = (os.getpid(), ident)
    found = _LANES[ident] = (lane, f"{lane[0]}:{lane[1]}")
    return found


class _Trace:
    """The open spans of one call and of the nested calls it makes, by where they happen."""

    __slots__ = ("items", "nodes", "pipelines")

    def __init__(self) -> None:
        # keys: (pipeline id, its map items above it), (pipeline id, items incl. its own, -1: none),
        # (pipeline id, items, node id): ids are paths, items tell concurrent items apart
        self.pipelines: dict[tuple[str, tuple[int, ...]], SpanRecord] = {}
        self.items: dict[tuple[str, tuple[int, ...]], SpanRecord] = {}
        self.nodes: dict[tuple[str, tuple[int, ...], str], SpanRecord] = {}


class TelemetryCallback(PipelineCallback):
    """Spans for every call, map item and node, sent through OpenTelemetry; a waterfall chart after.

    Works with Logfire (OpenTelemetry underneath: ``logfire.configure()`` first) and with
    any OpenTelemetry exporter (OTLP to Jaeger, Honeycomb, Grafana Tempo; the console; an
    in-memory one in tests). Spans carry ``hypernodes.*`` attributes: ``pipeline_id``,
    ``kind``, ``node_id``, ``item_index``, ``cached``, ``cache_signature``, ``attempts``
    and ``retries`` (with a ``retry`` event per retried attempt), ``status`` (ran, cached,
    failed, retried, unfinished), ``worker`` (process and thread); a failure records its
    exception and sets the span's status to ERROR.

    Example::

        telemetry = TelemetryCallback()
        pipeline = Pipeline(nodes=[...], callbacks=[telemetry])
        pipeline.map(inputs={"x": xs}, map_over="x")
        telemetry.get_waterfall_chart()          # a Plotly figure (shows itself in Jupyter)
    """

    node_values = False  # spans carry names and times, never values: process maps send none back

    def __init__(
        self, trace_map_items: bool = True, logfire_instance: Any = None, *, tracer_provider: Any = None
    ) -> None:
        """Args:
            trace_map_items: a span per map item (its nodes' spans under it); False puts a
                map's node spans straight under the call's span (the chart keeps items).
            logfire_instance: a ``logfire.Logfire`` (as ``logfire.configure(local=True)``
                returns) whose tracer provider gets the spans; None: the global provider
                (the one ``logfire.configure()`` or ``trace.set_tracer_provider`` set,
                looked up when each span starts, so configuring later works).
            tracer_provider: an OpenTelemetry ``TracerProvider`` to use instead.

        Raises:
            ImportError: OpenTelemetry is not installed (the message names the extra).
            TypeError: ``logfire_instance`` is not a Logfire instance, or both it and
                ``tracer_provider`` are given.
        """
        if not isinstance(trace_map_items, bool):
            raise TypeError(f"TelemetryCallback(trace_map_items=...) takes True or False, got {trace_map_items!r}.")
        trace, context = _otel()
        if logfire_instance is not None:
            if tracer_provider is not None:
                raise TypeError("TelemetryCallback takes logfire_instance= or tracer_provider=, not both.")
            provider_of = getattr(getattr(logfire_instance, "config", None), "get_tracer_provider", None)
            if not callable(provider_of):
                raise TypeError(
                    "TelemetryCallback(logfire_instance=...) takes a logfire.Logfire instance "
                    f"(as logfire.configure(local=True) returns), got {type(logfire_instance).__name__}."
                )
            tracer_provider = provider_of()
        self.trace_map_items = trace_map_items
        self.logfire_instance = logfire_instance
        self._tracer = trace.get_tracer("hypernodes", _version(), tracer_provider=tracer_provider)
        self._api = (trace, context)
        # Finished spans, in the order they ended. One callback may serve calls on several
        # threads: list.append and list(...) are atomic (also on free-threaded CPython).
        self._records: list[SpanRecord] = []
        self._key = f"hypernodes.telemetry:{id(self)}"  # this callback's _Trace in a call's context
        self._workers: dict[tuple[int, int], str] = {}  # (pid, thread id) -> the span attribute
        self._names: dict[str, str] = {}  # node id -> its spans' name

    def __getstate__(self) -> dict[str, Any]:
        # A nested pipeline holding this callback may travel to a worker process, where
        # events are only recorded: the tracer, the Logfire instance and the records stay here.
        state = dict(self.__dict__)
        state.update(_tracer=None, _api=None, _records=[], logfire_instance=None)
        return state

    # -- what was recorded ------------------------------------------------------------

    @property
    def spans(self) -> list[SpanRecord]:
        """The finished spans of every call so far (records, in the order they ended)."""
        return list(self._records)

    @property
    def span_data(self) -> list[dict[str, Any]]:
        """The finished spans as dicts (the notebook-era form): ``name``, ``type``
        ("pipeline", "map_item", "node"), ``start_time`` (seconds since the epoch),
        ``duration``, ``depth``, ``parent``, ``cached``, ``status``, ``item_index``, ``worker``."""
        return [r.as_dict() for r in self.spans]

    def reset(self) -> None:
        """Forget the recorded spans (the chart starts over; what was exported stays)."""
        self._records.clear()

    def get_waterfall_chart(self, *, max_item_rows: int = 20, max_bars: int = 2000, title: str | None = None) -> Any:
        """A Plotly figure of what ran when: rows per pipeline, map item and node, bars from
        real start to end, coloured by status; see :func:`~hypernodes.telemetry.waterfall.waterfall_figure`.

        Raises:
            ImportError: plotly is not installed (the message names the extra).
        """
        from .waterfall import waterfall_figure

        return waterfall_figure(self.spans, max_item_rows=max_item_rows, max_bars=max_bars, title=title)

    def save_waterfall_chart(self, path: str | Path, **options: Any) -> Path:
        """Write the waterfall chart to ``path``: ``.html`` (interactive, needs only plotly),
        or ``.png``/``.svg``/``.pdf`` (needs kaleido). ``options`` go to :meth:`get_waterfall_chart`.

        Returns:
            The path written.

        Raises:
            ImportError: plotly (or, for an image, kaleido) is not installed.
            ValueError: an extension other than those.
        """
        from .waterfall import write_figure

        return write_figure(self.get_waterfall_chart(**options), path)

    # -- hooks ----------------------------------------------------------------------------

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
        trace = self._trace(ctx)
        path = ctx.hierarchy_path
        _, items = _place(ctx)
        meta = ctx.get_pipeline_metadata(pipeline_id)
        parent: SpanRecord | None = None
        prefix = ""
        if len(path) > 1:
            above = trace.pipelines.get((path[-2], items[:-2]))
            name = pipeline_id[len(path[-2]) + 1 :]  # a nested pipeline's id is <parent id>/<node name>
            node_id = (above.prefix if above is not None else "") + name
            parent = trace.nodes.get((path[-2], items[:-1], node_id)) or above
            prefix = node_id + "/"
        record = self._open(
            "pipeline",
            pipeline_id,
            f"pipeline:{pipeline_id}",
            parent,
            ctx,
            pipeline_id,
            ctx.item_index,
            {"hypernodes.kind": str(meta.get("kind", "run")), "hypernodes.depth": len(path) - 1},
        )
        record.prefix = prefix
        trace.pipelines[(pipeline_id, items[:-1])] = record

    def on_map_start(self, total_items: int, ctx: CallbackContext) -> None:
        record = self._pipeline(ctx)
        if record is not None and record.otel is not None:
            record.otel.set_attribute("hypernodes.total_items", total_items)

    def on_pipeline_end(self, pipeline_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        self._end_pipeline(ctx, None)

    def on_pipeline_error(self, pipeline_id: str, error: BaseException, duration: float, ctx: CallbackContext) -> None:
        self._end_pipeline(ctx, error)

    # The hooks of every item and node (on_map_item_start/end, on_node_start/end) are the
    # callback's cost per span: they read the context's fields and the call's trace directly.

    def on_map_item_start(self, item_index: int, ctx: CallbackContext) -> None:
        self._item(ctx.data.get(self._key) or self._trace(ctx), *_place(ctx), ctx)

    def on_map_item_end(self, item_index: int, duration: float, ctx: CallbackContext) -> None:
        trace: _Trace | None = ctx.data.get(self._key)
        record = None if trace is None else trace.items.pop(_place(ctx), None)
        if record is not None:
            self._close(record, ctx, FAILED if record.failed else RETRIED if record.attempts > 1 else RAN)

    def on_map_item_cached(self, item_index: int, signature: str, ctx: CallbackContext) -> None:
        record = self._item(self._trace(ctx), *_place(ctx), ctx)
        self._trace(ctx).items.pop(_place(ctx), None)
        if record.otel is not None:
            record.otel.set_attributes({"hypernodes.cached": True, "hypernodes.cache_signature": signature})
        self._close(record, ctx, CACHED)

    def on_map_item_failed(self, item_index: int, failure: Any, ctx: CallbackContext) -> None:
        record = self._item(self._trace(ctx), *_place(ctx), ctx)
        self._trace(ctx).items.pop(_place(ctx), None)
        error = getattr(failure, "error", None)
        self._close(record, ctx, FAILED, error if isinstance(error, BaseException) else None)

    def on_node_start(self, node_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
        trace: _Trace | None = ctx.data.get(self._key)
        stack, items = ctx._stack, ctx._items
        if trace is not None and ctx._origin is None and stack and len(items) == len(stack) and items[-1] >= 0:
            # The common case, made here in one go: a node of a map item, in this process.
            pipeline_id = stack[-1]
            key = (pipeline_id, items, node_id)
            parent = trace.items.get((pipeline_id, items))
            if parent is not None and parent.otel_context is not None and key not in trace.nodes:
                start = time_ns()
                ident = get_ident()
                lane, worker = _LANES.get(ident) or _lane(ident)
                item = items[-1]
                record = SpanRecord("node", node_id, pipeline_id, item, start, parent, lane)
                span = record.otel = self._tracer.start_span(
                    self._names.get(node_id) or self._name(node_id),
                    context=parent.otel_context,
                    attributes={
                        "hypernodes.node_id": node_id,
                        "hypernodes.item_index": item,
                        "hypernodes.pipeline_id": pipeline_id,
                        "hypernodes.worker": worker,
                    },
                    start_time=start,
                )
                trace.nodes[key] = record
                trace_api, context = self._api
                current = record.otel_context = trace_api.set_span_in_context(span)
                record.token = (context.attach(current), ident)  # see below
                return
        record = self._node(ctx, node_id)
        span = record.otel
        if span is not None and ctx._origin is None:
            # The hook runs on the thread (and in the context) that calls the node next: made
            # current there, the node's span is the parent of spans the node's own code makes
            # (an HTTP or LLM client's instrumentation). Not for replayed worker events.
            trace_api, context = self._api
            current = record.otel_context
            if current is None:
                current = record.otel_context = trace_api.set_span_in_context(span)
            record.token = (context.attach(current), get_ident())

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        trace: _Trace | None = ctx.data.get(self._key)
        if trace is None:
            return
        stack, items = ctx._stack, ctx._items
        if stack and len(items) == len(stack):
            record = trace.nodes.pop((stack[-1], items, node_id), None)
        else:
            record = trace.nodes.pop((*_place(ctx), node_id), None)
        if record is None:
            return
        span, token = record.otel, record.token
        if span is None or token is None or record.attempts > 1 or ctx._origin is not None:
            self._close(record, ctx, RETRIED if record.attempts > 1 else RAN)
            return
        # The common case, closed here in one go (as _close does): a node that ran in this process.
        end = time_ns()
        if end < record.start_ns:  # the wall clock went back
            end = record.start_ns
        record.end_ns = end
        record.status = RAN
        record.token = None
        if token[1] == get_ident():
            self._api[1].detach(token[0])
        span.set_attribute("hypernodes.status", RAN)
        span.end(end_time=end)
        record.otel = record.otel_context = None
        self._records.append(record)

    def on_node_cached(self, node_id: str, signature: str, ctx: CallbackContext) -> None:
        record = self._node(ctx, node_id)
        self._trace(ctx).nodes.pop((*_place(ctx), node_id), None)
        if record.otel is not None:
            record.otel.set_attributes({"hypernodes.cached": True, "hypernodes.cache_signature": signature})
        self._close(record, ctx, CACHED)

    def on_error(self, node_id: str, error: BaseException, ctx: CallbackContext) -> None:
        record = self._node(ctx, node_id)
        self._trace(ctx).nodes.pop((*_place(ctx), node_id), None)
        parent = record.parent
        while parent is not None and parent.kind != "pipeline":  # its item failed with it
            parent.failed = True
            parent = parent.parent
        self._close(record, ctx, FAILED, error)

    def on_node_retry(
        self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: CallbackContext
    ) -> None:
        record = self._retried_node(ctx, node_id)
        if record is None:
            return
        record.attempts = attempt + 1
        if record.parent is not None and record.parent.kind == "map_item":
            record.parent.attempts = max(record.parent.attempts, attempt + 1)
        if record.otel is not None:
            record.otel.add_event(
                "retry",
                {
                    "hypernodes.attempt": attempt,
                    "hypernodes.delay": delay,
                    "exception.type": type(error).__qualname__,
                    "exception.message": str(error),
                },
                timestamp=ctx.event_time_ns,
            )

    # -- spans ----------------------------------------------------------------------------

    def _trace(self, ctx: CallbackContext) -> _Trace:
        trace: _Trace | None = ctx.data.get(self._key)
        if trace is None:  # the first event this callback sees of the call
            trace = _Trace()
            ctx.data[self._key] = trace
        return trace

    def _pipeline(self, ctx: CallbackContext) -> SpanRecord | None:
        pipeline_id, items = _place(ctx)
        return self._trace(ctx).pipelines.get((pipeline_id, items[:-1]))

    def _item(self, trace: _Trace, pipeline_id: str, items: tuple[int, ...], ctx: CallbackContext) -> SpanRecord:
        """The open span of the current event's map item (the call's ``trace``, the event's
        place), opened now if it is not yet."""
        record = trace.items.get((pipeline_id, items))
        if record is None:
            item = items[-1]
            record = self._open(
                "map_item",
                f"item {item}",
                "map_item",
                trace.pipelines.get((pipeline_id, items[:-1])),
                ctx,
                pipeline_id,
                item,
                {"hypernodes.item_index": item},
                self.trace_map_items,
            )
            trace.items[(pipeline_id, items)] = record
        return record

    def _node(self, ctx: CallbackContext, node_id: str) -> SpanRecord:
        """The open span of node ``node_id`` for the current event, opened now if it is not yet."""
        trace = ctx.data.get(self._key) or self._trace(ctx)
        pipeline_id, items = _place(ctx)
        record = trace.nodes.get((pipeline_id, items, node_id))
        if record is None:
            item = items[-1]
            attributes: dict[str, Any] = {"hypernodes.node_id": node_id}
            if item >= 0:
                parent: SpanRecord | None = self._item(trace, pipeline_id, items, ctx)
                attributes["hypernodes.item_index"] = item
            else:  # a run: the node belongs to the item of a map it is nested in, if any
                parent = trace.pipelines.get((pipeline_id, items[:-1]))
                item = next((i for i in reversed(items) if i >= 0), -1)
            record = self._open(
                "node",
                node_id,
                self._names.get(node_id) or self._name(node_id),
                parent,
                ctx,
                pipeline_id,
                item if item >= 0 else None,
                attributes,
            )
            trace.nodes[(pipeline_id, items, node_id)] = record
        return record

    def _name(self, node_id: str) -> str:
        """The spans' name for node ``node_id`` (made once per node)."""
        name = self._names[node_id] = f"node:{node_id}"
        return name

    def _retried_node(self, ctx: CallbackContext, node_id: str) -> SpanRecord | None:
        """The open span a retry belongs to. A retry inside a map may not know its item
        (``_policy``): then it is the one open span of that node, or, of several
        (concurrent items), the one opened on the thread that reports the retry."""
        trace = self._trace(ctx)
        pipeline_id, items = _place(ctx)
        found = trace.nodes.get((pipeline_id, items, node_id))
        if found is not None or items[-1] >= 0:
            return found
        candidates = [
            r for (p, its, n), r in trace.nodes.items() if p == pipeline_id and n == node_id and its[:-1] == items[:-1]
        ]
        if len(candidates) > 1:
            here = [r for r in candidates if r.lane == ctx.event_worker]
            candidates = here or candidates
        return candidates[0] if candidates else None

    def _open(
        self,
        kind: str,
        name: str,
        otel_name: str,
        parent: SpanRecord | None,
        ctx: CallbackContext,
        pipeline_id: str,
        item: int | None,
        attributes: dict[str, Any],
        exported: bool = True,
    ) -> SpanRecord:
        """A new open span (exported through OpenTelemetry unless ``exported`` is False)."""
        origin = ctx._origin  # ctx.event_time_ns and event_worker, read here (once per span)
        if origin is None:
            start = time_ns()
            ident = get_ident()
            lane, worker = _LANES.get(ident) or _lane(ident)
        else:
            start = origin[0]
            lane = (origin[1], origin[2])
            worker = self._workers.get(lane) or self._worker(lane)
        record = SpanRecord(kind, name, pipeline_id, item, start, parent, lane)
        if not exported:
            return record
        trace, context = self._api
        if parent is None:  # a top-level call: under the caller's current span
            parent_context = context.get_current()
        else:
            parent_context = parent.otel_context or parent.context(trace)
        attributes["hypernodes.pipeline_id"] = pipeline_id
        attributes["hypernodes.worker"] = worker
        span = record.otel = self._tracer.start_span(
            otel_name, context=parent_context, attributes=attributes, start_time=start
        )
        if kind != "node":  # the parent of what it holds (a node's is made if it holds a call)
            record.otel_context = trace.set_span_in_context(span)
        return record

    def _worker(self, lane: tuple[int, int]) -> str:
        """The ``hypernodes.worker`` attribute of a worker process's thread (made once per thread)."""
        worker = self._workers[lane] = f"{lane[0]}:{lane[1]}"
        return worker

    def _close(self, record: SpanRecord, ctx: CallbackContext, status: str, error: BaseException | None = None) -> None:
        origin = ctx._origin  # ctx.event_time_ns, read here (once per span)
        end = time_ns() if origin is None else origin[0]
        if end < record.start_ns:  # another process's clock
            end = record.start_ns
        record.end_ns = end
        record.status = status
        if error is not None:
            record.error = f"{type(error).__qualname__}: {error}"
        token = record.token
        if token is not None:
            record.token = None
            if token[1] == get_ident():  # else the call stopped elsewhere: that context is gone
                self._api[1].detach(token[0])
        span = record.otel
        if span is not None:
            if record.attempts > 1:
                span.set_attributes(
                    {
                        "hypernodes.status": status,
                        "hypernodes.attempts": record.attempts,
                        "hypernodes.retries": record.attempts - 1,
                    }
                )
            else:
                span.set_attribute("hypernodes.status", status)
            if error is not None:
                trace, _ = self._api
                span.record_exception(error, timestamp=end)
                span.set_status(trace.Status(trace.StatusCode.ERROR, record.error))
            span.end(end_time=end)
            record.otel = None  # the SDK's span object is not kept (a map makes many)
            record.otel_context = None
        self._records.append(record)

    def _end_pipeline(self, ctx: CallbackContext, error: BaseException | None) -> None:
        trace = self._trace(ctx)
        pipeline_id, items = _place(ctx)
        record = trace.pipelines.pop((pipeline_id, items[:-1]), None)
        # What is still open in this call was stopped by its failure (or never reported its end).
        left = [trace.nodes.pop(k) for k in [k for k in trace.nodes if k[0] == pipeline_id and k[1][:-1] == items[:-1]]]
        left += [
            trace.items.pop(k) for k in [k for k in trace.items if k[0] == pipeline_id and k[1][:-1] == items[:-1]]
        ]
        for open_record in left:
            self._close(open_record, ctx, FAILED if open_record.failed else UNFINISHED)
        if record is not None:
            self._close(record, ctx, FAILED if error is not None else RAN, error)
        if len(items) == 1 and not trace.pipelines:
            ctx.data.pop(self._key, None)  # the call is over
