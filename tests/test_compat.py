"""The notebook-era API: the names its code imports exist and behave as they did there."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import hypernodes
from hypernodes import Pipeline, node


@node(output_name="y")
def inc(x: int) -> int:
    return x + 1


def test_engine_is_the_abstract_base_of_the_engines() -> None:
    """Engine cannot be instantiated, declares run/map/shutdown, and HypernodesEngine implements it."""
    from hypernodes.engine import Engine, HypernodesEngine

    assert {"run", "map", "shutdown"} <= Engine.__abstractmethods__
    with pytest.raises(TypeError):
        Engine()  # type: ignore[abstract]
    assert isinstance(HypernodesEngine(), Engine)
    assert hypernodes.Engine is Engine


def test_engines_module_reexports_the_names() -> None:
    """hypernodes.engines re-exports Engine, HypernodesEngine, DaskEngine, the two adapters and DEFAULT_WORKERS."""
    from hypernodes import engines, executors

    for name in ("Engine", "HypernodesEngine", "DaskEngine", "SequentialExecutor", "AsyncExecutor", "DEFAULT_WORKERS"):
        assert name in engines.__all__
        assert getattr(engines, name) is not None
    assert engines.SequentialExecutor is executors.SequentialExecutor
    assert engines.DaskEngine is hypernodes.DaskEngine


def test_sequential_executor_runs_in_the_caller() -> None:
    """SequentialExecutor.submit runs the call at once and returns a done future (result or exception)."""
    from hypernodes.executors import SequentialExecutor

    executor = SequentialExecutor()
    calls: list[int] = []
    future = executor.submit(lambda a, b=0: calls.append(a + b) or a + b, 3, b=4)
    assert future.done()
    assert future.result() == 7
    assert calls == [7]
    failed = executor.submit(lambda: 1 / 0)
    assert failed.done()
    assert isinstance(failed.exception(), ZeroDivisionError)
    executor.shutdown(wait=True)


def test_default_workers_are_what_named_executors_use() -> None:
    """DEFAULT_WORKERS names each executor's size when max_workers is None, and the engine's executors have it."""
    from hypernodes import HypernodesEngine
    from hypernodes.executors import DEFAULT_WORKERS

    assert DEFAULT_WORKERS["sequential"] == 1
    assert DEFAULT_WORKERS["async"] == 100
    assert DEFAULT_WORKERS["threaded"] >= 1
    assert DEFAULT_WORKERS["parallel"] >= 1
    with HypernodesEngine(node_executor="async", map_executor="threaded") as engine:
        threads = engine._runtime.items.executor()
        loop = engine._runtime.nodes.executor()
        assert threads._max_workers == DEFAULT_WORKERS["threaded"]  # type: ignore[attr-defined]
        assert loop.max_workers == DEFAULT_WORKERS["async"]  # type: ignore[attr-defined]


def test_pipeline_call_is_run() -> None:
    """pipeline(**inputs) returns what pipeline.run(inputs) returns."""
    pipeline = Pipeline([inc])
    assert pipeline(x=1) == pipeline.run(inputs={"x": 1}) == {"y": 2}


def test_with_pipeline_shuts_its_engine_down_but_not_the_users_executor() -> None:
    """Leaving `with Pipeline(...)` shuts the pipeline's engine down; an executor the user passed keeps working."""
    from hypernodes import HypernodesEngine

    pool = ThreadPoolExecutor(2)
    engine = HypernodesEngine(node_executor="threaded", map_executor=pool)
    with Pipeline([inc], backend=engine) as pipeline:
        assert pipeline.map(inputs={"x": [1, 2]}, map_over="x") == {"y": [2, 3]}
        assert pipeline.run(inputs={"x": 1}) == {"y": 2}
    assert engine._runtime.nodes._executor is None  # type: ignore[attr-defined]
    assert pool.submit(int, "5").result() == 5
    pool.shutdown()
    with Pipeline([inc]) as pipeline:  # the shared default engine is not shut down
        assert pipeline(x=0) == {"y": 1}
    assert Pipeline([inc])(x=2) == {"y": 3}


