"""One door: ``pipeline.run/map`` are ``engine.run/map(pipeline, ...)``, and the engine reads only the
pipeline's ``plans`` and ``options``; the call's opening (``_open``) applies callbacks, cache and input
checks whichever way the call came in."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hypernodes import HypernodesEngine, MemoryCache, Pipeline, PipelineCallback, node
from hypernodes.engine import default_engine
from hypernodes.errors import InputTypeError


class _Log(list):  # type: ignore[type-arg]
    """The nodes' call log: keyed by a constant, so that its growing does not change their cache keys."""

    def __cache_key__(self) -> str:
        return "log"


calls = _Log()


@node(output_name="y")
def double(x: int) -> int:
    calls.append("double")
    if x < 0:
        raise ValueError("negative")
    return 2 * x


class Hooks(PipelineCallback):
    """Records the call-level hooks and the nodes started."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: Any) -> None:
        self.events.append(("start", pipeline_id))

    def on_pipeline_end(self, pipeline_id: str, outputs: dict[str, Any], duration: float, ctx: Any) -> None:
        self.events.append(("end", pipeline_id))

    def on_pipeline_error(self, pipeline_id: str, error: BaseException, duration: float, ctx: Any) -> None:
        self.events.append(("error", type(error).__name__))

    def on_node_start(self, node_id: str, inputs: dict[str, Any], ctx: Any) -> None:
        self.events.append(("node", node_id))

    def on_map_start(self, total_items: int, ctx: Any) -> None:
        self.events.append(("map", total_items))


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def test_a_call_made_on_the_engine_is_the_pipelines_call() -> None:
    """engine.run/map(pipeline) fire the pipeline's callbacks, use its cache and check its inputs
    exactly as pipeline.run/map do: the same events, the same cache entries."""
    cache = MemoryCache()
    with HypernodesEngine() as engine:
        seen = []
        for door in ("pipeline", "engine"):
            hooks = Hooks()
            pipeline = Pipeline([double], backend=engine, name="p", callbacks=[hooks], cache=cache)
            if door == "pipeline":
                assert pipeline.run({"x": 3}) == {"y": 6}
                assert pipeline.map({"x": [1, 2]}, map_over="x") == {"y": [2, 4]}
            else:
                assert engine.run(pipeline, {"x": 3}) == {"y": 6}
                assert engine.map(pipeline, {"x": [1, 2]}, map_over="x") == {"y": [2, 4]}
            seen.append(hooks.events)
        assert seen[0][:3] == [("start", "p"), ("node", "double"), ("end", "p")]
        assert seen[1] == [("start", "p"), ("end", "p"), ("start", "p"), ("map", 2), ("end", "p")]  # all cached
        assert calls == ["double"] * 3  # the engine's calls were served by the cache the pipeline's filled
        checked = Pipeline([double], backend=engine, validate_inputs=True)
        with pytest.raises(InputTypeError, match="input `x` is str"):
            engine.run(checked, {"x": "3"})
        assert calls == ["double"] * 3  # refused before any node ran


def test_the_engine_reads_only_plans_and_options() -> None:
    """Anything with a pipeline's ``plans`` and ``options`` runs on an engine, callbacks included:
    the engine reaches for nothing else of the pipeline."""
    hooks = Hooks()
    pipeline = Pipeline([double], name="bare", callbacks=[hooks], on_error="continue")
    bare = SimpleNamespace(plans=pipeline.plans, options=pipeline.options)
    with HypernodesEngine() as engine:
        assert engine.run(bare, {"x": 1}) == {"y": 2}
        result = engine.map(bare, {"x": [1, -1]}, map_over="x")  # on_error: the pipeline's "continue"
    assert result["y"][0] == 2
    assert [f.item for f in result.failures] == [1]
    assert ("start", "bare") in hooks.events


def test_the_pipelines_on_error_applies_to_a_map_made_on_the_engine() -> None:
    """engine.map(pipeline) without on_error takes the pipeline's; an explicit one wins, both ways."""
    pipeline = Pipeline([double], on_error="continue")
    with HypernodesEngine() as engine:
        assert len(engine.map(pipeline, {"x": [-1, 1]}, map_over="x").failures) == 1
        with pytest.raises(ValueError, match="negative"):
            engine.map(pipeline, {"x": [-1, 1]}, map_over="x", on_error="raise")
    with pytest.raises(ValueError, match="negative"):
        pipeline.map({"x": [-1, 1]}, map_over="x", on_error="raise")


