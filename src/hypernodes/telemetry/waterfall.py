"""The waterfall chart: what ran when, drawn from a :class:`TelemetryCallback`'s span records.

Rows, top to bottom, follow the span tree: a call's pipeline row, then for ``run()``
a row per node (a nested pipeline's rows under its node's), and for ``map()`` a row
per item followed by its nodes' rows. Each bar spans the real start and end (in
milliseconds since the first span started); its colour says its status (ran, cached,
retried, failed, unfinished: one legend entry each). A map whose items ran on more
than one thread or process shows each item's lane (``lane 2``) and groups items by
lane, so a serialised stage or an idle worker is visible.

Large maps stay readable: beyond ``max_item_rows`` items a map draws one row per
lane instead, each item a bar on its lane's row (its nodes in the hover text), and
beyond ``max_bars`` bars in all, consecutive items of a lane are merged into one bar
per group (from the group's first start to its last end, coloured by its worst
status, the hover saying which items and how many failed).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import CACHED, FAILED, RAN, RETRIED, STATUSES, UNFINISHED, SpanRecord

__all__ = ["COLORS", "waterfall_figure", "write_figure"]

COLORS = {
    RAN: "#4C78A8",  # blue
    CACHED: "#54A24B",  # green, as the notebook-era chart had cache hits
    RETRIED: "#F58518",  # orange
    FAILED: "#E45756",  # red
    UNFINISHED: "#BAB0AC",  # grey
}
"""The colour of each status."""

_WORST = {FAILED: 4, UNFINISHED: 3, RETRIED: 2, RAN: 1, CACHED: 0}
_INSTALL = "the waterfall chart is a Plotly figure, and plotly is not installed: pip install 'hypernodes[telemetry]'"


class _Bars:
    """The bars of the figure, gathered row by row."""

    def __init__(self, t0: int) -> None:
        self.t0 = t0
        self.rows: list[str] = []
        self._labels: set[str] = set()
        self.bars: list[tuple[str, float, float, str, str]] = []  # row, start ms, duration ms, status, hover

    def row(self, label: str) -> str:
        # Plotly merges rows with equal labels: a repeated one (a pipeline called twice)
        # gets zero-width spaces, which show nothing.
        while label in self._labels:
            label += "\u200b"
        self._labels.add(label)
        self.rows.append(label)
        return label

    def bar(self, row: str, start_ns: int, end_ns: int, status: str, hover: str) -> None:
        self.bars.append((row, (start_ns - self.t0) / 1e6, (end_ns - start_ns) / 1e6, status, hover))


def _hover(record: SpanRecord, lanes: dict[tuple[int, int], str]) -> str:
    text = f"<b>{record.name}</b><br>{record.status}, {record.duration * 1e3:.3f} ms"
    if record.attempts > 1:
        text += f", {record.attempts} attempts"
    if record.item is not None:
        text += f"<br>item {record.item}"
    text += f"<br>{lanes.get(record.lane, '')} (pid {record.lane[0]})"
    if record.error:
        text += f"<br>{record.error[:300]}"
    return text


def _lane_names(records: Sequence[SpanRecord]) -> dict[tuple[int, int], str]:
    """``lane N`` for each (process, thread), numbered in the order they first started a span."""
    names: dict[tuple[int, int], str] = {}
    for r in sorted(records, key=lambda r: r.start_ns):
        if r.lane not in names:
            names[r.lane] = f"lane {len(names) + 1}"
    return names


def _children(records: Sequence[SpanRecord]) -> tuple[list[SpanRecord], dict[int, list[SpanRecord]]]:
    known = {id(r) for r in records}
    roots: list[SpanRecord] = []
    children: dict[int, list[SpanRecord]] = {}
    for r in records:
        if r.parent is None or id(r.parent) not in known:
            roots.append(r)
        else:
            children.setdefault(id(r.parent), []).append(r)
    roots.sort(key=lambda r: r.start_ns)
    for kids in children.values():
        kids.sort(key=lambda r: r.start_ns)
    return roots, children


def _draw(
    record: SpanRecord,
    indent: str,
    bars: _Bars,
    children: dict[int, list[SpanRecord]],
    lanes: dict[tuple[int, int], str],
    options: tuple[int, int],
) -> None:
    label = f"{indent}{record.name}"
    row = bars.row(label)
    bars.bar(row, record.start_ns, record.end_ns, record.status, _hover(record, lanes))
    kids = children.get(id(record), [])
    items = [k for k in kids if k.kind == "map_item"]
    max_item_rows, max_bars = options
    if len(items) > max_item_rows:
        _draw_lanes(items, indent + "  ", bars, children, lanes, max_bars)
    else:
        concurrent = len({k.lane for k in items}) > 1
        if concurrent:  # items ran on several threads or processes: group them by lane
            order = {lane: k for k, lane in enumerate(lanes)}
            items.sort(key=lambda k: (order[k.lane], k.start_ns))
        for item in items:
            if concurrent:
                _draw_item_in_lane(item, indent + "  ", bars, children, lanes, options)
            else:
                _draw(item, indent + "  ", bars, children, lanes, options)
    for kid in kids:
        if kid.kind != "map_item":
            _draw(kid, indent + "  ", bars, children, lanes, options)


def _draw_item_in_lane(
    item: SpanRecord,
    indent: str,
    bars: _Bars,
    children: dict[int, list[SpanRecord]],
    lanes: dict[tuple[int, int], str],
    options: tuple[int, int],
) -> None:
    row = bars.row(f"{indent}{item.name} · {lanes.get(item.lane, '')}")
    bars.bar(row, item.start_ns, item.end_ns, item.status, _hover(item, lanes))
    for kid in children.get(id(item), []):
        _draw(kid, indent + "  ", bars, children, lanes, options)


def _draw_lanes(
    items: list[SpanRecord],
    indent: str,
    bars: _Bars,
    children: dict[int, list[SpanRecord]],
    lanes: dict[tuple[int, int], str],
    max_bars: int,
) -> None:
    """A map's items as bars on one row per lane; groups of items per bar beyond ``max_bars``."""
    by_lane: dict[tuple[int, int], list[SpanRecord]] = {}
    for item in items:
        by_lane.setdefault(item.lane, []).append(item)
    per_lane = max(1, max_bars // max(1, len(by_lane)))
    for lane, members in sorted(by_lane.items(), key=lambda kv: kv[1][0].start_ns):
        row = bars.row(f"{indent}{lanes.get(lane, '')} (pid {lane[0]}): {len(members)} items")
        size = math.ceil(len(members) / per_lane)
        for i in range(0, len(members), size):
            group = members[i : i + size]
            if len(group) == 1:
                item = group[0]
                nodes = ", ".join(f"{k.name} {k.duration * 1e3:.3f} ms" for k in children.get(id(item), []))
                bars.bar(row, item.start_ns, item.end_ns, item.status, _hover(item, lanes) + f"<br>{nodes}")
                continue
            status = max((m.status for m in group), key=lambda s: _WORST.get(s, 0))
            failed = sum(m.status == FAILED for m in group)
            hover = (
                f"<b>items {group[0].item}…{group[-1].item}</b> ({len(group)} items, {failed} failed)"
                f"<br>{lanes.get(lane, '')} (pid {lane[0]})"
            )
            bars.bar(row, min(m.start_ns for m in group), max(m.end_ns for m in group), status, hover)


def waterfall_figure(
    records: Sequence[SpanRecord], *, max_item_rows: int = 20, max_bars: int = 2000, title: str | None = None
) -> Any:
    """A Plotly figure of ``records`` (see the module's docstring for its rows and bars).

    Args:
        records: finished spans (``TelemetryCallback.spans``).
        max_item_rows: a map with more items draws one row per lane instead of one per item.
        max_bars: the most bars for one map's items drawn on lanes; beyond, items are grouped.
        title: the figure's title (default: "Pipeline execution waterfall").

    Returns:
        A ``plotly.graph_objects.Figure``: one horizontal ``Bar`` trace per status present,
        named by the status; ``base`` holds each bar's start and ``x`` its length (in ms;
        a zero-length span, a cache hit, is drawn 0.2% of the chart wide), ``y`` its row.

    Raises:
        ImportError: plotly is not installed (the message names the extra).
        ValueError: ``max_item_rows`` or ``max_bars`` is not a positive integer.
    """
    for name, value in (("max_item_rows", max_item_rows), ("max_bars", max_bars)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"get_waterfall_chart({name}=...) takes a positive integer, got {value!r}.")
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ImportError(_INSTALL) from None
    title = title or "Pipeline execution waterfall"
    if not records:
        fig = go.Figure()
        fig.add_annotation(text="No spans recorded yet", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
        fig.update_layout(title=title, height=300)
        return fig
    t0 = min(r.start_ns for r in records)
    bars = _Bars(t0)
    roots, children = _children(records)
    lanes = _lane_names(records)
    for root in roots:
        _draw(root, "", bars, children, lanes, (max_item_rows, max_bars))
    span_ms = max(max(r.end_ns for r in records) - t0, 1) / 1e6
    thinnest = span_ms * 0.002  # a zero-length bar (a cache hit) stays visible
    fig = go.Figure()
    for status in STATUSES:
        mine = [b for b in bars.bars if b[3] == status]
        if not mine:
            continue
        fig.add_trace(
            go.Bar(
                name=status,
                orientation="h",
                y=[b[0] for b in mine],
                base=[b[1] for b in mine],
                x=[max(b[2], thinnest) for b in mine],
                customdata=[b[2] for b in mine],
                hovertext=[b[4] for b in mine],
                hoverinfo="text",
                marker={"color": COLORS[status], "line": {"width": 0}},
            )
        )
    fig.update_layout(
        title=title,
        barmode="overlay",
        height=max(300, 22 * len(bars.rows) + 140),
        xaxis={"title": {"text": "ms since the first span started"}},
        yaxis={"categoryorder": "array", "categoryarray": bars.rows, "autorange": "reversed"},
        legend={"title": {"text": "status"}},
        plot_bgcolor="white",
        margin={"l": 20, "r": 20, "t": 60, "b": 40},
    )
    return fig


def write_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` by its extension: ``.html`` (plotly alone), or ``.png``,
    ``.svg``, ``.jpg``, ``.webp``, ``.pdf`` (which need kaleido).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ImportError: kaleido is not installed and an image was asked for.
        ValueError: another extension.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        fig.write_html(path)
        return path
    if suffix not in (".png", ".svg", ".jpg", ".jpeg", ".webp", ".pdf"):
        raise ValueError(
            f"save_waterfall_chart({str(path)!r}): the extension {suffix or '(none)'!r} is not one of "
            ".html, .png, .svg, .jpg, .jpeg, .webp, .pdf."
        )
    if importlib.util.find_spec("kaleido") is None:
        raise ImportError(
            f"writing the chart as {suffix} needs kaleido, which is not installed: pip install kaleido "
            "(or write .html, which needs nothing more)."
        )
    fig.write_image(path)
    return path
