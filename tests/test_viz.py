"""Pictures: build_graph's data, the DOT text (golden files), real renders, and the arguments.

The golden DOT files live in ``tests/golden/``; after an intended change of the
picture, rewrite them with ``HYPERNODES_UPDATE_GOLDEN=1 python -m pytest tests/test_viz.py``
and review the diff.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

import hypernodes
from hypernodes import DESIGN_STYLES, ArgumentTypeError, GraphvizStyle, Pipeline, build_graph, node, visualize
from hypernodes.viz import Diagram, GraphvizNotFoundError, VizEdge, VizNode, VizPort, VizSpecError, to_dot

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parent.parent
SVG = "{http://www.w3.org/2000/svg}"

can_render = pytest.mark.skipif(
    importlib.util.find_spec("graphviz") is None or shutil.which("dot") is None,
    reason="rendering needs the graphviz package and the dot program: pip install 'hypernodes[viz]', "
    "apt-get install graphviz (.ci/run installs both)",
)


# -- the pipelines drawn ------------------------------------------------------------------


def simple() -> Pipeline:
    """x -> double (k defaults to 2) -> doubled -> add_one -> result."""

    @node(output_name="doubled")
    def double(x: int, k: int = 2) -> int:
        return x * k

    @node(output_name="result")
    def add_one(doubled: int) -> int:
        return doubled + 1

    return Pipeline(nodes=[double, add_one], name="simple")


def quickstart() -> Pipeline:
    """The README's quick-start pipeline: clean, count (a tuple output), score."""

    @node(output_name="cleaned")
    def clean(text: str) -> str:
        return text.strip().lower()

    @node(output_name=("n_words", "n_chars"))
    def count(cleaned: str) -> tuple[int, int]:
        return len(cleaned.split()), len(cleaned)

    @node(output_name="score")
    def score(n_words: int, n_chars: int, weight: float = 1.0) -> float:
        return weight * n_chars / max(n_words, 1)

    return Pipeline(nodes=[clean, count, score], name="text")


def nested() -> Pipeline:
    """The quick-start pipeline as a node reading `doc` (its `text`) and exposing `score` as `s`."""

    @node(output_name="report")
    def report(s: float) -> str:
        return f"{s:.1f}"

    inner = quickstart().as_node(input_mapping={"doc": "text"}, output_mapping={"score": "s"}, name="scorer")
    return Pipeline(nodes=[inner, report], name="outer")


def mapped(map_mode: str = "zip") -> Pipeline:
    """The quick-start pipeline mapped over a list of docs, then averaged."""

    @node(output_name="mean")
    def average(scores: list[float]) -> float:
        return sum(scores) / len(scores)

    per_doc = quickstart().as_node(
        input_mapping={"docs": "text"},
        output_mapping={"score": "scores"},
        map_over="docs",
        map_mode=map_mode,
        name="per_doc",
    )
    return Pipeline(nodes=[per_doc, average], name="batch")


def three_levels() -> Pipeline:
    """simple() inside `middle` inside the top level: two nested levels."""

    @node(output_name="shown")
    def show(result: int) -> str:
        return str(result)

    middle = Pipeline(nodes=[simple(), show], name="middle")
    return Pipeline(nodes=[middle], name="top")


GOLDENS: dict[str, Callable[[], Diagram]] = {
    "simple": lambda: visualize(simple()),
    "tuple_outputs": lambda: visualize(quickstart()),
    "tuple_outputs_types": lambda: visualize(quickstart(), show_types=True),
    "nested_depth1": lambda: visualize(nested(), depth=1),
    "nested_depth2": lambda: visualize(nested(), depth=2),
    "mapped_depth1": lambda: visualize(mapped(), depth=1),
    "mapped_depth2": lambda: visualize(mapped(), depth=2),
}


def svg_tree(diagram: Diagram) -> ET.Element:
    return ET.fromstring(diagram.svg())


def svg_ids(root: ET.Element, kind: str) -> set[str]:
    """The ids of the SVG groups of one kind ("node", "edge" or "cluster")."""
    return {g.get("id", "") for g in root.iter(f"{SVG}g") if g.get("class") == kind}


def svg_text(root: ET.Element) -> str:
    return " ".join(t.text or "" for t in root.iter(f"{SVG}text"))


