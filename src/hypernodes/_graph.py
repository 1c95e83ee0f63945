"""Compile a pipeline's nodes into integer form.

Two steps, each done once and cached by the caller:

* :func:`build_graph` validates the wiring of a node list (duplicate outputs,
  cycles) when a ``Pipeline`` is constructed. It knows names.
* :func:`compile_plan` specialises that graph to one *call shape* -- which outputs
  are requested and which input names are given -- and lowers it to a
  :class:`Plan`: every value gets an integer slot, every node a range of argument
  and output slots, and the dependency graph becomes a successor CSR plus an
  indegree array. The cores (``_sched`` / ``_sched_py``) only ever see plans.

Specialising on the given input names is what lets defaults cost nothing at run
time: an input that is not given becomes a constant slot per consuming node,
pre-filled in the plan's ``template`` with *that node's* default, so two nodes
with different defaults for the same name each get their own.
"""

from __future__ import annotations

import difflib
import heapq
import sys
import warnings
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .errors import CycleError, DuplicateOutputError, InputError, MissingInputError, UnknownOutputError
from .node import Node

__all__ = ["Graph", "Plan", "UnusedInputWarning", "Wiring", "build_graph", "compile_plan", "ticks"]


class UnusedInputWarning(UserWarning):
    """A call was given an input that no node reads (``Pipeline(strict_inputs=False)``, the default);
    it is ignored. ``strict_inputs=True`` makes it an ``InputError``."""


def ticks(names: Iterable[Any]) -> str:
    """Names as ``a``, ``b`` for messages; ``(none)`` for none."""
    return ", ".join(f"`{n}`" for n in names) or "(none)"


class Graph:
    """The validated wiring of a node list; names only, no slots."""

    __slots__ = ("inputs", "nodes", "order", "outputs", "parameters", "producer")

    def __init__(self, nodes: tuple[Node[..., Any], ...], producer: dict[str, int], order: tuple[int, ...]) -> None:
        self.nodes = nodes
        self.producer = producer  # output name -> index of the node producing it
        self.order = order  # a topological order of node indices, stable w.r.t. declaration order
        self.outputs: tuple[str, ...] = tuple(name for n in nodes for name in n.outputs)
        params: dict[str, None] = {}
        for n in nodes:
            params.update(dict.fromkeys(n.parameters))
        self.parameters = frozenset(params)
        # external inputs: parameters no node produces, in first-use order
        self.inputs: tuple[str, ...] = tuple(p for p in params if p not in producer)

    def inputs_for(self, outputs: Iterable[str]) -> frozenset[str]:
        """The external inputs that computing ``outputs`` reads."""
        seen: set[int] = set()
        stack = [self.producer[o] for o in outputs]
        needed: set[str] = set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for p in self.nodes[i].parameters:
                if p in self.producer:
                    stack.append(self.producer[p])
                else:
                    needed.add(p)
        return frozenset(needed)

    def optional_inputs(self) -> frozenset[str]:
        """External inputs that every consuming node has a default for."""
        return frozenset(
            name for name in self.inputs if all(name in n.defaults for n in self.nodes if name in n.parameters)
        )


def build_graph(nodes: Sequence[Node[..., Any]]) -> Graph:
    """Validate the wiring of ``nodes``.

    Raises:
        DuplicateOutputError: two nodes produce the same output name.
        CycleError: the wiring has a cycle (the message names the nodes on it).
    """
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for out in n.outputs:
            j = producer.setdefault(out, i)
            if j == i:
                continue
            if nodes[j] is n:  # "both node `f` and node `f`" would not say what is wrong
                raise DuplicateOutputError(
                    f"Node `{n.name}` is listed twice (nodes[{j}] and nodes[{i}]), so output `{out}` would "
                    "come from two nodes; list each node once."
                )
            if nodes[j].name == n.name:  # e.g. one pipeline nested twice: say how to tell them apart
                raise DuplicateOutputError(
                    f"Output `{out}` is produced by nodes[{j}] and nodes[{i}], both named `{n.name}` (the same "
                    "pipeline nested twice?). Each output name must come from exactly one node: give each copy "
                    f'its own name and outputs, e.g. pipeline.as_node(name="{n.name}_2", '
                    f'output_mapping={{"{out}": "{out}_2"}}).'
                )
            raise DuplicateOutputError(
                f"Output `{out}` is produced by both node `{nodes[j].name}` and node `{n.name}`; "
                "each output name must come from exactly one node (rename one of them)."
            )
    preds, succs = _edges([n.parameters for n in nodes], producer.get)
    indegree = [len(p) for p in preds]
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for s in succs[i]:
            indegree[s] -= 1
            if indegree[s] == 0:
                heapq.heappush(ready, s)
    if len(order) != len(nodes):
        cycle = _find_cycle(preds, {i for i, d in enumerate(indegree) if d > 0})
        names = [nodes[i].name for i in cycle]
        path = " -> ".join(f"`{n}`" for n in [*names, names[0]])
        raise CycleError(f"The pipeline has a cycle: {path}. A node cannot depend on its own output.", tuple(names))
    return Graph(tuple(nodes), producer, tuple(order))


