"""Hypothesis strategies for random pipelines, and a naive evaluator to check them against.

A drawn :class:`Call` is a DAG of generated nodes (fan-in and fan-out, tuple and
1-tuple outputs, defaults and keyword-only parameters, ``async def`` nodes), some
of them grouped into a nested pipeline, declared in a random order, with inputs
and requested outputs. :func:`reference` evaluates the same DAG with a dict,
independently of the library.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from hypernodes import HypernodesEngine, Node, Pipeline, node

EXTERNALS = ("a", "b", "c", "d")


def combine(i: int, args: tuple[int, ...]) -> int:
    """Order-sensitive mixing so a miswired argument changes the result."""
    acc = 31 * i + 7
    for j, v in enumerate(args):
        acc = (acc * 131 + (j + 1) * v) % 1_000_003
    return acc


@dataclass
class Spec:
    """One generated node: ``f{index}(params) -> outputs``."""

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
def dags(draw: st.DrawFn, max_nodes: int = 9) -> list[Spec]:
    """Specs in creation order, which is a topological order."""
    specs: list[Spec] = []
    produced: list[str] = []
    for i in range(draw(st.integers(1, max_nodes))):
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


def used_externals(specs: Sequence[Spec]) -> dict[str, bool]:
    """external name -> whether it may be omitted (every consumer has a default)."""
    optional: dict[str, bool] = {}
    for s in specs:
        for p in s.params:
            if p in EXTERNALS:
                optional[p] = optional.get(p, True) and p in s.defaults
    return optional


def reference(specs: Sequence[Spec], inputs: dict[str, int]) -> dict[str, int]:
    """Every output of the DAG, evaluated with a dict in creation order."""
    env: dict[str, int] = {}
    for s in specs:
        args = tuple(env[p] if p in env else inputs[p] if p in inputs else s.defaults[p] for p in s.params)
        env.update(zip(s.outputs, s.compute(args)))
    return env


@dataclass
class Nested:
    """Specs ``lo..hi-1`` (a contiguous run, so no cycle through the outer graph) as one
    nested pipeline, on inner engine number ``engine`` (0: none of its own)."""

    lo: int
    hi: int
    engine: int
    as_node: bool


@dataclass
class Call:
    specs: list[Spec]
    order: list[int]  # declaration order of the outer members: spec indices, -1 for the nested pipeline
    nested: Nested | None
    inputs: dict[str, int]
    wanted: list[str] | None

    @property
    def outputs(self) -> list[str]:
        """The names a call returns: the requested ones, else every output."""
        return self.wanted if self.wanted is not None else [o for s in self.specs for o in s.outputs]

    def nodes(self, inner_engines: Sequence[HypernodesEngine | None] = (None,)) -> list[Any]:
        """The pipeline's members in declaration order (the nested one on its inner engine)."""
        members: list[Any] = []
        for k in self.order:
            if k >= 0:
                members.append(self.specs[k].node)
                continue
            assert self.nested is not None
            inner_nodes = [s.node for s in self.specs[self.nested.lo : self.nested.hi]]
            inner = Pipeline(inner_nodes, backend=inner_engines[self.nested.engine], name=f"inner{self.nested.lo}")
            members.append(inner.as_node(name=f"nested{self.nested.lo}") if self.nested.as_node else inner)
        return members

    def expected(self, items: Sequence[dict[str, int]] | None = None) -> Any:
        """The reference result of run(), or of map() over ``items`` (each merged into the inputs)."""
        if items is None:
            env = reference(self.specs, self.inputs)
            return {n: env[n] for n in self.outputs}
        envs = [reference(self.specs, {**self.inputs, **item}) for item in items]
        return {n: [env[n] for env in envs] for n in self.outputs}


@st.composite
def calls(draw: st.DrawFn, inner_engines: int = 1) -> Call:
    """A random pipeline, maybe with a nested pipeline on one of ``inner_engines`` engines, and a call of it."""
    specs = draw(dags())
    nested = None
    if len(specs) >= 2 and draw(st.booleans()):
        lo = draw(st.integers(0, len(specs) - 1))
        hi = draw(st.integers(lo + 1, len(specs)))
        nested = Nested(lo, hi, draw(st.integers(0, inner_engines - 1)), draw(st.booleans()))
    members = [k for k in range(len(specs)) if nested is None or not nested.lo <= k < nested.hi]
    order = draw(st.permutations(members + ([-1] if nested else [])))
    inputs = {
        name: draw(st.integers(-50, 50))
        for name, optional in used_externals(specs).items()
        if not optional or draw(st.booleans())
    }
    all_outputs = [o for s in specs for o in s.outputs]
    wanted = draw(st.none() | st.lists(st.sampled_from(all_outputs), min_size=1, max_size=3, unique=True))
    return Call(specs, list(order), nested, inputs, wanted)


@dataclass
class MapCall:
    call: Call
    lists: dict[str, list[int]]
    mode: str

    @property
    def items(self) -> list[dict[str, int]]:
        """The items in map order: zipped, or the product with the last list fastest."""
        names = list(self.lists)
        values = zip(*self.lists.values()) if self.mode == "zip" else itertools.product(*self.lists.values())
        return [dict(zip(names, row)) for row in values]


@st.composite
def map_calls(draw: st.DrawFn, inner_engines: int = 1, min_items: int = 0, max_items: int = 4) -> MapCall:
    """A random pipeline and a zip or product map of it over some inputs (the others broadcast),
    over ``min_items``..``max_items`` items (a product: lists of up to 3, at least one item if asked)."""
    call = draw(calls(inner_engines).filter(lambda c: bool(c.inputs)))  # a map needs something to map over
    mode = draw(st.sampled_from(["zip", "product"]))
    mapped = draw(st.lists(st.sampled_from(sorted(call.inputs)), min_size=1, max_size=3, unique=True))
    if mode == "zip":
        n = draw(st.integers(min_items, max_items))
        lists = {m: draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n)) for m in mapped}
    else:
        size = 1 if min_items else 0
        lists = {m: draw(st.lists(st.integers(-50, 50), min_size=size, max_size=3)) for m in mapped}
    return MapCall(call, lists, mode)
