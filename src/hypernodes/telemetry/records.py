"""What a :class:`~hypernodes.telemetry.TelemetryCallback` keeps of each span: a small record.

The waterfall chart is drawn from these, so it needs no OpenTelemetry SDK; the SDK's
own span object is referenced only while the span is open.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CACHED", "FAILED", "RAN", "RETRIED", "STATUSES", "UNFINISHED", "SpanRecord"]

RAN = "ran"
CACHED = "cached"
FAILED = "failed"
RETRIED = "retried"  # ran, and succeeded after one or more retried attempts
UNFINISHED = "unfinished"  # still running when its call failed (a concurrent item, say)
STATUSES = (RAN, CACHED, RETRIED, FAILED, UNFINISHED)


class SpanRecord:
    """One span: a call of a pipeline, a map item or a node.

    Attributes:
        kind: "pipeline", "map_item" or "node".
        name: the pipeline id, ``item <index>``, or the node id.
        pipeline_id: the pipeline it belongs to (its own id for a pipeline).
        item: the map item it belongs to (the innermost), or None.
        start_ns, end_ns: wall-clock nanoseconds (``time.time_ns()``) where it ran.
        parent: the record of the span it sits under (None for a top-level call).
        lane: (process id, thread id) where it started.
        status: one of ran, cached, retried, failed, unfinished.
        attempts: calls made (more than 1: retried).
        error: "Type: message" of a failure, else None.
    """

    __slots__ = (
        "attempts",
        "end_ns",
        "error",
        "failed",
        "item",
        "kind",
        "lane",
        "name",
        "otel",
        "otel_context",
        "parent",
        "pipeline_id",
        "prefix",
        "start_ns",
        "status",
        "token",
    )

    def __init__(
        self,
        kind: str,
        name: str,
        pipeline_id: str,
        item: int | None,
        start_ns: int,
        parent: SpanRecord | None,
        lane: tuple[int, int],
    ) -> None:
        self.kind = kind
        self.name = name
        self.pipeline_id = pipeline_id
        self.item = item
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.parent = parent
        self.lane = lane
        self.status = UNFINISHED
        self.attempts = 1
        self.failed = False  # a node under it failed (an item's status)
        self.error: str | None = None
        self.otel: Any = None  # the SDK's span while open
        self.otel_context: Any = None  # an OpenTelemetry Context holding it, made once for its children
        self.prefix = ""  # a pipeline's node id prefix (nested pipelines)
        self.token: Any = None  # (OpenTelemetry context token, thread id) while it is the current span

    @property
    def depth(self) -> int:
        """How many records it sits under."""
        depth, parent = 0, self.parent
        while parent is not None:
            depth, parent = depth + 1, parent.parent
        return depth

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return (self.end_ns - self.start_ns) / 1e9

    def context(self, trace: Any) -> Any:
        """The OpenTelemetry context to start a child span in: this span's, or the nearest
        exported ancestor's (map items are not exported when ``trace_map_items`` is False)."""
        record: SpanRecord | None = self
        while record is not None:
            if record.otel_context is not None:
                return record.otel_context
            if record.otel is not None:
                record.otel_context = trace.set_span_in_context(record.otel)
                return record.otel_context
            record = record.parent
        return None

    def as_dict(self) -> dict[str, Any]:
        """The notebook-era ``span_data`` form, with the status, item and worker added."""
        return {
            "name": self.name,
            "type": self.kind,
            "start_time": self.start_ns / 1e9,
            "duration": self.duration,
            "depth": self.depth,
            "parent": None if self.parent is None else self.parent.name,
            "cached": self.status == CACHED,
            "status": self.status,
            "item_index": self.item,
            "worker": self.lane,
            "error": self.error,
        }

    def __repr__(self) -> str:
        return f"<SpanRecord {self.kind} {self.name!r} {self.status} {self.duration * 1e3:.3f} ms>"
