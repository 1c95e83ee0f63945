"""Random pipelines against a naive reference evaluator, on both cores.

Hypothesis builds DAGs with fan-in and fan-out, tuple outputs, defaults and
async nodes, declares the nodes in a random order, and checks run() and map()
(zip and product, with broadcast inputs) against a dict-based evaluator written
here, independently of the library. ``HYPOTHESIS_PROFILE=thorough`` runs more.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hypernodes import Node, Pipeline, node

EXTERNALS = ("a", "b", "c", "d")


def combine(i: int, args: tuple[int, ...]) -> int:
    """Order-sensitive mixing so a miswired argument changes the result."""
    acc = 31 * i + 7
    for j, v in enumerate(args):
        acc = (acc * 131 + (j + 1) * v) % 1_000_003
    return acc


@dataclass
class Spec:
    index: int
    params: tuple[str, ...]
    defaults: dict[str, int]
    outputs: tuple[str, ...]
    tuple_output: bool
    is_async: bool
    node: Node = field(init=False)

    def compute(self, args: tuple[int, ...]) -> tuple[int, ...]:
        v = combine(self.index, args)
        return tuple(v + k for k in range(len(self.outputs)))

    def build(self) -> None:
        # after the first default the rest are keyword-only (legal syntax, and exercises that path)
        parts: list[str] = []
        for p in self.params:
            if p not in self.defaults and parts and "=" in parts[-1] and "*" not in parts:
                parts.append("*")
            parts.append(f"{p}={self.defaults[p]}" if p in self.defaults else p)
        params = ", ".join(parts)
        args = "".join(f"{p}, " for p in self.params)
        body = f"v = combine({self.index}, ({args}))\n    out = tuple(v + k for k in range({len(self.outputs)}))\n"
        ret = "return out" if self.tuple_output else "return out[0]"
        source = f"{'async ' if self.is_async else ''}def f{self.index}({params}):\n    {body}    {ret}\n"
        namespace: dict[str, Any] = {"combine": combine}
        exec(source, namespace)
        output_name: str | tuple[str, ...] = self.outputs if self.tuple_output else self.outputs[0]
        self.node = node(namespace[f"f{self.index}"], output_name=output_name)


@st.composite
def dags(draw: st.DrawFn) -> list[Spec]:
    specs: list[Spec] = []
    produced: list[str] = []
    for i in range(draw(st.integers(1, 9))):
        pool = produced + list(EXTERNALS)
        params = tuple(draw(st.lists(st.sampled_from(pool), max_size=4, unique=True)))
        defaults = {p: 100 + 10 * i + k for k, p in enumerate(params) if p in EXTERNALS and draw(st.booleans())}
        n_out = draw(st.sampled_from([1, 1, 2, 3]))
        tuple_output = n_out > 1 or draw(st.integers(0, 4)) == 0  # sometimes a 1-tuple
        outputs = tuple(f"v{i}" if n_out == 1 else f"v{i}_{k}" for k in range(n_out))
        spec = Spec(i, params, defaults, outputs, tuple_output, is_async=draw(st.integers(0, 5)) == 0)
        spec.build()
        specs.append(spec)
        produced.extend(outputs)
    return specs


def used_externals(specs: list[Spec]) -> dict[str, bool]:
    """external name -> whether it may be omitted (every consumer has a default)."""
    optional: dict[str, bool] = {}
    for s in specs:
        for p in s.params:
            if p in EXTERNALS:
                optional[p] = optional.get(p, True) and p in s.defaults
    return optional


def reference(specs: list[Spec], inputs: dict[str, int]) -> dict[str, int]:
    env: dict[str, int] = {}
    for s in specs:  # creation order is topological
        args = tuple(env[p] if p in env else inputs[p] if p in inputs else s.defaults[p] for p in s.params)
        env.update(zip(s.outputs, s.compute(args)))
    return env


@st.composite
def calls(draw: st.DrawFn) -> tuple[list[Spec], list[Node], dict[str, int], list[str] | None]:
    specs = draw(dags())
    order = draw(st.permutations([s.node for s in specs]))
    inputs = {
        name: draw(st.integers(-50, 50))
        for name, optional in used_externals(specs).items()
        if not optional or draw(st.booleans())
    }
    all_outputs = [o for s in specs for o in s.outputs]
    wanted = draw(st.none() | st.lists(st.sampled_from(all_outputs), min_size=1, max_size=3, unique=True))
    return specs, list(order), inputs, wanted


SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)


@SETTINGS
@given(calls())
def test_run_matches_reference(call: tuple[list[Spec], list[Node], dict[str, int], list[str] | None]) -> None:
    """run() returns exactly the reference values of the requested outputs (all outputs when None)."""
    specs, order, inputs, wanted = call
    expected = reference(specs, inputs)
    names = wanted if wanted is not None else [o for s in specs for o in s.outputs]
    result = Pipeline(order).run(inputs, output_name=wanted)
    assert result == {n: expected[n] for n in names}


@SETTINGS
@given(calls(), st.sampled_from(["zip", "product"]), st.data())
def test_map_matches_reference(
    call: tuple[list[Spec], list[Node], dict[str, int], list[str] | None], mode: str, data: st.DataObject
) -> None:
    """map() equals the reference evaluated item by item, in zip or product order, with broadcasts."""
    specs, order, inputs, wanted = call
    assume(inputs)  # a pipeline without external inputs has nothing to map over
    mapped = data.draw(st.lists(st.sampled_from(sorted(inputs)), min_size=1, max_size=3, unique=True))
    if mode == "zip":
        n = data.draw(st.integers(0, 4))
        lists = {m: data.draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n)) for m in mapped}
        items = [dict(zip(mapped, values)) for values in zip(*lists.values())] if n else []
    else:
        lists = {m: data.draw(st.lists(st.integers(-50, 50), max_size=3)) for m in mapped}
        items = [dict(zip(mapped, values)) for values in itertools.product(*lists.values())]
    names = wanted if wanted is not None else [o for s in specs for o in s.outputs]
    expected = {n: [reference(specs, {**inputs, **item})[n] for item in items] for n in names}
    result = Pipeline(order).map({**inputs, **lists}, map_over=mapped, map_mode=mode, output_name=wanted)
    assert result == expected


@SETTINGS
@given(dags(), st.randoms(use_true_random=False))
def test_ready_queue_issues_a_valid_topological_order(specs: list[Spec], rnd: Any) -> None:
    """Completing ready nodes in a random order, every node is issued exactly once and only after
    all of its producers are done."""
    from hypernodes import _core

    pipeline = Pipeline([s.node for s in specs])
    plan = pipeline._plan(None, frozenset(used_externals(specs)), "run()")
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