def test_error_aliases() -> None:
    """HyperNodesError, DependencyError and ExecutionError import from the top level and fit our errors."""
    assert hypernodes.HyperNodesError is hypernodes.HypernodesError
    assert hypernodes.DependencyError is hypernodes.MissingInputError
    assert issubclass(hypernodes.ExecutionError, hypernodes.HypernodesError)
    with pytest.raises(hypernodes.DependencyError):
        Pipeline([inc]).run(inputs={})
    with pytest.raises(hypernodes.HyperNodesError):
        Pipeline([inc]).run(inputs={})


def test_unknown_output_is_also_a_value_error() -> None:
    """An unknown output_name is catchable as ValueError (as it was) and as KeyError."""
    with pytest.raises(ValueError, match="nope"):
        Pipeline([inc]).run(inputs={"x": 1}, output_name="nope")
    with pytest.raises(KeyError):
        Pipeline([inc]).run(inputs={"x": 1}, output_name="nope")


def test_self_loop_and_bad_as_node_mappings_are_value_errors_too() -> None:
    """A self-loop node and as_node naming a missing input, output or map_over raise ValueError and TypeError."""
    with pytest.raises(ValueError, match="self-loop") as info:
        node(lambda x: x, output_name="x")
    assert isinstance(info.value, TypeError)
    pipeline = Pipeline([inc], name="p")
    for kwargs in ({"input_mapping": {"a": "nope"}}, {"output_mapping": {"nope": "z"}}, {"map_over": "nope"}):
        with pytest.raises(ValueError, match="nope") as info:
            pipeline.as_node(**kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, (TypeError, hypernodes.WiringError))


class _Seen(hypernodes.PipelineCallback):
    """Records node starts."""

    def __init__(self) -> None:
        self.nodes: list[str] = []

    def on_node_start(self, node_id: str, inputs: dict[str, object], ctx: hypernodes.CallbackContext) -> None:
        self.nodes.append(node_id)


@node(output_name="y")
def _plus_one(x: int) -> int:
    return x + 1


def test_calls_made_on_an_engine_still_use_the_pipelines_callbacks_and_cache() -> None:
    """engine.run(pipeline, ...) and engine.map(pipeline, ...) fire the pipeline's callbacks and use its
    cache, as pipeline.run/map do."""
    seen = _Seen()
    cache = hypernodes.MemoryCache()
    pipeline = Pipeline([_plus_one], callbacks=[seen], cache=cache)
    with hypernodes.HypernodesEngine() as engine:
        assert engine.run(pipeline, {"x": 1}) == {"y": 2}
        assert engine.run(pipeline, {"x": 1}) == {"y": 2}  # from the cache: no node start
        assert engine.map(pipeline, {"x": [7, 8]}, "x") == {"y": [8, 9]}
        assert engine.map(pipeline, {"x": [7, 8]}, "x") == {"y": [8, 9]}
    assert seen.nodes == ["_plus_one"] * 3


def test_parent_gives_engine_cache_and_callbacks_to_a_pipeline_without_its_own() -> None:
    """Pipeline(parent=...) uses the parent's engine, cache and callbacks where it sets none
    (effective_backend, effective_cache, effective_callbacks), recursively; its own win."""
    seen = _Seen()
    cache = hypernodes.MemoryCache()
    with hypernodes.HypernodesEngine(map_executor="threaded") as engine:
        root = Pipeline([_plus_one], backend=engine, cache=cache, callbacks=[seen])
        child = Pipeline([_plus_one], parent=root)
        grandchild = Pipeline([_plus_one], parent=child)
        assert Pipeline([_plus_one], parent=child, callbacks=[]).effective_callbacks == []  # [] opts out
        assert child.effective_backend is engine
        assert grandchild.effective_backend is engine
        assert child.effective_cache is cache
        assert grandchild.effective_cache is cache
        assert child.effective_callbacks == [seen]
        assert grandchild.effective_callbacks == [seen]
        assert grandchild.map({"x": [5, 6]}, "x") == {"y": [6, 7]}
        assert seen.nodes == ["_plus_one", "_plus_one"]
        own = hypernodes.HypernodesEngine()
        assert Pipeline([_plus_one], backend=own, parent=root).effective_backend is own
        own.shutdown()
    with pytest.raises(hypernodes.ArgumentTypeError, match="parent"):
        Pipeline([_plus_one], parent=engine)  # type: ignore[arg-type]
