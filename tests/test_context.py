"""Context follows the call: a ``ContextVar`` the caller set reads the caller's value inside
every node, on every in-process executor, at both levels (issue 25)."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hypernodes import HypernodesEngine, Pipeline, node
from hypernodes.executors import AsyncExecutor

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")


@node(output_name="seen_sync")
def seen_sync(x: int) -> str:
    return f"{REQUEST.get()}:{x}"


@node(output_name="seen_async")
async def seen_async(x: int) -> str:
    await asyncio.sleep(0)
    return f"{REQUEST.get()}:{x}"


KINDS = ["sequential", "threaded", "async", "thread-pool", "async-executor"]


def _spec(kind: str, made: list[Any]) -> Any:
    if kind == "thread-pool":
        made.append(ThreadPoolExecutor(3))
        return made[-1]
    if kind == "async-executor":
        made.append(AsyncExecutor(3))
        return made[-1]
    return kind


def _engine(node_kind: str, map_kind: str, made: list[Any]) -> HypernodesEngine:
    return HypernodesEngine(node_executor=_spec(node_kind, made), map_executor=_spec(map_kind, made), max_workers=3)


def _pipeline(engine: HypernodesEngine) -> Pipeline:
    return Pipeline([seen_sync, seen_async], engine=engine)


@pytest.mark.parametrize("node_kind", KINDS)
@pytest.mark.parametrize("map_kind", ["sequential", "threaded", "async", "thread-pool"])
def test_context_var_visible_in_every_node(node_kind: str, map_kind: str) -> None:
    """A ContextVar set by the caller reads the caller's value in sync and async nodes, in run()
    and map(), whatever executor runs each level."""
    made: list[Any] = []
    engine = _engine(node_kind, map_kind, made)
    try:
        pipeline = _pipeline(engine)
        token = REQUEST.set("request-7")
        try:
            assert pipeline.run({"x": 1}) == {"seen_sync": "request-7:1", "seen_async": "request-7:1"}
            result = pipeline.map({"x": list(range(12))}, map_over="x")
            assert result["seen_sync"] == [f"request-7:{i}" for i in range(12)]
            assert result["seen_async"] == [f"request-7:{i}" for i in range(12)]
        finally:
            REQUEST.reset(token)
        assert pipeline.run({"x": 2})["seen_sync"] == "unset:2"  # a later call sees the later value
    finally:
        engine.shutdown()
        for executor in made:
            executor.shutdown()
