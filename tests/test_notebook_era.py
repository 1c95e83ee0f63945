"""The notebook-era surface: ``visualize`` keywords, ``GraphvizStyle`` field names and
``Pipeline`` attributes that code written for the notebook-era version uses.

Each test checks what the keyword or attribute does here, not only that it is accepted.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
import threading
import warnings
from pathlib import Path

import pytest

from hypernodes import (
    DESIGN_STYLES,
    GraphvizStyle,
    HypernodesEngine,
    Pipeline,
    PipelineCallback,
    UnusedInputWarning,
    node,
    visualize,
)
from hypernodes.cache import MemoryCache
from hypernodes.errors import ArgumentTypeError, ExecutorSpecError, InputError, NodeDefinitionError
from hypernodes.viz import Diagram, IgnoredArgumentWarning, VizSpecError

can_render = pytest.mark.skipif(
    importlib.util.find_spec("graphviz") is None or shutil.which("dot") is None,
    reason="rendering needs the graphviz package and the dot program",
)


@node(output_name="doubled")
def double(x: int, k: int = 2) -> int:
    return x * k


@node(output_name="result")
def add_one(doubled: int) -> int:
    return doubled + 1


@node(output_name="shown")
async def show(doubled: list[int]) -> str:
    return str(doubled)


def simple() -> Pipeline:
    return Pipeline([add_one, double], name="simple")  # declared out of order on purpose


def nested() -> Pipeline:
    inner = Pipeline([double], name="inner")
    return Pipeline([inner.as_node(map_over="x", name="per_x"), Pipeline([show], name="tail")], name="outer")


# -- visualize keywords ------------------------------------------------------------------


def test_show_legend_draws_one_sample_per_kind_of_box_shown() -> None:
    """show_legend=True adds a "Legend" frame with a sample of each kind of box the picture holds, and
    no sample for a kind it does not hold; False (the default) draws none."""
    plain = visualize(simple()).source
    assert "cluster_legend" not in plain
    legend = visualize(simple(), show_legend=True).source
    assert '"cluster_legend"' in legend
    assert '"legend:input"' in legend
    assert '"legend:optional"' in legend
    assert '"legend:node"' in legend
    assert '"legend:pipeline"' not in legend
    assert '"legend:async"' not in legend
    deep = visualize(nested(), depth=2, show_legend=True).source
    assert '"legend:pipeline"' in deep
    assert '"legend:mapped"' in deep
    assert '"legend:async"' in deep
    with pytest.raises(ArgumentTypeError, match="show_legend must be True or False"):
        visualize(simple(), show_legend="yes")  # type: ignore[arg-type]


def test_flatten_drops_the_frames_of_expanded_pipelines_and_keeps_their_nodes() -> None:
    """flatten=True draws the nodes of expanded nested pipelines at top level, without frames; the
    edges are the same as without it."""
    framed = visualize(nested(), depth=None)
    flat = visualize(nested(), depth=None, flatten=True)
    assert framed.graph.clusters
    assert not flat.graph.clusters
    assert "subgraph" not in flat.source
    assert {n.id for n in flat.graph.nodes} == {n.id for n in framed.graph.nodes}
    assert all(n.cluster == "" for n in flat.graph.nodes)
    assert flat.graph.edges == framed.graph.edges


def test_min_arg_group_size_is_ignored_with_one_warning_pointing_at_the_caller() -> None:
    """An int min_arg_group_size draws the same picture as without it and warns once, at the user's
    line (through Pipeline.visualize too); None is what this picture draws and warns nothing."""
    p = simple()
    with pytest.warns(IgnoredArgumentWarning, match=r"min_arg_group_size=2\) is ignored") as caught:
        grouped = p.visualize(min_arg_group_size=2)
    assert len(caught) == 1
    assert caught[0].filename == __file__
    with pytest.warns(IgnoredArgumentWarning) as caught:
        visualize(p, min_arg_group_size=3)
    assert len(caught) == 1
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert p.visualize(min_arg_group_size=None).source == grouped.source == visualize(p).source
    with pytest.raises(ArgumentTypeError, match="min_arg_group_size must be an int or None"):
        visualize(p, min_arg_group_size="2")  # type: ignore[arg-type]


def test_return_type_auto_is_a_diagram_and_a_bad_one_is_refused() -> None:
    """return_type="auto" returns the Diagram; a value outside auto/graphviz/html is a VizSpecError."""
    assert isinstance(visualize(simple(), return_type="auto"), Diagram)
    with pytest.raises(VizSpecError, match="return_type must be one of 'auto', 'graphviz', 'html'"):
        visualize(simple(), return_type="png")


@pytest.mark.skipif(importlib.util.find_spec("graphviz") is None, reason="needs the graphviz package")
def test_return_type_graphviz_is_a_graphviz_source_of_the_same_text() -> None:
    """return_type="graphviz" gives a graphviz.Source holding the very DOT text of the Diagram."""
    import graphviz

    got = simple().visualize(return_type="graphviz", style="pastel")
    assert isinstance(got, graphviz.Source)
    assert got.source == visualize(simple(), style="pastel").source


@can_render
def test_return_type_html_holds_the_svg(monkeypatch: pytest.MonkeyPatch) -> None:
    """return_type="html" gives IPython's HTML holding the rendered SVG; without IPython, the Diagram."""
    if importlib.util.find_spec("IPython") is not None:
        got = visualize(simple(), return_type="html")
        assert type(got).__name__ == "HTML"
        assert "<svg" in got.data
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    assert isinstance(visualize(simple(), return_type="html"), Diagram)


