"""Random pipelines against a naive reference evaluator, on both cores.

Hypothesis builds DAGs with fan-in and fan-out, tuple outputs, defaults, async
nodes and a nested pipeline (see ``strategies.py``), declares the nodes in a
random order, and checks run() and map() (zip and product, with broadcast
inputs) against a dict-based evaluator written there, independently of the
library. ``HYPOTHESIS_PROFILE=thorough`` runs more.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypernodes import Pipeline

from .figures import FIGURES
from .strategies import Call, MapCall, calls, dags, map_calls, used_externals

SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)


@SETTINGS
@given(calls())
def test_run_matches_reference(call: Call) -> None:
    """run() returns exactly the reference values of the requested outputs (all outputs when None)."""
    result = Pipeline(call.nodes()).run(call.inputs, output_name=call.wanted)
    assert result == call.expected()
    FIGURES.count("random DAGs: run() examples against the reference")


@SETTINGS
@given(map_calls())
def test_map_matches_reference(m: MapCall) -> None:
    """map() equals the reference evaluated item by item, in zip or product order, with broadcasts."""
    call = m.call
    result = Pipeline(call.nodes()).map(
        {**call.inputs, **m.lists}, map_over=list(m.lists), map_mode=m.mode, output_name=call.wanted
    )
    assert result == call.expected(m.items)
    FIGURES.count("random DAGs: map() examples against the reference")


@SETTINGS
@given(dags(), st.randoms(use_true_random=False))
def test_ready_queue_issues_a_valid_topological_order(specs: list[Any], rnd: Any) -> None:
    """Completing ready nodes in a random order, every node is issued exactly once and only after
    all of its producers are done."""
    from hypernodes import _core

    pipeline = Pipeline([s.node for s in specs])
    plan = pipeline.plans.get(None, frozenset(used_externals(specs)), "run()")
    position = {name: k for k, name in enumerate(plan.node_names)}
    producers = {
        position[s.node.name]: {position[t.node.name] for t in specs if set(t.outputs) & set(s.params)} for s in specs
    }
    queue = _core.ReadyQueue(plan)
    pending: list[int] = []
    done: set[int] = set()
    issued: list[int] = []
    while queue.is_active():
        for k in queue.get_ready():
            assert producers[k] <= done, f"node {k} issued before its producers"
            issued.append(k)
            pending.append(k)
        rnd.shuffle(pending)
        take = pending[: rnd.randint(1, len(pending))]
        del pending[: len(take)]
        queue.done(*take)
        done.update(take)
    assert sorted(issued) == list(range(plan.n_nodes))


@SETTINGS
@given(map_calls())
def test_map_that_keeps_going_matches_reference_without_failures(m: MapCall) -> None:
    """With no failing node, on_error="continue" (its own loops in both cores) equals the reference too."""
    call = m.call
    result = Pipeline(call.nodes()).map(
        {**call.inputs, **m.lists},
        map_over=list(m.lists),
        map_mode=m.mode,
        output_name=call.wanted,
        on_error="continue",
    )
    assert result == call.expected(m.items)
    assert result.ok