def _edges(
    parameters: Sequence[Sequence[str]], producer_of: Callable[[str], int | None]
) -> tuple[list[list[int]], list[list[int]]]:
    """Predecessor and successor lists of nodes whose inputs are ``parameters``."""
    preds = [sorted({i for i in map(producer_of, params) if i is not None}) for params in parameters]
    succs: list[list[int]] = [[] for _ in parameters]
    for k, ps in enumerate(preds):
        for p in ps:
            succs[p].append(k)
    return preds, succs


def _find_cycle(preds: list[list[int]], stuck: set[int]) -> list[int]:
    # Every stuck node has a stuck predecessor; walking predecessors must revisit one.
    i = min(stuck)
    seen: dict[int, int] = {}
    path: list[int] = []
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = next(p for p in preds[i] if p in stuck)
    cycle = path[seen[i] :]
    cycle.reverse()  # predecessor walk -> data-flow order
    start = cycle.index(min(cycle))  # begin at the first-declared node: stable messages
    return cycle[start:] + cycle[:start]


class Plan:
    """A graph lowered to slots for one call shape. Integers plus the node callables.

    Node ``k`` of the plan (nodes are numbered in topological order) reads slots
    ``arg_slots[arg_ptr[k]:arg_ptr[k+1]]``, writes ``out_slots[out_ptr[k]:out_ptr[k+1]]``
    (unpacking a returned tuple when ``unpack[k]``), and releases the nodes
    ``succ_idx[succ_ptr[k]:succ_ptr[k+1]]``, each of which waits for ``indegree``
    predecessors. ``template`` is the initial slot list (defaults filled in);
    ``input_pairs`` / ``result_pairs`` map the given inputs and the requested
    outputs to their slots.
    Picklable; the cores attach a private prepared form in ``_native``; :attr:`wiring`
    is the same per node as Python tuples, computed once.
    """

    __slots__ = (
        "__weakref__",
        "_native",
        "_wiring",
        "arg_ptr",
        "arg_slots",
        "funcs",
        "has_async",
        "indegree",
        "input_names",
        "input_pairs",
        "is_async",
        "max_args",
        "n_nodes",
        "n_slots",
        "node_names",
        "nodes",
        "out_ptr",
        "out_slots",
        "result_names",
        "result_pairs",
        "result_slots",
        "succ_idx",
        "succ_ptr",
        "template",
        "unpack",
    )

    _native: object | None
    _wiring: Wiring | None
    arg_ptr: array[int]
    arg_slots: array[int]
    funcs: tuple[Callable[..., Any], ...]
    has_async: bool
    indegree: array[int]
    input_names: tuple[str, ...]
    input_pairs: tuple[tuple[str, int], ...]
    is_async: tuple[bool, ...]
    max_args: int
    n_nodes: int
    n_slots: int
    node_names: tuple[str, ...]
    nodes: tuple[Node[..., Any], ...]
    out_ptr: array[int]
    out_slots: array[int]
    result_names: tuple[str, ...]
    result_pairs: tuple[tuple[str, int], ...]
    result_slots: array[int]
    succ_idx: array[int]
    succ_ptr: array[int]
    template: tuple[Any, ...]
    unpack: array[int]

    def __init__(
        self,
        nodes: Sequence[Node[..., Any]],
        args: Sequence[Sequence[int]],
        outs: Sequence[Sequence[int]],
        succs: Sequence[Sequence[int]],
        template: Sequence[Any],
        inputs: Sequence[tuple[str, int]],
        results: Sequence[tuple[str, int]],
    ) -> None:
        """Args:
        nodes: the plan's nodes in topological order.
        args, outs: per node, its argument slots and its output slots.
        succs: per node, the nodes that read its outputs (each once).
        template: the initial value of every slot.
        inputs: ``(name, slot)`` of each given input the plan reads, sorted by name.
        results: ``(name, slot)`` of each requested output, in request order.
        """
        self.nodes = tuple(nodes)
        self.node_names = tuple(n.name for n in self.nodes)
        self.funcs = tuple(n._call for n in self.nodes)
        self.is_async = tuple(n.is_async for n in self.nodes)
        self.has_async = any(self.is_async)
        self.n_nodes = len(self.nodes)
        self.n_slots = len(template)
        self.arg_ptr, self.arg_slots = _csr(args)
        self.out_ptr, self.out_slots = _csr(outs)
        self.succ_ptr, self.succ_idx = _csr(succs)
        indegree = [0] * self.n_nodes
        for ss in succs:
            for s in ss:
                indegree[s] += 1
        self.indegree = _i32(indegree)
        self.unpack = _i32([not isinstance(n.output_name, str) for n in self.nodes])
        self.max_args = max(map(len, args), default=0)
        self.template = tuple(template)
        self.input_pairs = tuple(inputs)
        self.input_names = tuple(name for name, _ in self.input_pairs)
        self.result_pairs = tuple(results)
        self.result_names = tuple(name for name, _ in self.result_pairs)
        self.result_slots = _i32([slot for _, slot in self.result_pairs])
        self._native = self._wiring = None

    # Pickled through its nodes, not `funcs`: a Node knows how to pickle a function
    # that `@node` shadowed at module level (see Node.__reduce__); the bare function does not.
    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k not in ("__weakref__", "_native", "_wiring", "funcs")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self.funcs = tuple(n._call for n in self.nodes)
        self._native = self._wiring = None

    @property
    def wiring(self) -> Wiring:
        """The per-node slots as Python tuples (what Python code that runs nodes one by one reads)."""
        wiring = self._wiring
        if wiring is None:
            wiring = self._wiring = Wiring(self)
        return wiring

    def __repr__(self) -> str:
        return f"<Plan {self.n_nodes} nodes, {self.n_slots} slots -> {ticks(self.result_names)}>"