@pytest.mark.parametrize("name", ["monochrome", "minimal", "vibrant", "professional", "pastel"])
def test_notebook_era_style_names_are_styles_here(name: str) -> None:
    """Every notebook-era style name is in DESIGN_STYLES and draws with its own colours
    ("monochrome" is "mono")."""
    style = DESIGN_STYLES[name]
    assert f'fillcolor="{style.node_fill}"' in visualize(simple(), style=name).source
    if name == "monochrome":
        assert style is DESIGN_STYLES["mono"]
    else:
        assert style != DESIGN_STYLES["default"]


# -- GraphvizStyle's notebook-era field names -----------------------------------------------


def test_notebook_era_style_fields_set_ours() -> None:
    """The notebook-era field names set the fields they stand for; replace() keeps them."""
    s = GraphvizStyle(
        func_node_color="#ffe5b4",
        arg_node_color="#e0bbe4",
        pipeline_node_color="#111111",
        arg_edge_color="#957dad",
        output_edge_color="#ffdab9",
        font_name="Courier",
        background_color="#fafafa",
        node_border_width=3,
        cluster_border_color="#222222",
        cluster_fill_color="#333333",
        font_size=13,
    )
    assert (s.node_fill, s.input_fill, s.pipeline_fill, s.input_edge_color, s.edge_color) == (
        "#ffe5b4",
        "#e0bbe4",
        "#111111",
        "#957dad",
        "#ffdab9",
    )
    assert (s.font, s.background, s.pen_width, s.cluster_border, s.cluster_fill) == (
        "Courier",
        "#fafafa",
        3,
        "#222222",
        "#333333",
    )
    assert s == GraphvizStyle(
        node_fill="#ffe5b4",
        input_fill="#e0bbe4",
        pipeline_fill="#111111",
        input_edge_color="#957dad",
        edge_color="#ffdab9",
        font="Courier",
        background="#fafafa",
        pen_width=3,
        cluster_border="#222222",
        cluster_fill="#333333",
        font_size=13,
    )
    changed = dataclasses.replace(s, node_fill="#000000")
    assert changed.node_fill == "#000000"
    assert changed.input_fill == "#e0bbe4"


def test_input_edge_color_colours_only_edges_leaving_inputs() -> None:
    """arg_edge_color (input_edge_color) colours the edges from inputs; edges between nodes keep edge_color."""
    src = visualize(simple(), style=GraphvizStyle(arg_edge_color="#abc123", output_edge_color="#def456")).source
    from_inputs = [line for line in src.splitlines() if '-> "' in line and line.strip().startswith('"input:')]
    between = [line for line in src.splitlines() if '-> "' in line and line.strip().startswith('"node:')]
    assert from_inputs
    assert all('color="#abc123"' in line for line in from_inputs)
    assert between
    assert all('color="#abc123"' not in line for line in between)
    assert 'color="#def456"' in src  # the default edge colour, in the graph's edge attributes


def test_notebook_era_style_fields_without_meaning_warn_once() -> None:
    """Fields with no counterpart here are ignored with one warning naming each; a field given under
    both its names with different values is refused."""
    with pytest.warns(IgnoredArgumentWarning, match="grouped_args_node_color.*node_padding") as caught:
        s = GraphvizStyle(grouped_args_node_color="#d4e4bc", node_padding="0.1,0.1", func_node_color="#123456")
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert s.node_fill == "#123456"
    assert s == GraphvizStyle(node_fill="#123456")
    with pytest.raises(ArgumentTypeError, match="node_fill='#000000' and its notebook-era name func_node_color"):
        GraphvizStyle(node_fill="#000000", func_node_color="#ffffff")


