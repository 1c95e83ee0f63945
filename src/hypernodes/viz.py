"""Pictures of a pipeline: :func:`visualize` and the DOT text behind it.

Two steps, each testable alone::

    build_graph(pipeline, depth)        -> VizGraph   plain data: nodes, edges, clusters
    to_dot(graph, orient, types, style) -> str        DOT text, written here

The DOT text is byte-identical across runs for the same pipeline: everything is
emitted in declaration order, ids are built from names (never ``id()``), and no set
is iterated. Only rendering (SVG, PNG, PDF) needs the optional ``graphviz`` package
and Graphviz's ``dot`` program; both load on the first render, so ``import
hypernodes``, ``.source`` and ``.dot`` files work without them.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import os
import re
import sys
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from ._nested import PipelineNode
from ._viz_style import DESIGN_STYLES, GraphvizStyle, IgnoredArgumentWarning
from .errors import ArgumentTypeError, HypernodesError
from .node import Node


class _PipelineLike(Protocol):
    """What a picture reads of a pipeline (viz sits below ``pipeline.py`` and imports nothing of it)."""

    name: str | None
    nodes: tuple[Node[..., Any], ...]

    @property
    def inputs(self) -> tuple[str, ...]: ...


def _is_nested(member: Node[..., Any]) -> TypeGuard[PipelineNode]:
    return member.nested


def _is_pipeline(obj: Any) -> TypeGuard[_PipelineLike]:
    return isinstance(getattr(obj, "nodes", None), tuple) and callable(getattr(obj, "as_node", None))


__all__ = [
    "DESIGN_STYLES",
    "Diagram",
    "GraphvizNotFoundError",
    "GraphvizStyle",
    "IgnoredArgumentWarning",
    "VizCluster",
    "VizEdge",
    "VizGraph",
    "VizNode",
    "VizPort",
    "VizSpecError",
    "build_graph",
    "to_dot",
    "visualize",
]

ORIENTS = ("TB", "LR", "BT", "RL")
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot"}


# The two error classes live here rather than in errors.py: only this module raises
# them, and keeping them here keeps viz.py a leaf the rest of the package never imports.
class VizSpecError(HypernodesError, ValueError):
    """An argument of :func:`visualize` has a value it does not allow (orient, depth, style, suffix)."""


class GraphvizNotFoundError(HypernodesError, ImportError):
    """Rendering needs the ``graphviz`` package or the ``dot`` program, and one is missing."""


# -- the picture as data ---------------------------------------------------------------


@dataclass(frozen=True)
class VizPort:
    """One value a box produces: one row of the box, and where its edges start.

    Attributes:
        name: the name nodes downstream read.
        inner: the name inside a nested pipeline it is renamed from; "" if not renamed.
        type: its annotation as text; "" if none.
    """

    name: str
    inner: str = ""
    type: str = ""


@dataclass(frozen=True)
class VizNode:
    """One box.

    Attributes:
        id: a stable id built from names (the DOT node id and the SVG element id).
        kind: "input", "node", or "pipeline" (a nested pipeline drawn as one box).
        name: the input's or node's name.
        cluster: id of the expanded nested pipeline it sits in; "" at top level.
        type: an input's annotation (from the nodes reading it); "" if none.
        default: an input's default value(s) as text; None when it is required.
        params: a node's parameters as ``(name, annotation)``.
        outputs: a node's outputs, one port each (a tuple output has several).
        returns: a return annotation that does not split over several outputs.
        is_async: the node's function is ``async``.
        map_over: a nested pipeline's ``map_over`` (outer names); () if not mapped.
        map_mode: "zip" or "product" when mapped; "" otherwise.
    """

    id: str
    kind: str
    name: str
    cluster: str = ""
    type: str = ""
    default: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    outputs: tuple[VizPort, ...] = ()
    returns: str = ""
    is_async: bool = False
    map_over: tuple[str, ...] = ()
    map_mode: str = ""


@dataclass(frozen=True)
class VizEdge:
    """A value going from one box to the node that reads it.

    Attributes:
        source: id of the producing box (an input or a node).
        port: the output name at the source (the port it leaves from); "" from an input.
        target: id of the reading node.
        names: the value's names from source to target; several when a nested
            pipeline renames it on the way (``("doc", "text")``).
        mapped: the value is a list that a nested pipeline maps over, item by item.
    """

    source: str
    port: str
    target: str
    names: tuple[str, ...]
    mapped: bool = False


@dataclass(frozen=True)
class VizCluster:
    """A nested pipeline drawn expanded, as a box around its own nodes.

    Attributes:
        id: a stable id starting with "cluster".
        name: the nested pipeline's node name.
        parent: id of the enclosing cluster; "" at top level.
        renamed: its output renames as ``(inner, outer)``.
        map_over: its ``map_over`` (outer names); () if not mapped.
        map_mode: "zip" or "product" when mapped; "" otherwise.
    """

    id: str
    name: str
    parent: str = ""
    renamed: tuple[tuple[str, str], ...] = ()
    map_over: tuple[str, ...] = ()
    map_mode: str = ""


@dataclass(frozen=True)
class VizGraph:
    """The whole picture, as data: what :func:`to_dot` draws. Every tuple is in declaration order."""

    name: str
    nodes: tuple[VizNode, ...]
    edges: tuple[VizEdge, ...]
    clusters: tuple[VizCluster, ...]


@dataclass(frozen=True)
class _Source:
    """Where a name's value comes from, as seen by the nodes that read it."""

    box: str
    port: str
    names: tuple[str, ...]
    mapped: bool = False