class Wiring:
    """A plan's arrays per node, as tuples: what Python code that runs nodes one by one reads."""

    __slots__ = ("args", "is_async", "names", "outs", "result_slots", "unpack")

    def __init__(self, plan: Plan) -> None:
        arg_ptr, arg_slots = plan.arg_ptr.tolist(), plan.arg_slots.tolist()
        out_ptr, out_slots = plan.out_ptr.tolist(), plan.out_slots.tolist()
        n = plan.n_nodes
        self.args: tuple[tuple[int, ...], ...] = tuple(tuple(arg_slots[arg_ptr[k] : arg_ptr[k + 1]]) for k in range(n))
        self.outs: tuple[tuple[int, ...], ...] = tuple(tuple(out_slots[out_ptr[k] : out_ptr[k + 1]]) for k in range(n))
        self.unpack: tuple[bool, ...] = tuple(bool(u) for u in plan.unpack.tolist())
        self.names = plan.node_names
        self.is_async = plan.is_async
        self.result_slots: tuple[int, ...] = tuple(plan.result_slots.tolist())


# The plan's integers are ``array('i')`` (C ``int``, 32 bits on every platform CPython
# supports): the compiled core reads them as typed memoryviews (``const int[::1]``),
# which take any C-contiguous buffer of that format; the twin reads them as lists
# (``tolist()``). numpy arrays would do the same and cost ~40 ms on `import hypernodes`.
def _i32(values: Iterable[int]) -> array[int]:
    return array("i", values)


def _csr(rows: Sequence[Sequence[int]]) -> tuple[array[int], array[int]]:
    """``(ptr, idx)``: row ``k`` is ``idx[ptr[k]:ptr[k+1]]``."""
    ptr = [0]
    for row in rows:
        ptr.append(ptr[-1] + len(row))
    return _i32(ptr), _i32([x for row in rows for x in row])


def compile_plan(
    graph: Graph, outputs: tuple[str, ...] | None, given: frozenset[str], verb: str = "run()", strict: bool = True
) -> Plan:
    """Lower ``graph`` for a call that asks for ``outputs`` (None: all) given ``given``.

    Four phases: check the call shape against the wiring, prune to the nodes the
    outputs need, give every value a slot, and count the dependencies.

    Args:
        strict: a given name no node reads is an ``InputError``; when False it is left
            out of the plan with an :class:`UnusedInputWarning`, unless it looks like a
            misspelling of an input the call leaves to its default (then still an error).

    Raises:
        UnknownOutputError: an output name the pipeline does not produce.
        InputError: a given name no node reads (see ``strict``), or one a node produces.
        MissingInputError: a needed input is neither given nor defaulted.
    """
    if outputs is None:
        outputs = graph.outputs
    _check_shape(graph, outputs, given, verb, strict)
    order = _prune(graph, outputs)
    nodes = [node for _, node in order]
    args, outs, template, slot_of = _assign_slots(graph, nodes, given, verb)
    position = {i: k for k, (i, _) in enumerate(order)}
    _, succs = _edges(
        [n.parameters for n in nodes], lambda p: position[graph.producer[p]] if p in graph.producer else None
    )
    inputs = [(name, slot_of[name]) for name in sorted(name for name in given if name in slot_of)]
    results = [(name, slot_of[name]) for name in dict.fromkeys(outputs)]
    return Plan(nodes, args, outs, succs, template, inputs, results)


