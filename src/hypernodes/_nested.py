"""Nested pipelines: a :class:`~hypernodes.Pipeline` acting as one node of another.

:meth:`Pipeline.as_node` makes a :class:`PipelineNode`: its function (``_NestedCall``)
runs or maps the inner pipeline, and its wiring (parameters, outputs, defaults) is
the inner pipeline's, renamed by ``input_mapping`` and selected by ``output_mapping``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from ._call import MAP_MODES, map_mode_message
from ._columns import column_error, is_column
from ._graph import Graph, ticks
from .errors import MapSpecError, NodeDefinitionError, WiringError
from .node import Node

__all__ = ["PipelineNode"]


class InnerPipeline(Protocol):
    """What a nested pipeline's node uses of its :class:`~hypernodes.Pipeline`.

    A protocol, not the class: ``pipeline.py`` imports this module (``as_node``), so
    this one may not import it back (``tests/test_layers.py``).
    """

    name: str | None
    nodes: tuple[Node[..., Any], ...]
    _graph: Graph

    @property
    def inputs(self) -> tuple[str, ...]: ...

    def run(self, inputs: Mapping[str, Any], output_name: list[str]) -> Mapping[str, Any]: ...

    def map(
        self, inputs: Mapping[str, Any], map_over: list[str], map_mode: str, output_name: list[str]
    ) -> Mapping[str, list[Any]]: ...


class _Absent:
    """Default of a nested pipeline's optional input: 'let the inner nodes' defaults apply'."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<inner default>"

    def __reduce__(self) -> str:
        return "_ABSENT"


_ABSENT = _Absent()