def test_options_assigned_after_construction_take_effect() -> None:
    """Assigning cache, callbacks, on_error, validate_inputs or name makes a new options record that
    the next call uses; a callback appended to ``pipeline.callbacks`` is seen too."""
    pipeline = Pipeline([double])
    first = pipeline.options
    assert first.plain
    assert not first.callbacks
    pipeline.cache = MemoryCache()
    assert pipeline.options is not first
    assert pipeline.options.cache is pipeline.cache
    pipeline.run({"x": 2})
    pipeline.run({"x": 2})
    assert calls == ["double"]  # the second came from the cache
    hooks = Hooks()
    pipeline.callbacks.append(hooks)
    pipeline.run({"x": 2})
    assert hooks.events[0] == ("start", pipeline.id)
    pipeline.name = "renamed"
    assert pipeline.options.id == pipeline.id == "renamed"
    pipeline.on_error = "continue"
    assert len(pipeline.map({"x": [-1]}, map_over="x").failures) == 1
    pipeline.validate_inputs = True
    with pytest.raises(InputTypeError):
        pipeline.run({"x": "2"})
    with pytest.raises(TypeError, match=r"takes a hypernodes\.cache\.Cache"):
        pipeline.cache = {}  # type: ignore[assignment]


INNER = Pipeline([double])


@node(output_name="z")
def runs_inner(x: int, salt: int) -> int:
    return int(default_engine().run(INNER, {"x": x})["y"]) + 0 * salt


def test_a_call_on_the_engine_inside_a_cached_call_uses_the_cache_passed_down() -> None:
    """A node that runs another pipeline on an engine directly, inside a call with a cache, uses
    that cache as ``inner.run()`` would (one route: the opening reads what the enclosing call passes down)."""
    outer = Pipeline([runs_inner], cache=MemoryCache())
    assert outer.run({"x": 4, "salt": 1}) == {"z": 8}
    assert outer.run({"x": 4, "salt": 2}) == {"z": 8}  # the outer node runs again; the inner one is cached
    assert calls == ["double"]


def test_a_map_call_slices_and_travels_whole() -> None:
    """A slice of a MapCall is the same call on fewer items (observer, lookup, keep_going kept); its
    remote form pickles without the items, and a worker gives it the slice it received."""
    import pickle

    from hypernodes._call import prepare_map

    pipeline = Pipeline([double])
    call = prepare_map(pipeline.plans, {"x": [1, 2, 3, 4]}, "x", "zip", None, on_error="continue")
    part = call.slice(1, 3)
    assert (part.items.lo, part.items.hi, len(part.items)) == (1, 3, 2)
    assert part.keep_going
    assert part.plan is call.plan
    assert part.values is call.values
    travelled = pickle.loads(pickle.dumps(call.remote()))
    assert len(travelled.items) == 0  # the columns never ride in the payload
    assert travelled.keep_going
    here = travelled.on(part.items.detached())
    assert [here.items.base + i for i in range(here.items.lo, here.items.hi)] == [1, 2]


def test_driver_tasks_are_named_records() -> None:
    """A slice task and a node task say what they run (for messages) and survive pickling with a new payload."""
    import pickle

    from hypernodes._call import Items
    from hypernodes._run.tasks import NodeTask, SliceTask

    part = Items((0,), ((1, 2, 3, 4),), False, 0, 4).between(1, 3).detached()
    sliced = SliceTask("t", b"payload", part)
    assert sliced.what() == "map items 1..2"
    assert sliced.key == "1"
    one = NodeTask("t", b"payload", 2, "embed", 5, (1,), False)
    assert one.what() == "node `embed`, map item 5"
    assert NodeTask("t", b"", 2, "embed", -1, (), False).what() == "node `embed`"
    moved = pickle.loads(pickle.dumps(one.carrying(b"other")))
    assert (moved.payload, moved.node, moved.args, moved.item) == (b"other", 2, (1,), 5)