def build_graph(pipeline: _PipelineLike, depth: int | None = 1) -> VizGraph:
    """The picture of ``pipeline`` as plain data (nodes, edges, clusters).

    Args:
        pipeline: the pipeline to draw.
        depth: how many levels are drawn: 1 draws each nested pipeline as one box,
            2 expands the nested pipelines of the top level (theirs stay boxes), and
            so on; None expands every level.

    Returns:
        A :class:`VizGraph`.

    Raises:
        ArgumentTypeError: ``pipeline`` is not a Pipeline, or ``depth`` is not an int or None.
        VizSpecError: ``depth`` is below 1.
    """
    if not _is_pipeline(pipeline):
        raise ArgumentTypeError(f"build_graph() draws a Pipeline, got {type(pipeline).__name__} {pipeline!r:.60}.")
    _check_depth(depth)
    builder = _Builder(depth)
    scope = builder.place(pipeline, prefix="", cluster="", level=1, fed=())
    builder.wire(scope, {})
    return VizGraph(pipeline.name or "", tuple(builder.nodes), tuple(builder.edges), tuple(builder.clusters))


@dataclass
class _Scope:
    """One drawn level: its members, and where each name it produces comes from."""

    # (member, its box id or cluster id, inner scope if expanded)
    members: list[tuple[Node[..., Any], str, _Scope | None]]
    produced: dict[str, _Source]  # own outputs and inputs drawn as boxes here


class _Builder:
    """Collects the boxes and edges of a pipeline and of the nested ones it expands.

    Two passes, because members may be listed in any order (a reader before its
    producer): :meth:`place` makes every box, :meth:`wire` then draws the edges.
    """

    def __init__(self, depth: int | None) -> None:
        self.depth = depth
        self.nodes: list[VizNode] = []
        self.edges: list[VizEdge] = []
        self.clusters: list[VizCluster] = []

    def place(self, pipeline: _PipelineLike, prefix: str, cluster: str, level: int, fed: tuple[str, ...]) -> _Scope:
        """Add the boxes of ``pipeline``; ``fed`` names the inputs an outer level provides."""
        scope = _Scope([], {})
        names = [n.name for n in pipeline.nodes]
        for i, member in enumerate(pipeline.nodes):
            # node names need not be unique; the declaration index tells twins apart
            key = prefix + (member.name if names.count(member.name) == 1 else f"{member.name}~{i}")
            if _is_nested(member) and (self.depth is None or level < self.depth):
                renames = member.output_mapping
                cluster_id = f"cluster:{key}"
                self.clusters.append(
                    VizCluster(
                        cluster_id,
                        member.name,
                        cluster,
                        tuple((inner, outer) for inner, outer in renames.items() if inner != outer),
                        member.map_over or (),
                        member.map_mode if member.map_over is not None else "",
                    )
                )
                fed_inner = tuple(_inner_input(member, p) for p in member.parameters)
                inner = self.place(member.pipeline, f"{key}/", cluster_id, level + 1, fed_inner)
                scope.members.append((member, cluster_id, inner))
                for inner_name, outer_name in renames.items():
                    src = inner.produced[inner_name]
                    scope.produced[outer_name] = _Source(src.box, src.port, _chain(src.names, outer_name))
            else:
                node_id = f"node:{key}"
                self.nodes.append(_node_box(member, node_id, cluster))
                scope.members.append((member, node_id, None))
                for out in member.outputs:
                    scope.produced[out] = _Source(node_id, out, (out,))
        for name in pipeline.inputs:
            if name not in fed:
                input_id = f"input:{prefix}{name}"
                type_, default = _input_type(pipeline, name), _default_text(pipeline, name)
                self.nodes.append(VizNode(input_id, "input", name, cluster, type_, default))
                scope.produced[name] = _Source(input_id, "", (name,))
        return scope

    def wire(self, scope: _Scope, fed: Mapping[str, _Source]) -> None:
        """Add the edges of a placed level; ``fed`` says where the inputs from outside come from."""
        sources = {**scope.produced, **fed}
        for member, box, inner in scope.members:
            mapped = (member.map_over or ()) if _is_nested(member) else ()
            if inner is not None:
                assert _is_nested(member)  # only nested pipelines expand
                inner_fed = {}
                for outer in member.parameters:
                    src = sources[outer]
                    name = _inner_input(member, outer)
                    inner_fed[name] = _Source(src.box, src.port, _chain(src.names, name), src.mapped or outer in mapped)
                self.wire(inner, inner_fed)
                continue
            for param in member.parameters:
                src = sources[param]
                names = _chain(src.names, _inner_input(member, param))
                self.edges.append(VizEdge(src.box, src.port, box, names, src.mapped or param in mapped))