def group_text(root: ET.Element, element_id: str) -> str:
    """The text of one SVG group (a box), its pieces joined as drawn."""
    group = next(g for g in root.iter(f"{SVG}g") if g.get("id") == element_id)
    return "".join(t.text or "" for t in group.iter(f"{SVG}text"))


def position(root: ET.Element, element_id: str) -> tuple[float, float]:
    """Where (x, y) the first text of an SVG group is drawn."""
    group = next(g for g in root.iter(f"{SVG}g") if g.get("id") == element_id)
    text = next(group.iter(f"{SVG}text"))
    return float(text.get("x", "nan")), float(text.get("y", "nan"))


# -- golden DOT text and determinism --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_dot_text_matches_golden_file(name: str) -> None:
    """The DOT text of each reference pipeline is exactly the reviewed golden file."""
    source = GOLDENS[name]().source
    path = GOLDEN / f"{name}.dot"
    if os.environ.get("HYPERNODES_UPDATE_GOLDEN") == "1":
        path.write_text(source, encoding="utf-8")
    assert source == path.read_text(encoding="utf-8")


def test_dot_text_is_identical_when_built_twice() -> None:
    """Building the same pipeline twice (fresh functions, fresh objects) gives byte-identical DOT."""
    for make in GOLDENS.values():
        assert make().source == make().source


def test_dot_text_is_identical_in_other_processes() -> None:
    """A fresh interpreter, with another hash seed, writes the same DOT bytes as this one."""
    code = "from tests.test_viz import GOLDENS; print(''.join(GOLDENS[n]().source for n in sorted(GOLDENS)), end='')"
    here = "".join(GOLDENS[n]().source for n in sorted(GOLDENS))
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True)
        assert out.stdout.decode("utf-8") == here


def test_default_values_with_memory_addresses_are_written_stably() -> None:
    """A default whose repr holds a memory address is written without it, so the text stays stable."""
    sentinel = object()

    @node(output_name="y")
    def f(x: int, marker: object = sentinel) -> int:
        return x

    diagram = visualize(Pipeline(nodes=[f]))
    assert "0x" not in diagram.source
    assert [n.default for n in diagram.graph.nodes if n.name == "marker"] == ["<object object>"]


# -- what the picture shows -------------------------------------------------------------------


def test_build_graph_returns_the_picture_as_plain_data() -> None:
    """build_graph lists the inputs, nodes (a tuple output as one node with two ports) and edges by value."""
    graph = build_graph(quickstart())
    assert graph.name == "text"
    assert graph.clusters == ()
    boxes = {n.id: n for n in graph.nodes}
    assert list(boxes) == ["node:clean", "node:count", "node:score", "input:text", "input:weight"]
    assert boxes["node:count"].outputs == (VizPort("n_words", "", "int"), VizPort("n_chars", "", "int"))
    assert boxes["input:weight"] == VizNode("input:weight", "input", "weight", type="float", default="1.0")
    assert boxes["input:text"].default is None
    assert graph.edges == (
        VizEdge("input:text", "", "node:clean", ("text",)),
        VizEdge("node:clean", "cleaned", "node:count", ("cleaned",)),
        VizEdge("node:count", "n_words", "node:score", ("n_words",)),
        VizEdge("node:count", "n_chars", "node:score", ("n_chars",)),
        VizEdge("input:weight", "", "node:score", ("weight",)),
    )


@can_render
def test_svg_has_every_input_node_and_edge() -> None:
    """The rendered SVG holds one group per input and node and one per edge, with their names shown."""
    root = svg_tree(visualize(quickstart()))
    assert svg_ids(root, "node") == {"input:text", "input:weight", "node:clean", "node:count", "node:score"}
    assert svg_ids(root, "edge") == {
        "edge:input:text:->node:clean",
        "edge:node:clean:cleaned->node:count",
        "edge:node:count:n_words->node:score",
        "edge:node:count:n_chars->node:score",
        "edge:input:weight:->node:score",
    }
    words = svg_text(root).split()
    for name in ("text", "clean", "cleaned", "count", "n_words", "n_chars", "score"):
        assert name in words


@can_render
def test_inputs_show_their_defaults() -> None:
    """An input every reader has a default for shows it ("k = 2"); a required input shows no value."""
    root = svg_tree(visualize(simple()))
    assert group_text(root, "input:k") == "k = 2"
    assert group_text(root, "input:x") == "x"


