"""Callbacks users add: progress bars, a timing summary, and traces with a waterfall chart.

- :class:`ProgressCallback` (``progress.py``): tqdm bars per map and per run.
- :class:`TimingCallback` (``timing.py``): calls and time per node, as a table.
- :class:`TelemetryCallback` (``tracing.py``): OpenTelemetry spans per call, map item and
  node, and :meth:`~TelemetryCallback.get_waterfall_chart` (``waterfall.py``), a Plotly
  figure of what ran when. Needs ``hypernodes[telemetry]``; nothing is imported until
  one is made.
"""

from __future__ import annotations

from .progress import ProgressCallback
from .records import SpanRecord
from .timing import NodeTiming, TimingCallback
from .tracing import TelemetryCallback

__all__ = ["NodeTiming", "ProgressCallback", "SpanRecord", "TelemetryCallback", "TimingCallback"]