# -- Pipeline attributes ------------------------------------------------------------------


def test_execution_order_is_a_topological_order_of_the_nodes() -> None:
    """execution_order lists the nodes producers first, whatever the declaration order."""
    p = simple()
    assert p.execution_order == [double, add_one]
    assert p.run({"x": 3}) == {"doubled": 6, "result": 7}


def test_root_args_parameters_and_output_name_describe_the_wiring() -> None:
    """root_args (a list) and parameters (a tuple) are the pipeline's inputs; output_name every output."""
    p = simple()
    assert p.root_args == ["x", "k"]
    assert p.parameters == ("x", "k") == p.inputs
    assert p.output_name == ("result", "doubled") == p.outputs
    outer = nested()
    assert outer.root_args == ["x", "k"]
    assert outer.output_name == ("doubled", "shown")


def test_graph_is_a_networkx_digraph_of_the_wiring() -> None:
    """graph holds every node and input name; edges go from inputs and producers to their readers;
    networkx's own topological sort agrees with the wiring; changing it changes nothing here."""
    nx = pytest.importorskip("networkx")
    p = simple()
    g = p.graph
    assert isinstance(g, nx.DiGraph)
    assert set(g.nodes) == {double, add_one, "x", "k"}
    assert set(g.edges) == {("x", double), ("k", double), (double, add_one)}
    assert [n for n in nx.topological_sort(g) if not isinstance(n, str)] == [double, add_one]
    g.add_edge("y", add_one)
    assert "y" not in p.graph


def test_graph_without_networkx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without networkx, graph raises an ImportError naming it; the rest of the pipeline works."""
    monkeypatch.setitem(sys.modules, "networkx", None)
    p = simple()
    with pytest.raises(ImportError, match="pip install networkx"):
        _ = p.graph
    assert p.run({"x": 1}) == {"doubled": 2, "result": 3}


class _Log(list[int]):
    """A call log whose growing content does not change a cache key (globals a node reads are keyed by value)."""

    def __cache_key__(self) -> str:
        return "log"


CALLS = _Log()


class Recorder(PipelineCallback):
    def __init__(self) -> None:
        self.started: list[str] = []

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, object], ctx: object) -> None:
        self.started.append(pipeline_id)


def test_with_setters_change_the_pipeline_in_place_and_chain() -> None:
    """with_backend/with_cache/with_callbacks/with_name set what the constructor would and return the
    same pipeline; the next call uses them."""
    CALLS.clear()

    @node(output_name="y")
    def count(x: int) -> int:
        CALLS.append(x)
        return x + 1

    p = Pipeline([count])
    engine = HypernodesEngine(map_executor="threaded")
    recorder = Recorder()
    cache = MemoryCache()
    try:
        assert p.with_backend(engine).with_cache(cache).with_callbacks([recorder]).with_name("renamed") is p
        assert p.engine is engine
        assert p.backend is engine
        assert p.effective_backend is engine
        assert p.cache is cache
        assert p.callbacks == [recorder]
        assert p.name == "renamed"
        assert p.id == "renamed"
        assert p.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3]}
        assert p.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3]}
        assert CALLS == [1, 2]  # the second map was served by the cache
        assert recorder.started
        assert set(recorder.started) == {"renamed"}
        p.with_cache(None).with_callbacks([])
        assert p.run({"x": 1}) == {"y": 2}
        assert CALLS == [1, 2, 1]
    finally:
        engine.shutdown()


def test_with_callbacks_none_takes_the_parents_again() -> None:
    """with_callbacks(None) on a pipeline with a parent uses the parent's callbacks, as the constructor does."""
    recorder = Recorder()
    parent = Pipeline([double], callbacks=[recorder])
    child = Pipeline([add_one], parent=parent, callbacks=[])
    assert child.callbacks == []
    assert child.with_callbacks(None).callbacks == [recorder]