def test_an_input_read_with_different_defaults_shows_each() -> None:
    """Readers that disagree on an input's default show every value; one reader without a default makes it required."""

    @node(output_name="a")
    def f(k: int = 1) -> int:
        return k

    @node(output_name="b")
    def g(k: int = 2) -> int:
        return k

    @node(output_name="c")
    def h(k: int) -> int:
        return k

    assert [n.default for n in build_graph(Pipeline(nodes=[f, g])).nodes if n.kind == "input"] == ["1 | 2"]
    assert [n.default for n in build_graph(Pipeline(nodes=[f, h])).nodes if n.kind == "input"] == [None]


@can_render
def test_a_tuple_output_node_is_one_node_with_one_port_per_output() -> None:
    """`count` returns two values: one box, and each downstream edge leaves from its own output row."""
    diagram = visualize(quickstart())
    assert [n.id for n in diagram.graph.nodes].count("node:count") == 1
    assert '"node:count":"out_n_words" -> "node:score"' in diagram.source
    assert '"node:count":"out_n_chars" -> "node:score"' in diagram.source
    root = svg_tree(diagram)
    count = next(g for g in root.iter(f"{SVG}g") if g.get("id") == "node:count")
    assert {"n_words", "n_chars"} <= {t.text for t in count.iter(f"{SVG}text")}


def test_async_nodes_are_marked() -> None:
    """An async node carries an "async" line and the style's async colour; a sync node neither."""

    @node(output_name="page")
    async def fetch(url: str) -> str:
        return url

    @node(output_name="size")
    def measure(page: str) -> int:
        return len(page)

    graph = build_graph(Pipeline(nodes=[fetch, measure]))
    assert [n.is_async for n in graph.nodes if n.kind == "node"] == [True, False]
    style = GraphvizStyle(async_color="#123456")
    lines = visualize(Pipeline(nodes=[fetch, measure]), style=style).source.splitlines()
    fetch_line = next(line for line in lines if line.startswith('  "node:fetch"'))
    measure_line = next(line for line in lines if line.startswith('  "node:measure"'))
    assert ">async<" in fetch_line
    assert 'color="#123456"' in fetch_line
    assert "async" not in measure_line
    assert "#123456" not in measure_line


@can_render
def test_nested_pipeline_is_one_box_at_depth_1_with_its_renames() -> None:
    """At depth 1 a nested pipeline is one box; its renames show on its output row and incoming edge."""
    diagram = visualize(nested(), depth=1)
    root = svg_tree(diagram)
    assert svg_ids(root, "node") == {"node:scorer", "node:report", "input:doc", "input:weight"}
    assert svg_ids(root, "cluster") == set()
    text = svg_text(root)
    assert "score → s" in text  # the output row: inner name → outer name
    assert "doc → text" in text  # the edge label: outer name → inner name
    assert "pipeline" in text


@can_render
def test_nested_pipeline_is_a_cluster_at_depth_2_with_its_renames() -> None:
    """At depth 2 the nested pipeline is a frame around its own nodes; edges cross into it by name."""
    root = svg_tree(visualize(nested(), depth=2))
    assert svg_ids(root, "cluster") == {"cluster:scorer"}
    assert svg_ids(root, "node") == {
        "node:scorer/clean",
        "node:scorer/count",
        "node:scorer/score",
        "node:report",
        "input:doc",
        "input:weight",
    }
    assert "edge:input:doc:->node:scorer/clean" in svg_ids(root, "edge")
    assert "edge:node:scorer/score:score->node:report" in svg_ids(root, "edge")
    text = svg_text(root)
    assert "doc → text" in text
    assert "score → s" in text  # on the edge leaving the frame
    assert "out: score → s" in text  # and in the frame's heading


def test_depth_expands_that_many_levels_and_none_expands_all() -> None:
    """depth=n expands n-1 nesting levels below the top; depth=None expands every level."""

    def shape(depth: int | None) -> tuple[list[str], list[str]]:
        graph = build_graph(three_levels(), depth=depth)
        return [c.id for c in graph.clusters], [n.id for n in graph.nodes if n.kind != "input"]

    assert shape(1) == ([], ["node:middle"])
    assert shape(2) == (["cluster:middle"], ["node:middle/simple", "node:middle/show"])
    expanded = (
        ["cluster:middle", "cluster:middle/simple"],
        ["node:middle/simple/double", "node:middle/simple/add_one", "node:middle/show"],
    )
    assert shape(3) == expanded
    assert shape(None) == expanded
    assert shape(10) == expanded


