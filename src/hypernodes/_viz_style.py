"""How a picture looks: :class:`GraphvizStyle`, the named styles, and the notebook-era names of both.

Kept apart from ``viz.py`` (which draws) so each stays one job. The notebook-era
version named its style fields differently (``func_node_color`` for ``node_fill``) and
had more named styles; both spellings are accepted here, so its code draws unchanged.
A notebook-era field with no counterpart here (this picture has no grouped-input
boxes, one pen width, one node margin) is ignored with one :class:`IgnoredArgumentWarning`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import InitVar, dataclass
from typing import Any

from .errors import ArgumentTypeError

__all__ = ["DESIGN_STYLES", "GraphvizStyle", "IgnoredArgumentWarning"]


class IgnoredArgumentWarning(UserWarning):
    """A notebook-era argument that has no meaning in this version was given; it is ignored."""


# notebook-era field -> the field it sets here
_RENAMED = {
    "func_node_color": "node_fill",
    "arg_node_color": "input_fill",
    "pipeline_node_color": "pipeline_fill",
    "arg_edge_color": "input_edge_color",
    "output_edge_color": "edge_color",
    "font_name": "font",
    "background_color": "background",
    "node_border_width": "pen_width",
    "cluster_border_color": "cluster_border",
    "cluster_fill_color": "cluster_fill",
}
# notebook-era fields with nothing to set here, and why (said in the warning)
_IGNORED = {
    "grouped_args_node_color": "inputs are never grouped into one box",
    "grouped_args_edge_color": "inputs are never grouped into one box",
    "edge_font_size": "edge labels are sized from font_size",
    "legend_font_size": "the legend is sized from font_size",
    "legend_background_color": "the legend uses the picture's background",
    "edge_width": "pen_width sets nodes and edges alike",
    "cluster_border_width": "pen_width sets frames too",
    "node_padding": "the node margin is fixed",
}
_LEGACY = (*_RENAMED, *_IGNORED)


@dataclass(frozen=True)
class GraphvizStyle:
    """Colours, fonts and shapes of a picture. Colours are any Graphviz colour
    (``"#4a6fa5"``, ``"lightgrey"``); ``background`` may be ``"transparent"``.

    The notebook-era field names are accepted as keywords too: ``func_node_color``
    (``node_fill``), ``arg_node_color`` (``input_fill``), ``pipeline_node_color``
    (``pipeline_fill``), ``arg_edge_color`` (``input_edge_color``), ``output_edge_color``
    (``edge_color``), ``font_name`` (``font``), ``background_color`` (``background``),
    ``node_border_width`` (``pen_width``), ``cluster_border_color`` (``cluster_border``),
    ``cluster_fill_color`` (``cluster_fill``); the rest of them (grouped inputs, legend
    and edge font sizes, widths, padding) are ignored with one ``IgnoredArgumentWarning``.
    They are constructor keywords only: read the fields they set (``style.node_fill``).

    Raises:
        ArgumentTypeError: a field given under both its names, with different values.
    """

    font: str = "Helvetica"
    font_size: float = 11.0
    font_color: str = "#1f2933"
    muted_color: str = "#616e7c"  # types, defaults, edge labels and markers
    background: str = "white"
    node_shape: str = "box"
    node_fill: str = "#e8f0fb"
    node_border: str = "#4a6fa5"
    input_shape: str = "box"
    input_fill: str = "#fdf6e3"
    input_border: str = "#b58900"
    pipeline_fill: str = "#eef6ee"  # a nested pipeline drawn as one box
    pipeline_border: str = "#3f7f4f"
    cluster_fill: str = "#f7faf7"  # a nested pipeline drawn expanded
    cluster_border: str = "#3f7f4f"
    async_color: str = "#8e44ad"
    map_color: str = "#c0392b"
    edge_color: str = "#7b8794"
    pen_width: float = 1.2
    input_edge_color: str = ""  # edges leaving an input; "": edge_color

    # The notebook-era names (see the class docstring): init-only, so they read back as None.
    # They cannot read back the fields they set: dataclasses.replace() passes every InitVar's
    # value on to the new instance, where it would override the field being replaced.
    func_node_color: InitVar[str | None] = None
    arg_node_color: InitVar[str | None] = None
    pipeline_node_color: InitVar[str | None] = None
    arg_edge_color: InitVar[str | None] = None
    output_edge_color: InitVar[str | None] = None
    font_name: InitVar[str | None] = None
    background_color: InitVar[str | None] = None
    node_border_width: InitVar[float | None] = None
    cluster_border_color: InitVar[str | None] = None
    cluster_fill_color: InitVar[str | None] = None
    grouped_args_node_color: InitVar[str | None] = None
    grouped_args_edge_color: InitVar[str | None] = None
    edge_font_size: InitVar[float | None] = None
    legend_font_size: InitVar[float | None] = None
    legend_background_color: InitVar[str | None] = None
    edge_width: InitVar[float | None] = None
    cluster_border_width: InitVar[float | None] = None
    node_padding: InitVar[str | None] = None

    def __post_init__(self, *legacy: Any) -> None:
        given = {name: value for name, value in zip(_LEGACY, legacy, strict=True) if value is not None}
        if not given:
            return
        defaults = _DEFAULTS
        for old, value in given.items():
            new = _RENAMED.get(old)
            if new is None:
                continue
            current = getattr(self, new)
            if current != defaults[new] and current != value:
                raise ArgumentTypeError(
                    f"GraphvizStyle got {new}={current!r} and its notebook-era name {old}={value!r}; pass one."
                )
            object.__setattr__(self, new, value)  # frozen: the dataclass's own way of setting a field
        ignored = [old for old in given if old in _IGNORED]
        if ignored:
            reasons = "; ".join(f"{old} ({_IGNORED[old]})" for old in ignored)
            warnings.warn(
                f"GraphvizStyle ignores notebook-era fields with no meaning here: {reasons}.",
                IgnoredArgumentWarning,
                stacklevel=3,  # the caller's GraphvizStyle(...) line, past the dataclass __init__
            )


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GraphvizStyle)}


_MONO = GraphvizStyle(
    font="Courier",
    font_color="black",
    muted_color="#555555",
    node_fill="white",
    node_border="black",
    input_shape="ellipse",
    input_fill="white",
    input_border="black",
    pipeline_fill="#eeeeee",
    pipeline_border="black",
    cluster_fill="white",
    cluster_border="black",
    async_color="black",
    map_color="black",
    edge_color="black",
)

DESIGN_STYLES: dict[str, GraphvizStyle] = {
    "default": GraphvizStyle(),
    "dark": GraphvizStyle(
        font_color="#e6e6e6",
        muted_color="#a0a8b0",
        background="#1e1e1e",
        node_fill="#2b3a55",
        node_border="#7aa2f7",
        input_fill="#3b3222",
        input_border="#e0af68",
        pipeline_fill="#233a2c",
        pipeline_border="#9ece6a",
        cluster_fill="#25282e",
        cluster_border="#9ece6a",
        async_color="#bb9af7",
        map_color="#f7768e",
        edge_color="#8a93a0",
    ),
    # black on white, for print: kinds differ by shape and line, not by colour
    "mono": _MONO,
    # the notebook-era names; colours of our own, in the spirit of each name
    "monochrome": _MONO,
    "minimal": GraphvizStyle(
        font_size=10.0,
        node_fill="white",
        node_border="#9aa5b1",
        input_fill="#f5f7fa",
        input_border="#cbd2d9",
        pipeline_fill="#f0f2f5",
        pipeline_border="#9aa5b1",
        cluster_fill="#fbfcfd",
        cluster_border="#d9dee3",
        edge_color="#9aa5b1",
        input_edge_color="#cbd2d9",
        pen_width=0.8,
    ),
    "vibrant": GraphvizStyle(
        node_fill="#ffd6e7",
        node_border="#d6336c",
        input_fill="#d3f9d8",
        input_border="#2f9e44",
        pipeline_fill="#e5dbff",
        pipeline_border="#7048e8",
        cluster_fill="#f8f0fc",
        cluster_border="#ae3ec9",
        async_color="#1c7ed6",
        map_color="#e03131",
        edge_color="#0c8599",
        input_edge_color="#f76707",
        pen_width=1.6,
    ),
    "professional": GraphvizStyle(
        font_color="#102a43",
        muted_color="#627d98",
        node_fill="#f0f4f8",
        node_border="#1f3a5f",
        input_fill="white",
        input_border="#829ab1",
        pipeline_fill="#dceefb",
        pipeline_border="#1f3a5f",
        cluster_fill="#f7f9fb",
        cluster_border="#9fb3c8",
        async_color="#6a4c93",
        map_color="#b44d12",
        edge_color="#486581",
    ),
    "pastel": GraphvizStyle(
        node_fill="#cfe8fc",
        node_border="#90b8d8",
        input_fill="#d8f3dc",
        input_border="#95c9a1",
        pipeline_fill="#f3e1f7",
        pipeline_border="#c9a3d4",
        cluster_fill="#fdf7ff",
        cluster_border="#dcc4e4",
        async_color="#b39ddb",
        map_color="#e8a0a0",
        edge_color="#a3a9b3",
    ),
}
"""The named styles: "default", "dark", "mono" (for print), and the notebook-era names
"monochrome" (the same as "mono"), "minimal", "vibrant", "professional", "pastel"."""