def test_with_setters_refuse_what_the_constructor_refuses() -> None:
    """Each setter checks its value as the constructor does, before changing anything."""
    p = simple()
    with pytest.raises(ExecutorSpecError, match=r"with_backend\(\) takes an engine"):
        p.with_backend("threaded")  # type: ignore[arg-type]
    with pytest.raises(ExecutorSpecError, match=r"with_backend\(\) got the class HypernodesEngine"):
        p.with_backend(HypernodesEngine)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"with_cache\(\) takes a hypernodes.cache.Cache"):
        p.with_cache({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="PipelineCallback"):
        p.with_callbacks([object()])  # type: ignore[list-item]
    with pytest.raises(NodeDefinitionError, match=r"with_name\(\) takes a string"):
        p.with_name(3)  # type: ignore[arg-type]
    assert p.engine is None
    assert p.cache is None
    assert p.callbacks == []
    assert p.name == "simple"


@can_render
def test_notebook_era_visualize_calls_render(tmp_path: Path) -> None:
    """The showcase notebook's calls draw: legend, notebook-era style names and a custom style."""
    custom = GraphvizStyle(func_node_color="#FFE5B4", arg_node_color="#E0BBE4", font_size=13, node_border_width=3)
    p = nested()
    for kwargs in (
        {"style": "professional", "show_legend": True, "depth": 2},
        {"depth": None, "style": "vibrant", "orient": "LR"},
        {"style": custom, "show_legend": True},
    ):
        assert "<svg" in p.visualize(**kwargs).svg()  # type: ignore[arg-type]
    p.visualize(filename=tmp_path / "p.svg", style="minimal", show_legend=True)
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")


# -- inputs no node reads ----------------------------------------------------------------


@node(output_name="kept")
def keep(values: list[int], threshold: float = 0.5) -> list[int]:
    return [v for v in values if v >= threshold]


def test_an_unused_input_is_ignored_with_a_warning_naming_it() -> None:
    """By default an input no node reads is ignored, as the notebook-era version did, with one
    UnusedInputWarning naming it and pointing at the caller's line (once per call shape); run and
    map give the results they give without it."""
    p = Pipeline([keep])
    with pytest.warns(UnusedInputWarning, match=r"run\(\) was given `source`, which no node takes") as caught:
        assert p.run({"values": [0, 1], "source": "db"}) == {"kept": [1]}
    assert len(caught) == 1
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per pipeline and call shape: the checked shape is kept
        assert p.run({"values": [2], "source": "db"}) == {"kept": [2]}
    p = Pipeline([keep])
    with pytest.warns(UnusedInputWarning, match=r"map\(\) was given `source`"):
        assert p.map({"values": [[0, 1], [2]], "source": "db"}, map_over="values") == {"kept": [[1], [2]]}
    with pytest.warns(UnusedInputWarning, match="`tag`"):  # mapped over, and still unused
        assert p.map({"values": [[0, 1], [2]], "tag": ["a", "b"]}, map_over=["values", "tag"]) == {"kept": [[1], [2]]}


def test_a_near_miss_of_an_input_left_to_its_default_is_refused_anyway() -> None:
    """An unused input that looks like a misspelling of an input the call leaves to its default is an
    InputError even without strict_inputs: there the default would silently take the value's place."""
    p = Pipeline([keep])
    with pytest.raises(InputError, match="Did you mean `threshold` for `treshold`"):
        p.run({"values": [0, 1], "treshold": 0.9})
    with pytest.raises(InputError, match="Did you mean `threshold` for `treshold`"):
        p.map({"values": [[0, 1]], "treshold": 0.9}, map_over="values")
    with pytest.warns(UnusedInputWarning):  # the input is given, so nothing falls back to a default
        assert p.run({"values": [0, 1], "threshold": 1, "treshold": 0.9}) == {"kept": [1]}


def test_strict_inputs_refuses_every_unused_input() -> None:
    """Pipeline(strict_inputs=True) makes every unused input an InputError before any node runs;
    the setting travels with copies and pickles; a non-bool is refused."""
    import copy
    import pickle

    p = Pipeline([keep], strict_inputs=True)
    for q in (p, copy.copy(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        with pytest.raises(InputError, match="given `source`, which no node takes"):
            q.run({"values": [0, 1], "source": "db"})
        with pytest.raises(InputError, match="given `source`"):
            q.map({"values": [[0]], "source": "db"}, map_over="values")
    assert not Pipeline([keep]).strict_inputs
    with pytest.raises(TypeError, match="strict_inputs must be True or False"):
        Pipeline([keep], strict_inputs="yes")  # type: ignore[arg-type]


# -- the engine's notebook-era face ---------------------------------------------------------


def test_named_executors_resolve_to_executor_objects_started_on_first_read() -> None:
    """engine.node_executor / map_executor are executor objects: a SequentialExecutor, a
    ThreadPoolExecutor, an AsyncExecutor, the process pool; constructing starts nothing, the first
    read starts it, later reads give the same object, and engine.shutdown() shuts it down."""
    from concurrent.futures import ThreadPoolExecutor

    from hypernodes.executors import AsyncExecutor, SequentialExecutor

    before = threading.active_count()
    engine = HypernodesEngine(node_executor="async", map_executor="threaded", max_workers=3)
    try:
        assert threading.active_count() <= before  # nothing started yet
        pool = engine.map_executor
        assert isinstance(pool, ThreadPoolExecutor)
        assert pool._max_workers == 3
        assert engine.map_executor is pool
        assert isinstance(engine.node_executor, AsyncExecutor)
        assert pool.submit(lambda: 41 + 1).result() == 42
        assert Pipeline([double], backend=engine).map({"x": [1, 2]}, map_over="x") == {"doubled": [2, 4]}
        assert engine.map_executor is pool  # the map ran on the same pool
    finally:
        engine.shutdown()
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(int)
    with HypernodesEngine() as plain:
        assert isinstance(plain.node_executor, SequentialExecutor)
        assert isinstance(plain.map_executor, SequentialExecutor)
        assert plain.map_executor.submit(int, "7").result() == 7


def test_an_executor_object_given_is_the_one_read_back_and_never_shut_down() -> None:
    """An executor passed in is returned as it is, and the engine's shutdown leaves it running."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        engine = HypernodesEngine(node_executor="sequential", map_executor=pool)
        assert engine.map_executor is pool
        engine.shutdown()
        assert pool.submit(int, "3").result() == 3


def test_parallel_resolves_to_the_process_pool_maps_use() -> None:
    """ "parallel" reads back as the process pool (submit/shutdown), the same one on every read."""
    with HypernodesEngine(map_executor="parallel", max_workers=1) as engine:
        pool = engine.map_executor
        assert callable(pool.submit)
        assert callable(pool.shutdown)
        assert engine.map_executor is pool
        assert pool.submit(abs, -3).result() == 3


def test_engine_map_old_form_returns_one_dict_per_item() -> None:
    """engine.map(pipeline, items, inputs, output_name, _ctx) -- the notebook-era form -- maps over a list
    of item dicts (shared inputs under them, an item's own value first) and returns one result dict per
    item; the keyword form items=... is the same; the new form still returns a dict of lists."""
    p = simple()
    with HypernodesEngine(map_executor="threaded") as engine:
        assert engine.map(p, [{"x": 1}, {"x": 2}], {}, None, None) == [
            {"result": 3, "doubled": 2},
            {"result": 5, "doubled": 4},
        ]
        assert engine.map(p, [{"x": 1}, {"x": 2, "k": 10}], {"k": 3}) == [
            {"result": 4, "doubled": 3},
            {"result": 21, "doubled": 20},
        ]  # items with different keys: each runs on its own
        assert engine.map(p, items=[{"x": 1}, {"x": 2}], inputs={"k": 5}, output_name="result") == [
            {"result": 6},
            {"result": 11},
        ]
        assert engine.map(p, [{"x": 1, "k": 7}], {"k": 3}, "doubled") == [{"doubled": 7}]  # the item's k wins
        assert engine.map(p, [], {}) == []
        assert engine.map(p, {"x": [1, 2]}, map_over="x") == {"result": [3, 5], "doubled": [2, 4]}


def test_engine_map_old_form_honours_the_pipelines_cache_and_refuses_bad_items() -> None:
    """The old form runs through the same map as the new one (the pipeline's cache serves it); items
    that are not dicts, shared inputs that are not a dict and a _ctx are refused before any node runs."""
    CALLS.clear()

    @node(output_name="y")
    def count(x: int) -> int:
        CALLS.append(x)
        return x + 1

    p = Pipeline([count], cache=MemoryCache())
    engine = HypernodesEngine()
    assert engine.map(p, [{"x": 1}, {"x": 2}], {}) == [{"y": 2}, {"y": 3}]
    assert engine.map(p, [{"x": 1}, {"x": 2}], {}) == [{"y": 2}, {"y": 3}]
    assert CALLS == [1, 2]
    with pytest.raises(ArgumentTypeError, match=r"items\[1\] is int, not a dict"):
        engine.map(p, [{"x": 1}, 2], {})
    with pytest.raises(ArgumentTypeError, match=r"inputs \(shared by every item\) must be a dict"):
        engine.map(p, items=[{"x": 1}], inputs=["k"])  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="map\\(\\) takes inputs as a dict"):
        engine.map(p, [{"x": 1}], ["k"])  # positionally, the old form needs its shared dict: the new form's error
    with pytest.raises(ArgumentTypeError, match="_ctx argument is private"):
        engine.map(p, [{"x": 1}], {}, None, object())
    assert CALLS == [1, 2]