def test_a_pipeline_listed_in_nodes_is_drawn_as_a_nested_pipeline() -> None:
    """A Pipeline put straight into `nodes` shows as a pipeline box named after it."""
    graph = build_graph(three_levels())
    assert [(n.id, n.kind) for n in graph.nodes if n.name == "middle"] == [("node:middle", "pipeline")]


@can_render
@pytest.mark.parametrize("depth", [1, 2])
def test_map_over_boundary_and_mapped_input_are_marked(depth: int) -> None:
    """A mapped nested pipeline says what it maps over, and the list going in is drawn as mapped."""
    style = DESIGN_STYLES["default"]
    diagram = visualize(mapped(), depth=depth)
    (edge,) = [e for e in diagram.graph.edges if e.source == "input:docs"]
    assert edge.mapped
    assert edge.names == ("docs", "text")
    assert not any(e.mapped for e in diagram.graph.edges if e.source != "input:docs")
    text = svg_text(svg_tree(diagram))
    assert "map over docs (zip)" in text  # the boundary: on the box, or on the frame
    assert "map over docs → text" in text  # the mapped edge's label
    mapped_line = next(line for line in diagram.source.splitlines() if '"input:docs" ->' in line)
    assert f'color="{style.map_color}"' in mapped_line
    if depth == 2:  # the frame of a mapped pipeline is dashed, in the map colour
        assert f'style="rounded,filled,dashed", fillcolor="{style.cluster_fill}", color="{style.map_color}"' in (
            diagram.source
        )


def test_map_mode_is_shown() -> None:
    """A product-mapped nested pipeline says "product"."""
    assert "map over docs (product)" in visualize(mapped("product")).source


def test_twin_node_names_get_distinct_ids() -> None:
    """Two nodes may share a name; each still gets its own box."""

    def ident(x: int) -> int:
        return x

    a = node(ident, output_name="a")
    b = node(lambda a: a, output_name="b", name="ident")
    ids = [n.id for n in build_graph(Pipeline(nodes=[a, b])).nodes]
    assert ids == ["node:ident~0", "node:ident~1", "input:x"]


# -- each argument does what it says -------------------------------------------------------------


@can_render
@pytest.mark.parametrize(
    ("orient", "earlier"),
    [("TB", "above"), ("BT", "below"), ("LR", "left of"), ("RL", "right of")],
)
def test_orient_sets_the_direction_of_flow(orient: str, earlier: str) -> None:
    """In the rendered picture an input sits above / below / left of / right of the node reading it."""
    diagram = visualize(simple(), orient=orient)
    assert f'rankdir="{orient}"' in diagram.source
    root = svg_tree(diagram)
    (x0, y0), (x1, y1) = position(root, "input:x"), position(root, "node:add_one")
    # SVG y grows downwards
    assert {"above": y0 < y1, "below": y0 > y1, "left of": x0 < x1, "right of": x0 > x1}[earlier]


@pytest.mark.parametrize("orient", ["tb", "XY", "", None, 1])
def test_a_bad_orient_names_the_allowed_ones(orient: object) -> None:
    """orient must be TB, LR, BT or RL; the error lists them."""
    with pytest.raises(VizSpecError, match=r"orient must be one of 'TB', 'LR', 'BT', 'RL'"):
        visualize(simple(), orient=orient)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("depth", "error"), [(0, VizSpecError), (-1, VizSpecError), ("2", ArgumentTypeError), (True, ArgumentTypeError)]
)
def test_a_bad_depth_is_refused(depth: object, error: type[Exception]) -> None:
    """depth is an int of 1 or more, or None."""
    with pytest.raises(error, match="depth must be"):
        visualize(nested(), depth=depth)  # type: ignore[arg-type]


def test_show_types_adds_parameter_and_return_annotations() -> None:
    """show_types=True adds each parameter's, output's and input's annotation; False shows none."""
    plain = visualize(quickstart()).source
    typed = visualize(quickstart(), show_types=True).source
    assert ": str" not in plain
    assert ": int" not in plain
    for shown in ("cleaned: str", "n_words: int", "n_chars: int", "score: float", "text: str", "weight: float"):
        assert shown in typed
    assert "weight<FONT" in typed  # the input: its name, then its type and default
    assert ": float = 1.0" in typed