class _NestedCall:
    """The function of a :class:`PipelineNode`: runs (or maps) the inner pipeline."""

    __slots__ = ("inner_inputs", "inner_outputs", "map_mode", "map_over", "name", "outer_params", "pipeline")

    def __init__(
        self,
        pipeline: InnerPipeline,
        outer_params: tuple[str, ...],
        inner_inputs: tuple[str, ...],
        inner_outputs: tuple[str, ...],
        map_over: tuple[str, ...] | None,
        map_mode: str,
        name: str,
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.outer_params = outer_params
        self.inner_inputs = inner_inputs
        self.inner_outputs = inner_outputs
        self.map_over = map_over
        self.map_mode = map_mode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args = (*args, *(kwargs.pop(p, _ABSENT) for p in self.outer_params[len(args) :]))
            if kwargs:
                raise TypeError(
                    f"unexpected argument(s) {ticks(sorted(kwargs))}; parameters: {ticks(self.outer_params)}"
                )
        inputs = {inner: value for inner, value in zip(self.inner_inputs, args) if value is not _ABSENT}
        outputs = list(self.inner_outputs)
        if self.map_over is None:
            result = self.pipeline.run(inputs, output_name=outputs)
        else:
            self._check_mapped(args)
            result = self.pipeline.map(
                inputs, map_over=list(self.map_over), map_mode=self.map_mode, output_name=outputs
            )
        if len(self.inner_outputs) == 1:  # one output: the value itself, as any node's (output_name is a str)
            return result[self.inner_outputs[0]]
        return tuple(result[o] for o in self.inner_outputs)

    def _check_mapped(self, args: tuple[Any, ...]) -> None:
        # Checked here, in the outer names the user wired, before the inner map runs.
        outer_of = dict(zip(self.inner_inputs, self.outer_params))
        value_of = dict(zip(self.inner_inputs, args))
        lengths: dict[str, int] = {}
        for inner in self.map_over or ():
            value = value_of[inner]
            if not is_column(value):
                raise column_error(value, f"Node `{self.name}` maps over `{outer_of[inner]}`, which")
            lengths[outer_of[inner]] = len(value)
        if self.map_mode == "zip" and len(set(lengths.values())) > 1:
            shown = ", ".join(f"`{m}`: {n}" for m, n in lengths.items())
            raise MapSpecError(f"Node `{self.name}` zips lists of unequal length: {shown}.")


class PipelineNode(Node[..., Any]):
    """A pipeline acting as one node of another (see :meth:`Pipeline.as_node`).

    It produces the inner outputs (renamed, and selected by ``output_mapping``);
    its parameters are the inner inputs those outputs read, plus the mapped ones
    (renamed by ``input_mapping``). An outer call that needs only some of its
    outputs runs a narrowed copy (:meth:`restricted`) that computes only those.
    Its public face is any node's: ``output_name`` is a string when it has one
    output (a tuple of names otherwise), and ``nested`` is True.

    Attributes:
        pipeline: the inner pipeline.
        input_mapping, output_mapping, map_over, map_mode: how it is wired (read-only
            properties; see :meth:`Pipeline.as_node`).
    """

    __slots__ = ("_input_mapping", "_map_mode", "_map_over", "_narrowed", "_output_mapping", "pipeline")

    nested: ClassVar[bool] = True

    def __init__(
        self,
        pipeline: InnerPipeline,
        input_mapping: Mapping[str, str] | None = None,
        output_mapping: Mapping[str, str] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        name: str | None = None,
    ) -> None:
        """Wrap ``pipeline``; the arguments are those of :meth:`Pipeline.as_node`.

        Raises:
            NodeDefinitionError: a mapping or ``map_over`` names something the
                pipeline does not have, two inputs would share one outer name,
                ``map_mode`` is unknown (with or without ``map_over``), or ``name``
                is not a string.
        """
        if name is not None and not isinstance(name, str):
            raise NodeDefinitionError(f"as_node(name=...) takes a string, got {type(name).__name__} {name!r:.60}.")
        label = name or pipeline.name or "pipeline"
        where = f"as_node() of pipeline `{label}`"
        graph = pipeline._graph
        outer_of: dict[str, str] = {}
        for outer, inner in dict(input_mapping or {}).items():
            if inner not in graph.inputs:
                raise WiringError(
                    f"{where}: input_mapping maps `{outer}` to `{inner}`, which is not an input of the pipeline. "
                    f"Its inputs: {ticks(graph.inputs)}."
                )
            if inner in outer_of:
                raise NodeDefinitionError(f"{where}: input_mapping maps two names to inner input `{inner}`.")
            outer_of[inner] = outer
        all_outer = tuple(outer_of.get(i, i) for i in graph.inputs)
        if len(set(all_outer)) != len(all_outer):
            raise NodeDefinitionError(f"{where}: input_mapping makes two inputs share one outer name: {all_outer}.")
        if output_mapping is None:
            inner_outputs = graph.outputs
            outer_outputs = inner_outputs
        else:
            unknown = [inner for inner in output_mapping if inner not in graph.producer]
            if unknown:
                raise WiringError(
                    f"{where}: output_mapping names {ticks(unknown)}, not produced by the pipeline. "
                    f"Its outputs: {ticks(graph.outputs)}."
                )
            inner_outputs = tuple(output_mapping)
            outer_outputs = tuple(output_mapping[o] for o in inner_outputs)
            if not inner_outputs:
                raise NodeDefinitionError(f"{where}: output_mapping is empty; the node would produce nothing.")
        inner_of = dict(zip(all_outer, graph.inputs))
        mapped: tuple[str, ...] = ()
        if map_over is not None:
            mapped = (map_over,) if isinstance(map_over, str) else tuple(map_over)
            bad = [m for m in mapped if m not in inner_of]
            if not mapped or bad:
                raise WiringError(
                    f"{where}: map_over must name the node's (outer) inputs; got {map_over!r}. "
                    f"Its inputs: {ticks(all_outer)}."
                )
        if map_mode not in MAP_MODES:  # also without map_over: a typo must not wait for map_over to be added
            raise NodeDefinitionError(f"{where}: {map_mode_message(map_mode)}")
        mapped_inner = tuple(inner_of[m] for m in mapped)
        # mapped inputs set the number of items, so they are parameters even when
        # the selected outputs do not read them, and never optional
        needed = graph.inputs_for(inner_outputs) | set(mapped_inner)
        inner_inputs = tuple(i for i in graph.inputs if i in needed)
        outer_params = tuple(outer_of.get(i, i) for i in inner_inputs)
        call = _NestedCall(pipeline, outer_params, inner_inputs, inner_outputs, mapped_inner or None, map_mode, label)
        super().__init__(call, outer_outputs[0] if len(outer_outputs) == 1 else outer_outputs, name=label)
        # The signature of _NestedCall is (*args, **kwargs): set the wiring explicitly.
        optional = graph.optional_inputs() - set(mapped_inner)
        self.parameters = outer_params
        self.defaults = {outer: _ABSENT for outer, inner in zip(outer_params, inner_inputs) if inner in optional}
        self._call = call
        self.is_async = False
        self.pipeline = pipeline
        self._input_mapping = dict(input_mapping or {})
        self._output_mapping = dict(zip(inner_outputs, outer_outputs))
        self._map_over = mapped or None
        self._map_mode = map_mode
        self._narrowed: dict[tuple[str, ...], PipelineNode] = {}

    @property
    def input_mapping(self) -> Mapping[str, str]:
        """``{outer name: inner input name}``: the renames given to ``as_node`` (read-only)."""
        return MappingProxyType(self._input_mapping)

    @property
    def output_mapping(self) -> Mapping[str, str]:
        """``{inner output name: outer name}`` for every output the node produces, in its
        outputs' order (read-only; an unrenamed output maps to itself)."""
        return MappingProxyType(self._output_mapping)

    @property
    def map_over(self) -> tuple[str, ...] | None:
        """The (outer) parameters whose lists the node maps the inner pipeline over; None: it runs once."""
        return self._map_over

    @property
    def map_mode(self) -> str:
        """ "zip" or "product": how the mapped lists combine into items (read also without ``map_over``)."""
        return self._map_mode

    def restricted(self, outputs: tuple[str, ...]) -> PipelineNode:
        """This nested pipeline computing only ``outputs`` (outer names), and reading only their inputs."""
        narrowed = self._narrowed.get(outputs)
        if narrowed is None:
            keep = {inner: outer for inner, outer in self._output_mapping.items() if outer in outputs}
            narrowed = PipelineNode(self.pipeline, self._input_mapping, keep, self._map_over, self._map_mode, self.name)
            self._narrowed[outputs] = narrowed
        return narrowed
