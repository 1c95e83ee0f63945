"""``await pipeline.arun(...)`` / ``await pipeline.amap(...)`` (and on the engine): same results,
errors, callbacks and cache as ``run``/``map``, and the caller's event loop keeps serving its
other tasks while the call runs (issue 25)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from pathlib import Path
from typing import Any

import pytest

from hypernodes import HypernodesEngine, MemoryCache, Pipeline, PipelineCallback, node
from hypernodes.errors import MissingInputError

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")
TICKS = 5


@node(output_name="doubled")
def doubled(x: int) -> int:
    return 2 * x


@node(output_name="plus")
async def plus(doubled: int, step: int = 1) -> int:
    await asyncio.sleep(0)
    return doubled + step


@node(output_name="checked")
def checked(plus: int) -> int:
    if plus == 7:
        raise ValueError("seven is refused")
    return plus


def _blocking_pipeline(released: threading.Event, engine: HypernodesEngine | None = None) -> Pipeline:
    @node(output_name="waited")
    def waited(x: int) -> int:
        # Blocks its thread until the ticker, on the caller's loop, has ticked TICKS times:
        # had the call blocked the loop, it would never be released.
        assert released.wait(30), "the caller's event loop was blocked by the call"
        return x

    return Pipeline([waited], engine=engine)


async def _ticker(ticks: list[int], released: threading.Event) -> None:
    for i in range(TICKS):
        await asyncio.sleep(0.001)
        ticks.append(i)
    released.set()


@pytest.mark.parametrize("map_executor", ["sequential", "threaded"])
def test_loop_keeps_serving_during_arun_and_amap(map_executor: str) -> None:
    """While ``arun``/``amap`` wait on a blocking node, another task on the caller's loop ticks
    (the node is released only by the ticks), and the results are those of run/map."""

    async def main() -> tuple[Any, Any, list[int], list[int]]:
        with HypernodesEngine(map_executor=map_executor, max_workers=2) as engine:
            run_ticks: list[int] = []
            released = threading.Event()
            pipeline = _blocking_pipeline(released, engine)
            ran, _ = await asyncio.gather(pipeline.arun({"x": 3}), _ticker(run_ticks, released))
            map_ticks: list[int] = []
            released = threading.Event()
            pipeline = _blocking_pipeline(released, engine)
            mapped, _ = await asyncio.gather(
                pipeline.amap({"x": [1, 2, 3]}, map_over="x"), _ticker(map_ticks, released)
            )
            return ran, mapped, run_ticks, map_ticks

    ran, mapped, run_ticks, map_ticks = asyncio.run(main())
    assert ran == {"waited": 3}
    assert mapped == {"waited": [1, 2, 3]}
    assert run_ticks == map_ticks == list(range(TICKS))


def test_same_results_errors_and_context_as_run_and_map() -> None:
    """Results equal run()/map()'s (async nodes included), on the pipeline and the engine; a node's
    error and a bad input raise as they do there; on_error="continue" holds the failures; a
    ContextVar set by the awaiting coroutine reads its value inside the nodes."""

    @node(output_name="seen")
    def seen(x: int) -> str:
        return REQUEST.get()

    pipeline = Pipeline([doubled, plus, checked])
    inputs = {"x": [1, 2, 4]}

    async def main() -> None:
        assert await pipeline.arun({"x": 2}) == pipeline.run({"x": 2})
        assert await pipeline.arun({"x": 2}, output_name="plus") == {"plus": 5}
        assert await pipeline.amap(inputs, map_over="x", output_name="checked") == pipeline.map(
            inputs, map_over="x", output_name="checked"
        )
        engine = pipeline.effective_backend
        assert await engine.arun(pipeline, {"x": 1}) == pipeline.run({"x": 1})
        assert await engine.amap(pipeline, inputs, map_over="x") == pipeline.map(inputs, map_over="x")
        with pytest.raises(ValueError, match="seven is refused") as raised:
            await pipeline.arun({"x": 3})
        assert any("checked" in note for note in getattr(raised.value, "__notes__", []))
        with pytest.raises(MissingInputError):
            await pipeline.arun({})
        with pytest.raises(ValueError, match="seven is refused"):
            await pipeline.amap({"x": [1, 3]}, map_over="x")
        kept = await pipeline.amap({"x": [1, 3, 2]}, map_over="x", on_error="continue")
        assert [f.item for f in kept.failures] == [1]
        assert kept["plus"] == [3, 7, 5]
        token = REQUEST.set("request-9")
        try:
            assert await Pipeline([seen]).arun({"x": 0}) == {"seen": "request-9"}
            assert (await Pipeline([seen]).amap({"x": [0, 1]}, map_over="x"))["seen"] == ["request-9"] * 2
        finally:
            REQUEST.reset(token)

    asyncio.run(main())


def test_callbacks_and_cache_work_the_same(tmp_path: Path) -> None:
    """Awaited calls fire the same hooks as run()/map() and read and write the cache."""
    log = str(tmp_path / "calls")  # a file: its contents are no part of the node's cache key
    events: list[str] = []

    class Recorder(PipelineCallback):
        def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: Any) -> None:
            events.append("start")

        def on_pipeline_end(self, pipeline_id: str, outputs: dict[str, Any], duration: float, ctx: Any) -> None:
            events.append("end")

    @node(output_name="counted", cache=True)
    def counted(x: int) -> int:
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return x + 1

    pipeline = Pipeline([counted], cache=MemoryCache(), callbacks=[Recorder()])

    async def main() -> None:
        assert await pipeline.arun({"x": 1}) == {"counted": 2}
        assert await pipeline.arun({"x": 1}) == {"counted": 2}
        assert await pipeline.amap({"x": [1, 2]}, map_over="x") == {"counted": [2, 3]}

    asyncio.run(main())
    assert Path(log).read_text().split() == ["1", "2"]  # the second run and the map's first item came from the cache
    assert events == ["start", "end"] * 3


def test_cancelling_the_awaiting_task() -> None:
    """Cancelling the task awaiting arun() raises CancelledError in it at once, while the call is
    still running; the loop goes on serving, and the call's thread is done when the loop closes."""
    started, released = threading.Event(), threading.Event()
    finished: list[int] = []

    @node(output_name="slow")
    def slow(x: int) -> int:
        started.set()
        released.wait(30)
        finished.append(x)
        return x

    async def main() -> None:
        task = asyncio.create_task(Pipeline([slow]).arun({"x": 1}))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == []  # cancelled while the node was still running
        released.set()

    asyncio.run(main())
    assert finished == [1]  # asyncio.run waited for the default executor's thread
