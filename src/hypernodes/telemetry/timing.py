"""A timing summary per node: :class:`TimingCallback`."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..callbacks import CallbackContext, PipelineCallback

__all__ = ["NodeTiming", "TimingCallback"]


@dataclass(frozen=True)
class NodeTiming:
    """One node's calls and time, summed over the calls a :class:`TimingCallback` saw."""

    node_id: str
    calls: int
    total: float
    max: float
    cached: int

    @property
    def mean(self) -> float:
        """Seconds per call (0 without calls)."""
        return self.total / self.calls if self.calls else 0.0


class TimingCallback(PipelineCallback):
    """Per node: calls, total, mean and slowest time, across every run and map item it sees.

    ``timings`` is the summary (node id -> :class:`NodeTiming`, slowest total first);
    ``report()`` formats it as a table; ``reset()`` starts over. Under a process map
    the durations are measured in the workers and sent back.
    """

    node_values = False

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one callback may serve calls in several threads
        self._stats: dict[str, list[float]] = {}  # node id -> [calls, total, max, cached]

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        with self._lock:
            stats = self._stats.setdefault(node_id, [0, 0.0, 0.0, 0])
            stats[0] += 1
            stats[1] += duration
            stats[2] = max(stats[2], duration)

    def on_node_cached(self, node_id: str, signature: str, ctx: CallbackContext) -> None:
        with self._lock:
            self._stats.setdefault(node_id, [0, 0.0, 0.0, 0])[3] += 1

    @property
    def timings(self) -> dict[str, NodeTiming]:
        """node id -> its timing, the node with the largest total first."""
        with self._lock:
            rows = [NodeTiming(k, int(c), t, m, int(h)) for k, (c, t, m, h) in self._stats.items()]
        rows.sort(key=lambda r: -r.total)
        return {r.node_id: r for r in rows}

    def report(self, fmt: Callable[[float], str] = lambda s: f"{s * 1e3:.3f} ms") -> str:
        """The timings as a text table: node, calls, total, mean, max, cached."""
        rows = list(self.timings.values())
        head = ("node", "calls", "total", "mean", "max", "cached")
        body = [(r.node_id, str(r.calls), fmt(r.total), fmt(r.mean), fmt(r.max), str(r.cached)) for r in rows]
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        lines = [
            "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths)))
            for row in (head, *body)
        ]
        return os.linesep.join(lines)

    def reset(self) -> None:
        """Forget what was timed so far."""
        with self._lock:
            self._stats.clear()