# -- what the boxes say ------------------------------------------------------------------


def _chain(names: tuple[str, ...], nxt: str) -> tuple[str, ...]:
    return names if names[-1] == nxt else (*names, nxt)


def _inner_input(member: Node[..., Any], outer: str) -> str:
    """The name inside a nested pipeline of its (outer) parameter ``outer``."""
    if not _is_nested(member):
        return outer
    return member.input_mapping.get(outer, outer)


def _inner_output(member: PipelineNode, outer: str) -> str:
    for inner, out in member.output_mapping.items():
        if out == outer:
            return inner
    return outer


def _format_annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return re.sub(r"\b(?:typing|builtins)\.", "", text)


def _signature(member: Node[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(member.func)
    except (TypeError, ValueError):  # a builtin without a signature; the node read it another way
        return None


def _param_type(member: Node[..., Any], param: str) -> str:
    if _is_nested(member):
        return _input_type(member.pipeline, _inner_input(member, param))
    sig = _signature(member)
    if sig is None or param not in sig.parameters:
        return ""
    return _format_annotation(sig.parameters[param].annotation)


def _input_type(pipeline: _PipelineLike, name: str) -> str:
    """The annotation of input ``name``: the first one among the nodes that read it."""
    for member in pipeline.nodes:
        if name in member.parameters:
            found = _param_type(member, name)
            if found:
                return found
    return ""


def _output_types(member: Node[..., Any]) -> tuple[tuple[str, ...], str]:
    """Per-output annotations of ``member``, and its return annotation when it does not split over them."""
    n = len(member.outputs)
    if _is_nested(member):
        return tuple(_produced_type(member.pipeline, _inner_output(member, o)) for o in member.outputs), ""
    sig = _signature(member)
    if sig is None or sig.return_annotation is inspect.Signature.empty:
        return ("",) * n, ""
    annotation = sig.return_annotation
    if n == 1:
        return (_format_annotation(annotation),), ""
    parts = _tuple_parts(annotation)
    if parts is not None and len(parts) == n:
        return parts, ""
    return ("",) * n, _format_annotation(annotation)


def _tuple_parts(annotation: Any) -> tuple[str, ...] | None:
    """``tuple[int, str]`` (an object or, under postponed annotations, a string) as ``("int", "str")``."""
    if isinstance(annotation, str):
        match = re.fullmatch(r"\s*(?:typing\.)?[Tt]uple\[(.*)\]\s*", annotation)
        if match is None:
            return None
        parts, depth, start = [], 0, 0
        body = match.group(1)
        for i, char in enumerate(body):
            if char in "[(":
                depth += 1
            elif char in "])":
                depth -= 1
            elif char == "," and depth == 0:
                parts.append(body[start:i])
                start = i + 1
        parts.append(body[start:])
        found = tuple(_format_annotation(p.strip()) for p in parts)
        return None if "..." in found else found
    if typing.get_origin(annotation) is not tuple:
        return None
    args = typing.get_args(annotation)
    return None if Ellipsis in args else tuple(_format_annotation(a) for a in args)


def _produced_type(pipeline: _PipelineLike, name: str) -> str:
    for member in pipeline.nodes:
        if name in member.outputs:
            return _output_types(member)[0][member.outputs.index(name)]
    return ""


def _node_box(member: Node[..., Any], node_id: str, cluster: str) -> VizNode:
    types, returns = _output_types(member)
    ports = []
    for out, type_ in zip(member.outputs, types):
        inner = _inner_output(member, out) if _is_nested(member) else out
        ports.append(VizPort(out, inner if inner != out else "", type_))
    params = tuple((p, _param_type(member, p)) for p in member.parameters)
    if not _is_nested(member):
        return VizNode(
            node_id,
            "node",
            member.name,
            cluster,
            params=params,
            outputs=tuple(ports),
            returns=returns,
            is_async=member.is_async,
        )
    mapped = member.map_over or ()
    return VizNode(
        node_id,
        "pipeline",
        member.name,
        cluster,
        params=params,
        outputs=tuple(ports),
        map_over=mapped,
        map_mode=member.map_mode if mapped else "",
    )


def _default_text(pipeline: _PipelineLike, name: str) -> str | None:
    """Input ``name``'s default as text (" | "-joined if readers differ); None if some reader requires it."""
    shown: dict[str, None] = {}  # an ordered set: the text must not depend on hash order
    for member in pipeline.nodes:
        if name not in member.parameters:
            continue
        if name not in member.defaults:
            return None
        if _is_nested(member):
            inner = _default_text(member.pipeline, _inner_input(member, name))
            if inner is None:
                return None
            shown[inner] = None
        else:
            shown[_short_repr(member.defaults[name])] = None
    return " | ".join(shown) if shown else None


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a user's broken __repr__ must not break the picture
        text = f"<{type(value).__name__}>"
    # memory addresses ("<object at 0x7f...>") change from run to run
    text = re.sub(r" at 0x[0-9A-Fa-f]+", "", text)
    return text if len(text) <= 32 else text[:31] + "…"


# -- checks --------------------------------------------------------------------------


def _check_depth(depth: Any) -> None:
    if depth is None:
        return
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ArgumentTypeError(
            f"depth must be an int (1: nested pipelines as boxes) or None (all levels); got {depth!r}."
        )
    if depth < 1:
        raise VizSpecError(f"depth must be 1 or more (1: only the top level) or None (every level); got {depth}.")


def _check_orient(orient: Any) -> None:
    if orient not in ORIENTS or not isinstance(orient, str):
        raise VizSpecError(
            f"orient must be one of {', '.join(map(repr, ORIENTS))} (top to bottom, left to right, bottom to top, "
            f"right to left); got {orient!r}."
        )


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")


def _resolve_style(style: Any) -> GraphvizStyle:
    if isinstance(style, GraphvizStyle):
        return style
    if isinstance(style, str):
        found = DESIGN_STYLES.get(style)
        if found is None:
            raise VizSpecError(
                f"Unknown style {style!r}; named styles: {', '.join(map(repr, DESIGN_STYLES))}, "
                "or pass a GraphvizStyle(...)."
            )
        return found
    raise ArgumentTypeError(
        f"style must be a name in DESIGN_STYLES or a GraphvizStyle, got {type(style).__name__} {style!r:.60}."
    )


def _format_of(filename: Any) -> str:
    if not isinstance(filename, (str, os.PathLike)):
        raise ArgumentTypeError(f"filename must be a str or a path, got {type(filename).__name__} {filename!r:.60}.")
    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise VizSpecError(
            f"filename {os.fspath(filename)!r} ends in {suffix or 'no suffix'!r}; the suffix picks the format: "
            f"{', '.join(FORMATS)}."
        )
    return FORMATS[suffix]


# -- DOT text ------------------------------------------------------------------------


def to_dot(
    graph: VizGraph,
    orient: str = "TB",
    show_types: bool = False,
    style: str | GraphvizStyle = "default",
    show_legend: bool = False,
) -> str:
    """The DOT text of a picture; the same graph and arguments always give the same bytes.

    Args:
        graph: what :func:`build_graph` returned.
        orient: the direction of flow: "TB" (top to bottom), "LR", "BT" or "RL".
        show_types: also write each node's parameter annotations, each value's
            annotation and the inputs' types.
        style: a name in :data:`DESIGN_STYLES` or a :class:`GraphvizStyle`.
        show_legend: also draw a "Legend" frame with one sample box per kind of box
            the picture holds (input, optional input, node, async node, pipeline, mapped pipeline).

    Returns:
        DOT source text ending in a newline.

    Raises:
        VizSpecError: ``orient`` or the style name is not one allowed.
        ArgumentTypeError: ``show_types`` or ``show_legend`` is not a bool, or ``style`` of the wrong type.
    """
    _check_orient(orient)
    _check_bool("show_types", show_types)
    _check_bool("show_legend", show_legend)
    s = _resolve_style(style)
    title = {"label": _Html(f"<B>{_esc(graph.name)}</B>"), "labelloc": "t"} if graph.name else {}
    lines = [
        f"digraph {_quote(graph.name or 'pipeline')} {{",
        "  graph "
        + _attrs(
            rankdir=orient,
            bgcolor=s.background,
            fontname=s.font,
            fontsize=_num(s.font_size + 2),
            fontcolor=s.font_color,
            nodesep="0.3",
            ranksep="0.4",
            **title,
        ),
        "  node "
        + _attrs(
            fontname=s.font,
            fontsize=_num(s.font_size),
            fontcolor=s.font_color,
            margin="0.08,0.04",
            penwidth=_num(s.pen_width),
        ),
        "  edge "
        + _attrs(
            color=s.edge_color,
            fontname=s.font,
            fontsize=_num(s.font_size - 2),
            fontcolor=s.muted_color,
            arrowsize="0.7",
            penwidth=_num(s.pen_width),
        ),
    ]
    _write_level(lines, graph, "", "  ", show_types, s)
    for e in graph.edges:
        tail = _quote(e.source) + (f":{_quote('out_' + e.port)}" if e.port else "")
        attrs = {"id": f"edge:{e.source}:{e.port}->{e.target}"}
        # A value keeps its name along an edge unless a nested pipeline renames it;
        # the port it leaves from already names it, so only renames need a label.
        label = " → ".join(e.names) if len(e.names) > 1 else ""
        if e.mapped:
            attrs.update(
                label=f"map over {label or e.names[0]}",
                color=s.map_color,
                fontcolor=s.map_color,
                penwidth=_num(2 * s.pen_width),
            )
        elif label:
            attrs["label"] = label
        if not e.port and s.input_edge_color and not e.mapped:  # an edge leaving an input
            attrs["color"] = s.input_edge_color
        lines.append(f"  {tail} -> {_quote(e.target)} " + _attrs(**attrs))
    if show_legend:
        _write_legend(lines, graph, s)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _write_level(lines: list[str], graph: VizGraph, cluster: str, pad: str, show_types: bool, s: GraphvizStyle) -> None:
    lines.extend(pad + _quote(n.id) + " " + _node_attrs(n, show_types, s) for n in graph.nodes if n.cluster == cluster)
    for c in graph.clusters:
        if c.parent != cluster:
            continue
        rows = [f"<B>{_esc(c.name)}</B>", _muted("pipeline", s)]
        if c.map_over:
            rows.append(_font(f"map over {', '.join(c.map_over)} ({c.map_mode})", s.map_color, s.font_size - 1))
        rows += [_muted(f"out: {inner} → {outer}", s) for inner, outer in c.renamed]
        border = s.map_color if c.map_over else s.cluster_border
        lines.append(f"{pad}subgraph {_quote(c.id)} {{")
        lines.append(
            pad
            + "  graph "
            + _attrs(
                id=c.id,
                label=_Html(_table(rows, s)),
                style="rounded,filled,dashed" if c.map_over else "rounded,filled",
                fillcolor=s.cluster_fill,
                color=border,
                penwidth=_num(s.pen_width * (2 if c.map_over else 1)),
            )
        )
        _write_level(lines, graph, c.id, pad + "  ", show_types, s)
        lines.append(pad + "}")


def _write_legend(lines: list[str], graph: VizGraph, s: GraphvizStyle) -> None:
    """A frame holding one sample box per kind of box in ``graph``, drawn as the real ones are."""
    kinds = {n.kind for n in graph.nodes}
    has_pipeline = "pipeline" in kinds or bool(graph.clusters)
    samples = [
        ("input" in kinds, VizNode("legend:input", "input", "input")),
        (
            any(n.default is not None for n in graph.nodes),
            VizNode("legend:optional", "input", "optional", default="default"),
        ),
        ("node" in kinds, VizNode("legend:node", "node", "node", outputs=(VizPort("output"),))),
        (any(n.is_async for n in graph.nodes), VizNode("legend:async", "node", "async node", is_async=True)),
        (has_pipeline, VizNode("legend:pipeline", "pipeline", "pipeline", outputs=(VizPort("output"),))),
        (
            any(n.map_over for n in graph.nodes) or any(c.map_over for c in graph.clusters),
            VizNode("legend:mapped", "pipeline", "mapped", map_over=("items",), map_mode="zip"),
        ),
    ]
    lines.append('  subgraph "cluster_legend" {')
    lines.append(
        "    graph " + _attrs(id="cluster_legend", label=_Html("<B>Legend</B>"), style="rounded", color=s.muted_color)
    )
    lines.extend("    " + _quote(n.id) + " " + _node_attrs(n, False, s) for shown, n in samples if shown)
    lines.append("  }")


def _node_attrs(n: VizNode, show_types: bool, s: GraphvizStyle) -> str:
    if n.kind == "input":
        text = _esc(n.name)
        extra = (f": {n.type}" if show_types and n.type else "") + (f" = {n.default}" if n.default is not None else "")
        label = text + (_muted(extra, s) if extra else "")
        dashed = ",dashed" if n.default is not None else ""  # optional inputs: a dashed outline as well as "= value"
        rounded = "rounded," if s.input_shape == "box" else ""
        return _attrs(
            id=n.id,
            label=_Html(label),
            shape=s.input_shape,
            style=f"{rounded}filled{dashed}",
            fillcolor=s.input_fill,
            color=s.input_border,
        )
    head = [f"<B>{_esc(n.name)}</B>"]
    if n.is_async:
        head.append(_font("async", s.async_color))
    if n.kind == "pipeline":
        head.append(_muted("pipeline", s))
    if n.map_over:
        head.append(_font(f"map over {', '.join(n.map_over)} ({n.map_mode})", s.map_color, s.font_size - 1))
    if show_types:
        head += [_muted(f"{p}: {t}" if t else p, s) for p, t in n.params]
    ports = []
    for p in n.outputs:
        text = f"{p.inner} → {p.name}" if p.inner else p.name
        text += f": {p.type}" if show_types and p.type else ""
        ports.append((p.name, _esc(text)))
    if show_types and n.returns:
        ports.append(("", _muted(f"-> {n.returns}", s)))
    if n.kind == "pipeline":
        fill, border, peripheries = s.pipeline_fill, s.map_color if n.map_over else s.pipeline_border, "2"
    else:
        fill, border, peripheries = s.node_fill, s.async_color if n.is_async else s.node_border, "1"
    rounded = "rounded," if s.node_shape == "box" else ""
    return _attrs(
        id=n.id,
        label=_Html(_table(head, s, ports)),
        shape=s.node_shape,
        style=f"{rounded}filled",
        fillcolor=fill,
        color=border,
        peripheries=peripheries,
        penwidth=_num(s.pen_width * (2 if n.is_async or n.map_over else 1)),
    )


def _table(rows: list[str], s: GraphvizStyle, ports: list[tuple[str, str]] | None = None) -> str:
    """An HTML-like label: centred heading rows, then one left-aligned row per output (its port)."""
    out = ['<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">']
    out += [f"<TR><TD>{row}</TD></TR>" for row in rows]
    if ports:
        out.append("<HR/>")
        for port, text in ports:
            attr = f' PORT="{_esc("out_" + port)}"' if port else ""
            out.append(f'<TR><TD ALIGN="LEFT"{attr}>{text}</TD></TR>')
    out.append("</TABLE>")
    return "".join(out)


def _font(text: str, color: str, size: float | None = None) -> str:
    size_attr = f' POINT-SIZE="{_num(size)}"' if size is not None else ""
    return f'<FONT COLOR="{_esc(color)}"{size_attr}>{_esc(text)}</FONT>'


def _muted(text: str, s: GraphvizStyle) -> str:
    return _font(text, s.muted_color, s.font_size - 1)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


class _Html(str):
    """An HTML-like label: written between ``<`` and ``>``, not quoted."""

    __slots__ = ()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _num(value: float) -> str:
    return f"{value:g}"


def _attrs(**attrs: str) -> str:
    # keyword order is the order written: part of what keeps the text byte-stable
    parts = [f"{k}=<{v}>" if isinstance(v, _Html) else f"{k}={_quote(v)}" for k, v in attrs.items()]
    return "[" + ", ".join(parts) + "]"


# -- rendering -----------------------------------------------------------------------


_INSTALL = (
    "Rendering a picture needs the `graphviz` Python package and Graphviz's `dot` program; {missing}. "
    "Install the package with `pip install 'hypernodes[viz]'` and the program from your system's packages "
    "(e.g. `apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`). "
    "Without them `.source` still gives the DOT text, and filename='picture.dot' writes it."
)


def _render(source: str, fmt: str) -> bytes:
    # Imported here, not at the top: graphviz is an optional extra, and `.source`
    # and `.dot` files must work without it.
    try:
        import graphviz
    except ImportError as exc:
        raise GraphvizNotFoundError(_INSTALL.format(missing="the `graphviz` package is not installed")) from exc
    try:
        data: bytes = graphviz.pipe("dot", fmt, source.encode("utf-8"))
    except graphviz.ExecutableNotFound as exc:
        raise GraphvizNotFoundError(_INSTALL.format(missing="the `dot` program is not on PATH")) from exc
    return data


class Diagram:
    """A pipeline's picture: its DOT text, rendered on demand.

    Shows inline in Jupyter (as SVG). Rendering needs ``hypernodes[viz]`` and the
    ``dot`` program; ``source`` and ``graph`` do not.

    Attributes:
        source: the DOT text.
        graph: the :class:`VizGraph` it was written from.
    """

    __slots__ = ("_svg", "graph", "source")

    def __init__(self, source: str, graph: VizGraph) -> None:
        self.source = source
        self.graph = graph
        self._svg: str | None = None

    def pipe(self, format: str = "svg") -> bytes:
        """The picture rendered by ``dot``.

        Args:
            format: "svg", "png" or "pdf" (or "dot": the DOT text itself).

        Returns:
            The file's bytes.

        Raises:
            VizSpecError: ``format`` is not one of those.
            GraphvizNotFoundError: the ``graphviz`` package or the ``dot`` program is missing.
        """
        if format not in FORMATS.values():
            raise VizSpecError(f"format must be one of {', '.join(map(repr, FORMATS.values()))}; got {format!r}.")
        if format == "dot":
            return self.source.encode("utf-8")
        return _render(self.source, format)

    def svg(self) -> str:
        """The picture as SVG text (rendered once, then kept).

        Raises:
            GraphvizNotFoundError: the ``graphviz`` package or the ``dot`` program is missing.
        """
        if self._svg is None:
            self._svg = self.pipe("svg").decode("utf-8")
        return self._svg

    def save(self, filename: str | os.PathLike[str]) -> Path:
        """Write the picture; the suffix picks the format (.svg, .png, .pdf, or .dot for the DOT text).

        Returns:
            The path written.

        Raises:
            VizSpecError: the suffix is not one of those.
            GraphvizNotFoundError: rendering is needed (not .dot) and ``graphviz`` or ``dot`` is missing.
        """
        path = Path(filename)
        path.write_bytes(self.pipe(_format_of(filename)))
        return path

    def _repr_svg_(self) -> str:
        return self.svg()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"image/svg+xml": self.svg(), "text/plain": repr(self)}

    def __repr__(self) -> str:
        g = self.graph
        return f"<Diagram {g.name!r}: {len(g.nodes)} boxes, {len(g.edges)} edges, {len(g.clusters)} clusters>"


RETURN_TYPES = ("auto", "graphviz", "html")


def visualize(
    pipeline: _PipelineLike,
    filename: str | os.PathLike[str] | None = None,
    orient: str = "TB",
    depth: int | None = 1,
    show_types: bool = False,
    style: str | GraphvizStyle = "default",
    *,
    flatten: bool = False,
    show_legend: bool = False,
    min_arg_group_size: int | None = None,
    return_type: str = "auto",
) -> Any:
    """Draw ``pipeline``: its inputs (defaults shown as ``k = 2``), its nodes with their
    outputs (one row each), the values flowing between them, and nested pipelines.

    Args:
        pipeline: the pipeline to draw.
        filename: also write the picture there; the suffix picks the format:
            .svg, .png, .pdf, or .dot (the DOT text, which needs no Graphviz).
        orient: "TB" (top to bottom), "LR" (left to right), "BT" or "RL".
        depth: 1 draws each nested pipeline as one box (its renames on its rows
            and edges); 2 expands those of the top level into frames around their
            own nodes, and so on; None expands every level.
        show_types: also show each node's parameter annotations, each output's
            return annotation and each input's type.
        style: a name in :data:`DESIGN_STYLES` ("default", "dark", "mono", and the
            notebook-era "monochrome", "minimal", "vibrant", "professional", "pastel")
            or a :class:`GraphvizStyle`.
        flatten: draw the nested pipelines that ``depth`` expands inline, without
            the frame around each one's nodes.
        show_legend: also draw a "Legend" frame with a sample of each kind of box shown.
        min_arg_group_size: notebook-era; this picture draws every input as its own
            box, so an int is ignored with one ``IgnoredArgumentWarning`` (None, no
            grouping, is what it draws anyway).
        return_type: "auto" (a :class:`Diagram`), "graphviz" (a ``graphviz.Source``
            of the same DOT text; needs the ``graphviz`` package) or "html" (an
            ``IPython.display.HTML`` holding the SVG; the Diagram when IPython is absent).

    Returns:
        A :class:`Diagram` (``.source`` is the DOT text; it shows as SVG in Jupyter),
        or what ``return_type`` asks for.

    Raises:
        ArgumentTypeError: an argument has the wrong type.
        VizSpecError: ``orient``, ``depth``, ``return_type``, the style name or the suffix is not one allowed.
        GraphvizNotFoundError: ``filename``, ``return_type="graphviz"`` or ``"html"`` needs
            rendering and ``graphviz`` or ``dot`` is missing.
    """
    # every argument is checked before anything is drawn or written
    if filename is not None:
        _format_of(filename)
    _check_orient(orient)
    _check_bool("show_types", show_types)
    _check_bool("flatten", flatten)
    _check_bool("show_legend", show_legend)
    _resolve_style(style)
    if return_type not in RETURN_TYPES or not isinstance(return_type, str):
        raise VizSpecError(f"return_type must be one of {', '.join(map(repr, RETURN_TYPES))}; got {return_type!r}.")
    if min_arg_group_size is not None:
        if isinstance(min_arg_group_size, bool) or not isinstance(min_arg_group_size, int):
            raise ArgumentTypeError(
                f"min_arg_group_size must be an int or None, got {type(min_arg_group_size).__name__} "
                f"{min_arg_group_size!r:.60}."
            )
        warnings.warn(
            f"visualize(min_arg_group_size={min_arg_group_size}) is ignored: this picture draws every input "
            "as its own box (the notebook-era grouping of inputs into one box is not drawn).",
            IgnoredArgumentWarning,
            stacklevel=_caller_level(),
        )
    graph = build_graph(pipeline, depth)
    if flatten:
        graph = VizGraph(graph.name, tuple(dataclasses.replace(n, cluster="") for n in graph.nodes), graph.edges, ())
    diagram = Diagram(to_dot(graph, orient, show_types, style, show_legend), graph)
    if filename is not None:
        diagram.save(filename)
    if return_type == "graphviz":
        try:
            import graphviz  # optional extra: only this return type and rendering need it
        except ImportError as exc:
            raise GraphvizNotFoundError(_INSTALL.format(missing="the `graphviz` package is not installed")) from exc
        return graphviz.Source(diagram.source)
    if return_type == "html":
        try:
            from IPython.display import HTML  # present wherever HTML can be shown
        except ImportError:
            return diagram
        return HTML(diagram.svg())  # type: ignore[no-untyped-call]
    return diagram


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the user's line: past ``Pipeline.visualize`` too."""
    frame = sys._getframe(2)  # visualize's caller
    return 3 if frame.f_code.co_name == "visualize" and frame.f_globals.get("__name__") == "hypernodes.pipeline" else 2