def test_show_types_reads_evaluated_annotations_too() -> None:
    """Annotations that are objects (not postponed strings) show the same way, a tuple split per output."""

    def split(line: str) -> tuple[str, int]:
        return line, len(line)

    split.__annotations__ = {"line": str, "return": tuple[str, int]}
    typed = visualize(Pipeline(nodes=[node(split, output_name=("word", "size"))]), show_types=True).source
    assert "word: str" in typed
    assert "size: int" in typed
    assert "line: str" in typed


def test_show_types_keeps_a_return_annotation_that_does_not_split() -> None:
    """A tuple-output node annotated with something other than tuple[...] shows that annotation whole."""

    @node(output_name=("a", "b"))
    def pair(x: int) -> list[int]:
        return [x, x]

    typed = visualize(Pipeline(nodes=[pair]), show_types=True).source
    assert "-&gt; list[int]" in typed
    assert "-&gt;" not in visualize(Pipeline(nodes=[pair])).source


def test_show_types_must_be_a_bool() -> None:
    """show_types="yes" is refused rather than read as true."""
    with pytest.raises(ArgumentTypeError, match="show_types must be True or False"):
        visualize(simple(), show_types="yes")  # type: ignore[arg-type]


def test_style_by_name_or_object_sets_the_colours() -> None:
    """A style name picks one of DESIGN_STYLES; a GraphvizStyle object is used as given."""
    default = visualize(simple()).source
    assert visualize(simple(), style="default").source == default
    dark = visualize(simple(), style="dark").source
    assert f'bgcolor="{DESIGN_STYLES["dark"].background}"' in dark
    assert dark != default
    own = visualize(simple(), style=GraphvizStyle(node_fill="#abcdef", font="Courier")).source
    assert 'fillcolor="#abcdef"' in own
    assert 'fontname="Courier"' in own
    assert "#abcdef" not in default


@can_render
@pytest.mark.parametrize("name", sorted(DESIGN_STYLES))
def test_every_named_style_renders(name: str) -> None:
    """Each named style is valid DOT that `dot` renders, with the style's background."""
    root = svg_tree(visualize(nested(), depth=2, style=name))
    background = DESIGN_STYLES[name].background
    assert any(p.get("fill") == background for p in root.iter(f"{SVG}polygon"))


@pytest.mark.parametrize(
    ("style", "error", "words"),
    [
        ("neon", VizSpecError, "Unknown style 'neon'; named styles: 'default', 'dark', 'mono'"),
        (3, ArgumentTypeError, "style must be a name in DESIGN_STYLES or a GraphvizStyle"),
    ],
)
def test_a_bad_style_is_refused(style: object, error: type[Exception], words: str) -> None:
    """An unknown style name lists the named ones; a value of another type says what is accepted."""
    with pytest.raises(error, match=words):
        visualize(simple(), style=style)  # type: ignore[arg-type]


