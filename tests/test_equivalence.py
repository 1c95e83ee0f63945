"""Every executor combination gives exactly the sequential result, on random pipelines.

For each drawn pipeline (``strategies.py``: fan-in and fan-out, tuple outputs,
defaults, sync and ``async def`` nodes, a nested pipeline on an engine of its
own) and each call (run(), and map() in zip or product mode with broadcast
inputs), the result under every node executor x map executor -- "sequential",
"threaded", "async", "parallel" and a user's ``ThreadPoolExecutor`` at each
level -- must equal the sequential engine's, which must equal the naive
reference. The engines live for a whole test (one warm process pool), not one
example. ``HYPOTHESIS_PROFILE=thorough`` runs more examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from hypernodes import HypernodesEngine, Pipeline

from .figures import FIGURES
from .strategies import Call, MapCall, calls, map_calls

pytestmark = pytest.mark.reliability

KINDS = ("sequential", "threaded", "async", "parallel", "ThreadPoolExecutor")
# Refused at construction, by design: processes do not start processes, and executor
# objects do not travel to worker processes (see test_errors).
REFUSED = {("parallel", "parallel"), ("parallel", "ThreadPoolExecutor")}
COMBINATIONS = [(m, n) for m in KINDS for n in KINDS if (m, n) not in REFUSED]
INNER_ENGINES = 3  # a nested pipeline runs on: the shared default, a threaded or an async node engine

SETTINGS = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
    # every example runs the call 2 x 23 ways, some in worker processes: a third of the profile's examples
    max_examples=max(10, settings.default.max_examples // 3),
)


class Engines:
    """One engine per (map, node) combination, and the engines nested pipelines run on."""

    def __init__(self) -> None:
        self.pools = {
            "map_executor": ThreadPoolExecutor(3, thread_name_prefix="user-map"),
            "node_executor": ThreadPoolExecutor(3, thread_name_prefix="user-node"),
        }
        self.sequential = HypernodesEngine()
        self.combined = {
            (m, n): HypernodesEngine(
                map_executor=self._spec(m, "map_executor"), node_executor=self._spec(n, "node_executor"), max_workers=2
            )
            for m, n in COMBINATIONS
        }
        self.inner: list[HypernodesEngine | None] = [
            None,
            HypernodesEngine(node_executor="threaded", max_workers=2),
            HypernodesEngine(node_executor="async", max_workers=2),
        ]

    def _spec(self, kind: str, role: str) -> Any:
        return self.pools[role] if kind == "ThreadPoolExecutor" else kind

    def close(self) -> None:
        for engine in [*self.combined.values(), *self.inner, self.sequential]:
            if engine is not None:
                engine.shutdown()
        for pool in self.pools.values():
            pool.shutdown()


@pytest.fixture
def engines() -> Iterator[Engines]:
    made = Engines()
    try:
        yield made
    finally:
        made.close()


def _differences(results: dict[tuple[str, str], Any], expected: Any) -> dict[tuple[str, str], Any]:
    return {combo: got for combo, got in results.items() if got != expected}


@SETTINGS
@given(call=calls(INNER_ENGINES))
def test_run_is_the_same_under_every_executor_combination(engines: Engines, call: Call) -> None:
    """run() under each of the 23 combinations returns exactly the sequential engine's result."""
    nodes = call.nodes(engines.inner)
    expected = Pipeline(nodes, backend=engines.sequential).run(call.inputs, output_name=call.wanted)
    assert expected == call.expected()
    results = {
        combo: Pipeline(nodes, backend=engine).run(call.inputs, output_name=call.wanted)
        for combo, engine in engines.combined.items()
    }
    assert not _differences(results, expected)
    FIGURES.count("equivalence: run() examples")
    FIGURES.count("equivalence: run() calls compared", len(results))


@SETTINGS
@given(m=map_calls(INNER_ENGINES, min_items=1, max_items=12))
def test_map_is_the_same_under_every_executor_combination(engines: Engines, m: MapCall) -> None:
    """map() (zip or product, with broadcast inputs, 1 to 12 items: empty maps never reach an
    executor and are tested in test_executors) under each combination returns exactly the
    sequential engine's lists, in item order."""
    call = m.call
    nodes = call.nodes(engines.inner)
    inputs = {**call.inputs, **m.lists}
    kwargs: dict[str, Any] = {"map_over": list(m.lists), "map_mode": m.mode, "output_name": call.wanted}
    expected = Pipeline(nodes, backend=engines.sequential).map(inputs, **kwargs)
    assert expected == call.expected(m.items)
    results = {
        combo: Pipeline(nodes, backend=engine).map(inputs, **kwargs) for combo, engine in engines.combined.items()
    }
    assert not _differences(results, expected)
    FIGURES.count("equivalence: map() examples")
    FIGURES.count("equivalence: map() calls compared", len(results))
    FIGURES.count("equivalence: map() items compared", len(results) * len(m.items))