def _check_shape(graph: Graph, outputs: tuple[str, ...], given: frozenset[str], verb: str, strict: bool) -> None:
    unknown = [o for o in outputs if o not in graph.producer]
    if unknown:
        hint = " (it is an input, and run()/map() return outputs only)" if unknown[0] in graph.parameters else ""
        raise UnknownOutputError(
            f"Unknown output_name {ticks(unknown)}{hint}: not found in pipeline. "
            f"Outputs this pipeline produces: {ticks(graph.outputs)}."
        )
    produced_given = sorted(given & graph.producer.keys(), key=str)
    if produced_given:
        name = produced_given[0]
        raise InputError(
            f"Input `{name}` is an output of node `{graph.nodes[graph.producer[name]].name}`; a value a node "
            f"computes cannot also be given as an input. Pipeline inputs: {ticks(graph.inputs)}."
        )
    stray = sorted(given - graph.parameters, key=str)  # keys need not be strings
    if not stray:
        return
    # A misspelt input is the danger of ignoring unused ones: the input it was meant
    # for silently takes its default. So a near miss of an input not given is refused always.
    not_given = [name for name in graph.inputs if name not in given]
    near = {s: m[0] for s in stray if isinstance(s, str) and (m := difflib.get_close_matches(s, not_given, 1, 0.8))}
    if strict or near:
        hint = "".join(f" Did you mean `{meant}` for `{typo}`?" for typo, meant in near.items())
        raise InputError(
            f"{verb} was given {ticks(stray)}, which no node takes as a parameter.{hint} "
            f"Pipeline inputs: {ticks(graph.inputs)}."
            + (
                ""
                if strict
                else " (A near miss of an input left to its default is refused even without strict_inputs.)"
            )
        )
    warnings.warn(
        f"{verb} was given {ticks(stray)}, which no node takes as a parameter; ignored. "
        f"Pipeline inputs: {ticks(graph.inputs)}. Pipeline(strict_inputs=True) refuses unused inputs.",
        UnusedInputWarning,
        stacklevel=_outside_level(),
    )


def _outside_level() -> int:
    """The ``stacklevel`` of the first frame outside this package: the user's call, however deep the route."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "hypernodes":
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _prune(graph: Graph, outputs: tuple[str, ...]) -> list[tuple[int, Node[..., Any]]]:
    """The nodes ``outputs`` need, as (index in the graph, node) in topological order.

    Walking the nodes in reverse topological order, every consumer of a node is
    visited before it, so the outputs wanted from it are known; a node that can
    compute fewer outputs (a nested pipeline) is narrowed to them, and its narrowed
    parameters are what its own producers must then supply.
    """
    wanted = set(outputs)
    members: dict[int, Node[..., Any]] = {}
    for i in reversed(graph.order):
        n = graph.nodes[i]
        keep = tuple(o for o in n.outputs if o in wanted)
        if not keep:
            continue
        members[i] = n if len(keep) == len(n.outputs) else n.restricted(keep)
        wanted.update(members[i].parameters)
    return [(i, members[i]) for i in graph.order if i in members]


def _assign_slots(
    graph: Graph, nodes: Sequence[Node[..., Any]], given: frozenset[str], verb: str
) -> tuple[list[list[int]], list[list[int]], list[Any], dict[str, int]]:
    """Per node its argument and output slots; the slot template; the slot of each name.

    An input that is not given becomes a constant slot per consuming node, filled in
    the template with *that node's* default: defaults then cost nothing per call.

    Raises:
        MissingInputError: a parameter neither produced, given nor defaulted.
    """
    slot_of: dict[str, int] = {}
    template: list[Any] = []

    def new_slot(value: Any = None) -> int:
        template.append(value)
        return len(template) - 1

    missing: dict[str, str] = {}
    args: list[list[int]] = []
    for n in nodes:
        row = []
        for p in n.parameters:
            if p in graph.producer or p in given:
                slot = slot_of.get(p)
                if slot is None:
                    slot = slot_of[p] = new_slot()
            elif p in n.defaults:
                slot = new_slot(n.defaults[p])
            else:
                missing.setdefault(p, n.name)
                slot = -1
            row.append(slot)
        args.append(row)
    if missing:
        need = "; ".join(f"node `{who}` needs `{p}`" for p, who in missing.items())
        many = len(missing) > 1
        raise MissingInputError(
            f"Missing input{'s' if many else ''} {ticks(missing)}: {need}; no node produces "
            f"{'them' if many else 'it'} and {verb} was not given {'them' if many else 'it'}. "
            f"Inputs given: {ticks(sorted(given, key=str))}."
        )
    outs: list[list[int]] = []
    for n in nodes:
        row = []
        for o in n.outputs:
            slot = slot_of.get(o)
            if slot is None:  # an output nobody downstream reads still needs a slot
                slot = slot_of[o] = new_slot()
            row.append(slot)
        outs.append(row)
    return args, outs, template, slot_of
