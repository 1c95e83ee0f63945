"""The cache's storage and write path: failures never stored, storage faults, trust, limits, clearing."""

from __future__ import annotations

from typing import Any

import pytest

from hypernodes import MemoryCache, Pipeline, node
from hypernodes.failures import Failure

CALLS: list[Any] = []
"""What in-process test nodes ran (a module global: a closed-over list would be part of the key)."""


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@node(output_name="y")
def _flaky_once(x: int) -> int:
    """Fails the first time it sees 2 (an outage), then succeeds."""
    CALLS.append(x)
    if x == 2 and CALLS.count(2) == 1:
        raise ConnectionError("the service is down")
    return x * 10


@node(output_name="summary")
def _summarize(ys: list[Any]) -> str:
    CALLS.append("summary")
    return ",".join("failed" if isinstance(y, Failure) else str(y) for y in ys)


def _nested() -> Pipeline:
    inner = Pipeline([_flaky_once], name="inner", on_error="continue")
    fetch = inner.as_node(input_mapping={"xs": "x"}, output_mapping={"y": "ys"}, map_over="xs", name="fetch")
    return Pipeline([fetch, _summarize], cache=MemoryCache())


def test_a_nested_maps_failures_are_never_stored_nor_what_was_computed_from_them() -> None:
    """An inner map under on_error="continue" returns a Failure for the item whose node failed once:
    neither the nested node's output holding it nor the downstream summary of it is stored, so the
    next run retries the failed item (and only it: the inner items that succeeded hit) and
    recomputes the summary, which no longer holds the outage."""
    pipeline = _nested()
    first = pipeline.run({"xs": [1, 2, 3]})
    assert isinstance(first["ys"][1], Failure)
    assert first["summary"] == "10,failed,30"
    assert CALLS == [1, 2, 3, "summary"]
    second = pipeline.run({"xs": [1, 2, 3]})
    assert second == {"ys": [10, 20, 30], "summary": "10,20,30"}
    assert CALLS == [1, 2, 3, "summary", 2, "summary"]
    assert pipeline.run({"xs": [1, 2, 3]}) == second  # now clean: stored, every node hits
    assert CALLS == [1, 2, 3, "summary", 2, "summary"]


def test_a_nested_failure_under_an_outer_continue_map_is_not_stored() -> None:
    """The same under an outer map with on_error="continue": the item holding the nested failure is
    neither stored per node nor as a whole item, and succeeds on the next call."""
    pipeline = _nested()
    first = pipeline.map({"xs": [[1, 2], [3]]}, map_over="xs", on_error="continue")
    assert first["summary"] == ["10,failed", "30"]
    assert CALLS == [1, 2, "summary", 3, "summary"]
    second = pipeline.map({"xs": [[1, 2], [3]]}, map_over="xs", on_error="continue")
    assert second["summary"] == ["10,20", "30"]
    assert CALLS == [1, 2, "summary", 3, "summary", 2, "summary"]