@can_render
def test_filename_writes_the_format_its_suffix_names(tmp_path: Path) -> None:
    """filename= writes SVG, PNG, PDF or the DOT text, chosen by the suffix."""
    pipeline = quickstart()
    source = visualize(pipeline, filename=tmp_path / "p.dot").source
    assert (tmp_path / "p.dot").read_text(encoding="utf-8") == source
    visualize(pipeline, filename=str(tmp_path / "p.svg"))
    root = ET.parse(tmp_path / "p.svg").getroot()
    assert "node:count" in svg_ids(root, "node")
    visualize(pipeline, filename=tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    visualize(pipeline, filename=tmp_path / "P.PDF")
    assert (tmp_path / "P.PDF").read_bytes()[:5] == b"%PDF-"


def test_a_bad_filename_fails_before_anything_is_written(tmp_path: Path) -> None:
    """An unknown suffix lists the allowed ones, and no file is written."""
    with pytest.raises(VizSpecError, match=r"ends in '\.jpg'; the suffix picks the format: \.svg, \.png, \.pdf, \.dot"):
        visualize(simple(), filename=tmp_path / "p.jpg")
    with pytest.raises(ArgumentTypeError, match="filename must be a str or a path"):
        visualize(simple(), filename=3)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# -- notebooks, the method, the lazy names, missing Graphviz ----------------------------------------


@can_render
def test_the_diagram_shows_as_svg_in_jupyter() -> None:
    """The returned object offers SVG to Jupyter through _repr_mimebundle_ and _repr_svg_."""
    diagram = visualize(simple())
    bundle = diagram._repr_mimebundle_()
    assert ET.fromstring(bundle["image/svg+xml"]).tag == f"{SVG}svg"
    assert diagram._repr_svg_() == bundle["image/svg+xml"]
    assert bundle["text/plain"] == "<Diagram 'simple': 4 boxes, 3 edges, 0 clusters>"


def test_pipeline_visualize_is_visualize() -> None:
    """Pipeline.visualize(...) draws exactly what visualize(pipeline, ...) draws."""
    p = mapped()
    assert p.visualize().source == visualize(p).source
    args = {"orient": "LR", "depth": 2, "show_types": True, "style": "mono"}
    assert p.visualize(**args).source == visualize(p, **args).source  # type: ignore[arg-type]


def test_build_graph_and_to_dot_refuse_what_is_not_theirs() -> None:
    """build_graph draws only pipelines; to_dot checks its arguments like visualize."""
    with pytest.raises(ArgumentTypeError, match="build_graph\\(\\) draws a Pipeline, got list"):
        build_graph([1])  # type: ignore[arg-type]
    with pytest.raises(VizSpecError, match="orient"):
        to_dot(build_graph(simple()), orient="up")


def test_import_hypernodes_imports_neither_viz_nor_graphviz() -> None:
    """`import hypernodes` loads no picture code; the names load viz on use, and `.source` needs no graphviz."""
    code = (
        "import sys, hypernodes\n"
        "assert 'graphviz' not in sys.modules and 'hypernodes.viz' not in sys.modules, sorted(sys.modules)\n"
        "from hypernodes import Pipeline, node, visualize\n"
        "assert 'hypernodes.viz' in sys.modules\n"
        "p = Pipeline(nodes=[node(lambda x: x, output_name='y')])\n"
        "assert p.visualize().source.startswith('digraph')\n"
        "assert 'graphviz' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_lazy_names_are_public_and_unknown_names_still_fail() -> None:
    """The picture names are in __all__ and resolve to viz's objects; a typo is an AttributeError."""
    from hypernodes import viz

    for name in ("visualize", "GraphvizStyle", "DESIGN_STYLES", "build_graph"):
        assert name in hypernodes.__all__
        assert getattr(hypernodes, name) is getattr(viz, name)
    with pytest.raises(AttributeError, match="has no attribute 'visualise'"):
        hypernodes.visualise


def test_without_the_graphviz_package_rendering_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without graphviz, rendering raises an ImportError naming the extra and `dot`; .source and .dot work."""
    monkeypatch.setitem(sys.modules, "graphviz", None)  # makes `import graphviz` raise ImportError
    diagram = visualize(simple(), filename=tmp_path / "p.dot")
    assert diagram.source.startswith('digraph "simple"')
    with pytest.raises(GraphvizNotFoundError, match="the `graphviz` package is not installed") as info:
        diagram.svg()
    assert isinstance(info.value, ImportError)
    assert "pip install 'hypernodes[viz]'" in str(info.value)
    assert "apt-get install graphviz" in str(info.value)
    with pytest.raises(GraphvizNotFoundError):
        visualize(simple(), filename=tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.skipif(importlib.util.find_spec("graphviz") is None, reason="needs the graphviz package")
def test_without_the_dot_program_rendering_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no `dot` on PATH, rendering raises an ImportError saying the program is missing and how to get it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizNotFoundError, match="the `dot` program is not on PATH") as info:
        visualize(simple()).pipe("png")
    assert "apt-get install graphviz" in str(info.value)


def test_pipe_refuses_an_unknown_format() -> None:
    """Diagram.pipe takes svg, png, pdf or dot; "dot" gives the source itself."""
    diagram = visualize(simple())
    assert diagram.pipe("dot") == diagram.source.encode("utf-8")
    with pytest.raises(VizSpecError, match="format must be one of 'svg', 'png', 'pdf', 'dot'; got 'gif'"):
        diagram.pipe("gif")
