"""Pipeline: wiring, validation, its call options; run()/map() hand each call to the engine.

A pipeline validates its wiring once (duplicate outputs, cycles) when built. Each
call is checked before any node runs (``_call.py``); the checked call *shape*
(requested outputs, given input names) maps to a compiled
:class:`~hypernodes._graph.Plan`, cached in the pipeline's :class:`~hypernodes._call.PlanCache`,
so a repeated call costs one dict lookup before the core takes over. What a call
asks for besides its nodes (callbacks, cache, on_error, input checks) is the
pipeline's ``options`` record; ``pipeline.run/map`` call ``engine.run/map(self, ...)``,
which read ``plans`` and ``options`` only (``_open`` opens the call).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ._call import CallOptions, PlanCache
from ._errors import check_bool
from ._graph import Graph, build_graph
from ._nested import PipelineNode
from ._observe import check_callbacks, pipeline_id
from ._typecheck import check_edges, check_mode
from ._validate import InputValidator, validate_mode
from .cache import Cache
from .callbacks import PipelineCallback
from .engine import Engine, default_engine
from .errors import ArgumentTypeError, ExecutorSpecError, NodeDefinitionError
from .failures import MapResult, check_on_error
from .node import Node

__all__ = ["Pipeline", "PipelineNode"]


def _check_engine(engine: Any, where: str, keyword: str = "") -> Engine | None:
    """``engine`` if it is None or an engine instance (``where``: the call that got it, and
    ``keyword`` the argument, for messages)."""
    if isinstance(engine, type):
        name, given = engine.__name__, f"{keyword}=" if keyword else ""
        raise ExecutorSpecError(
            f"{where} got the class {name}, not an engine; pass an instance: "
            f"{given}{name}() or {given}{name}(map_executor='threaded')."
        )
    if engine is not None and not (callable(getattr(engine, "run", None)) and callable(getattr(engine, "map", None))):
        raise ExecutorSpecError(
            f"{where} takes an engine such as HypernodesEngine(map_executor=...), got "
            f"{type(engine).__name__} {engine!r:.60}. Executors and executor names go into the "
            "engine: HypernodesEngine(map_executor='threaded')."
        )
    result: Engine | None = engine
    return result


def _check_cache(cache: Any, where: str) -> Cache | None:
    if cache is not None and not isinstance(cache, Cache):
        raise TypeError(f"{where} takes a hypernodes.cache.Cache such as DiskCache(path), got {cache!r:.60}.")
    result: Cache | None = cache
    return result


def _check_name(name: Any, where: str) -> None:
    if name is not None and not isinstance(name, str):
        raise NodeDefinitionError(
            f"{where} takes a string (it names the pipeline in errors and when nested), "
            f"got {type(name).__name__} {name!r:.60}."
        )


class Pipeline:
    """Functions wired by parameter name into a DAG, run once or over many items.

    Attributes:
        nodes: the members, as nodes (a nested ``Pipeline`` appears as its node).
        name: the pipeline's name (used when it is nested).
        engine: the engine that runs it (``backend`` is an alias).
        inputs: names the pipeline needs from outside, in first-use order.
        outputs: every name the nodes produce, in declaration order.
        options: what each call asks for besides its nodes (callbacks, cache, on_error,
            input checks, ids), as the engine reads it: a ``CallOptions`` record, made
            anew when ``name``, ``callbacks``, ``cache``, ``on_error`` or
            ``validate_inputs`` is assigned (it shares the ``callbacks`` list).
    """

    def __init__(
        self,
        # object, not Node | Pipeline: mypy joins nodes of different signatures in one list
        # (Node[[str], str], Node[[int], float]) to object, and runtime checks every member anyway.
        nodes: Sequence[object],
        backend: Engine | None = None,
        *,
        engine: Engine | None = None,
        name: str | None = None,
        callbacks: Sequence[PipelineCallback] | None = None,
        cache: Cache | None = None,
        parent: Pipeline | None = None,
        on_error: str = "raise",
        type_check: str = "warn",
        validate_inputs: bool | str = False,
        strict_inputs: bool = False,
    ) -> None:
        """Args:
            nodes: ``Node``s (see ``@node``), nested ``Pipeline``s, or ``as_node()`` results.
            backend: the engine; None uses a shared sequential engine.
            engine: alias of ``backend``.
            name: a name, shown in errors and used when nested.
            callbacks: :class:`~hypernodes.PipelineCallback` instances that see each
                call as it runs (see ``hypernodes.callbacks``); nested pipelines
                inherit them.
            cache: a :class:`~hypernodes.cache.Cache` (``DiskCache(path)``, ``MemoryCache()``)
                that stores each node's results by code and inputs (see
                ``hypernodes.cache``); nested pipelines without their own inherit it.
            parent: a pipeline whose engine, cache and callbacks this one uses where it
                sets none itself (the notebook-era ``parent=``; see ``effective_backend``).
            on_error: what this pipeline's maps do when an item fails, unless a
                ``map()`` call says otherwise: "raise" (stop at the first failing
                item) or "continue" (see :meth:`map`). Also what it does as a nested
                ``as_node(map_over=...)``.
            type_check: what to do when, on an edge annotated at both ends, the
                producer's return type does not fit the consumer's parameter:
                "warn" (a ``TypeMismatchWarning``, the default), "raise"
                (``TypeMismatchError``) or "off" (annotations are not read). Only
                definite misfits count: ``Any``, type variables and what cannot be
                resolved pass (see the README's "Type checks").
            validate_inputs: False (the default: annotations are not read at run
                time), True (each ``run()``/``map()`` call's inputs, and each mapped
                item, are checked against the annotations of the parameters reading
                them, before any node runs) or "coerce" (as True, and a dict given
                for a pydantic model parameter is validated into the model).
            strict_inputs: what ``run()``/``map()`` do with an input no node reads. False
                (the default, as the notebook-era version): ignore it with an
                ``UnusedInputWarning`` naming it, unless it looks like a misspelling of an
                input the call leaves to its default (``treshold`` for ``threshold``): that
                is an ``InputError`` either way. True: every unused input is an ``InputError``.

        Raises:
            NodeDefinitionError: a member is not a node or pipeline, or ``name`` is not a string.
            DuplicateOutputError: two nodes produce the same output.
            CycleError: the wiring is cyclic.
            ArgumentTypeError: ``backend`` and ``engine`` both given and different.
            ExecutorSpecError: ``backend`` is not an engine (an engine class, for one).
            TypeError: ``callbacks`` is not a list of ``PipelineCallback`` instances,
                or ``cache`` is not a ``Cache``.
            MapSpecError: ``on_error`` is neither "raise" nor "continue".
            TypeMismatchError: ``type_check="raise"`` and an edge's annotations do not fit.
            ArgumentTypeError: ``validate_inputs`` is not False, True or "coerce".
            TypeError: ``strict_inputs`` is not True or False.
        """
        if backend is not None and engine is not None and backend is not engine:
            raise ArgumentTypeError("Pipeline() got both backend= and engine= (aliases); pass one.")
        self.name = name
        if not isinstance(nodes, (list, tuple)):
            raise NodeDefinitionError(
                f"Pipeline(nodes=...) takes a list of nodes, got {type(nodes).__name__} {nodes!r:.60}."
            )
        members: list[Node[..., Any]] = []
        for i, member in enumerate(nodes):
            if isinstance(member, Node):
                members.append(member)
            elif isinstance(member, Pipeline):
                members.append(member.as_node())
            elif callable(member):
                shown = getattr(member, "__name__", type(member).__name__)
                raise NodeDefinitionError(
                    f"nodes[{i}] ({shown}) is a plain callable; decorate it with @node(output_name=...) "
                    "so the pipeline knows what it produces."
                )
            else:
                raise NodeDefinitionError(
                    f"nodes[{i}] is {type(member).__name__} {member!r:.60}, not a node; "
                    "pipelines take @node functions and other Pipelines."
                )
        self.nodes: tuple[Node[..., Any], ...] = tuple(members)
        keyword = "backend" if backend is not None else "engine"
        self.engine = _check_engine(backend if backend is not None else engine, f"Pipeline({keyword}=...)", keyword)
        if parent is not None and not isinstance(parent, Pipeline):
            raise ArgumentTypeError(f"Pipeline(parent=...) takes a Pipeline, got {type(parent).__name__}.")
        self._parent = parent
        # Without callbacks of its own a pipeline with a parent uses the parent's (see effective_callbacks).
        self.callbacks = callbacks if callbacks is not None or parent is None else parent.effective_callbacks
        self.cache = cache
        self.on_error = on_error
        self.validate_inputs = validate_inputs
        self._graph: Graph = build_graph(self.nodes)
        self.type_check = check_mode(type_check)
        check_edges(self.nodes, self._graph.producer, self.type_check, f"Pipeline `{name or 'pipeline'}`")
        self.strict_inputs = check_bool(strict_inputs, "strict_inputs", "Pipeline()")
        self.plans = PlanCache(self._graph, self.strict_inputs)  # one compiled Plan per call shape, read by engines
        self.options = self._options()  # and what each call asks for besides the nodes, read by engines

    def __getstate__(self) -> dict[str, Any]:
        # A pipeline travels to worker processes as its nodes: the engine (threads,
        # loops, executors) stays home, and a nested pipeline runs in-process there.
        # Callbacks stay home too: a worker records hook calls and the caller makes them.
        return {
            "nodes": self.nodes,
            "name": self.name,
            "cache": self.cache,
            "on_error": self.on_error,
            "validate_inputs": self.validate_inputs,
            "strict_inputs": self.strict_inputs,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["nodes"],
            name=state["name"],
            cache=state.get("cache"),
            on_error=state.get("on_error", "raise"),
            type_check="off",  # checked where it was built; a worker need not read annotations again
            validate_inputs=state.get("validate_inputs", False),
            strict_inputs=state.get("strict_inputs", False),
        )

    # copies (unlike pickles) stay in this process, so they keep the engine and callbacks
    def __copy__(self) -> Pipeline:
        return Pipeline(
            self.nodes,
            engine=self.engine,
            name=self.name,
            callbacks=self.callbacks,
            cache=self.cache,
            parent=self._parent,
            on_error=self.on_error,
            type_check="off",  # the same nodes, checked when the original was built
            validate_inputs=self.validate_inputs,
            strict_inputs=self.strict_inputs,
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Pipeline:
        nodes = copy.deepcopy(self.nodes, memo)
        return Pipeline(
            nodes,
            engine=self.engine,
            name=self.name,
            callbacks=self.callbacks,
            cache=self.cache,
            parent=self._parent,
            on_error=self.on_error,
            type_check="off",  # the same nodes, checked when the original was built
            validate_inputs=self.validate_inputs,
            strict_inputs=self.strict_inputs,
        )

    # -- what each call asks for besides the nodes: kept in self.options -----------

    def _options(self) -> CallOptions:
        validator = None
        if self.validate_inputs is not False:
            where = f"Pipeline `{self.name or 'pipeline'}`"
            validator = InputValidator(self.nodes, self.validate_inputs == "coerce", where)
        return CallOptions(
            self.name,
            pipeline_id(self.name, [n.name for n in self.nodes]),
            self._callbacks,
            self.effective_cache,
            self.on_error,
            validator,
        )

    def _changed(self) -> None:
        # An option assigned after construction (the notebook-era style): a new record for the engines.
        # (Not `"options" in self.__dict__`: reading __dict__ makes the instance's attribute reads slower.)
        if getattr(self, "options", None) is not None:
            self.options = self._options()

    @property
    def name(self) -> str | None:
        """The pipeline's name (shown in errors, used when nested, its callback id when given)."""
        return self._name

    @name.setter
    def name(self, name: str | None) -> None:
        _check_name(name, "Pipeline(name=...)")
        self._name = name
        self._changed()

    @property
    def callbacks(self) -> list[PipelineCallback]:
        """The pipeline's callbacks: this list is the one its calls read (one appended is seen)."""
        return self._callbacks

    @callbacks.setter
    def callbacks(self, callbacks: Sequence[PipelineCallback] | None) -> None:
        self._callbacks: list[PipelineCallback] = list(check_callbacks(callbacks))
        self._changed()

    @property
    def cache(self) -> Cache | None:
        """The pipeline's own cache (see :attr:`effective_cache` for the one its calls use)."""
        return self._cache

    @cache.setter
    def cache(self, cache: Cache | None) -> None:
        self._cache = _check_cache(cache, "Pipeline(cache=...)")
        self._changed()

    @property
    def on_error(self) -> str:
        """What its maps do when an item fails, unless a ``map()`` call says otherwise."""
        return self._on_error

    @on_error.setter
    def on_error(self, on_error: str) -> None:
        self._on_error = check_on_error(on_error, "Pipeline()")
        self._changed()

    @property
    def validate_inputs(self) -> bool | str:
        """False, True or "coerce": whether each call's inputs are checked against the annotations."""
        return self._validate_inputs

    @validate_inputs.setter
    def validate_inputs(self, validate_inputs: bool | str) -> None:
        self._validate_inputs: bool | str = validate_mode(validate_inputs)
        self._changed()

    @property
    def effective_backend(self) -> Engine:
        """The engine calls use: this pipeline's, else its ``parent``'s (recursively), else the shared default."""
        if self.engine is not None:
            return self.engine
        return self._parent.effective_backend if self._parent is not None else default_engine()

    @property
    def effective_cache(self) -> Cache | None:
        """The cache calls use: this pipeline's, else its ``parent``'s (recursively; the parent's
        when this pipeline is constructed, or its ``cache`` assigned), else None."""
        if self.cache is not None:
            return self.cache
        return self._parent.effective_cache if self._parent is not None else None

    @property
    def effective_callbacks(self) -> list[PipelineCallback]:
        """The callbacks calls use: this pipeline's own, else (when it was given none, not even ``[]``)
        its ``parent``'s, recursively; taken from the parent when this pipeline is constructed."""
        return self.callbacks

    @property
    def id(self) -> str:
        """The pipeline's id in callbacks: its name, or one derived from its nodes (stable across runs)."""
        return self.options.id

    @property
    def backend(self) -> Engine | None:
        """Alias of :attr:`engine`."""
        return self.engine

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names the pipeline needs from outside (some may have defaults)."""
        return self._graph.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every name the pipeline's nodes produce."""
        return self._graph.outputs

    # -- the notebook-era face: graph views and fluent setters --------------------

    @property
    def graph(self) -> Any:
        """The wiring as a ``networkx.DiGraph`` (needs ``networkx``): its nodes are this
        pipeline's nodes (a nested pipeline as its node) and the names of its inputs; an edge
        runs from each input name and each producing node to every node reading it.

        A new graph each time: changing it changes nothing here.

        Raises:
            ImportError: ``networkx`` is not installed (``pip install networkx``).
        """
        try:
            import networkx as nx  # lazy: an optional dependency, only this view needs it
        except ImportError as exc:
            raise ImportError(
                "Pipeline.graph is a networkx.DiGraph and needs networkx (`pip install networkx`); "
                "without it, `execution_order`, `inputs` and `outputs` describe the wiring."
            ) from exc
        wiring = self._graph
        g = nx.DiGraph()
        g.add_nodes_from(wiring.nodes)
        for n in wiring.nodes:
            for p in n.parameters:
                producer = wiring.producer.get(p)
                g.add_edge(p if producer is None else wiring.nodes[producer], n)
        return g

    @property
    def execution_order(self) -> list[Node[..., Any]]:
        """The nodes in the order a sequential run calls them (a topological order that keeps
        declaration order where the wiring allows)."""
        wiring = self._graph
        return [wiring.nodes[i] for i in wiring.order]

    @property
    def root_args(self) -> list[str]:
        """The names this pipeline reads from outside, as a list (notebook-era name of :attr:`inputs`)."""
        return list(self._graph.inputs)

    @property
    def parameters(self) -> tuple[str, ...]:
        """Same as :attr:`inputs`: what a pipeline, like a node, takes."""
        return self._graph.inputs

    @property
    def output_name(self) -> tuple[str, ...]:
        """Same as :attr:`outputs`: every name the nodes produce, in declaration order."""
        return self._graph.outputs

    def with_backend(self, backend: Engine | None) -> Pipeline:
        """Set this pipeline's engine, as ``Pipeline(backend=...)`` would; None: its parent's or the default.

        Returns:
            This pipeline (changed in place), for chaining.

        Raises:
            ExecutorSpecError: ``backend`` is not an engine instance.
        """
        self.engine = _check_engine(backend, "with_backend()")
        return self

    def with_cache(self, cache: Cache | None) -> Pipeline:
        """Set this pipeline's cache, as ``Pipeline(cache=...)`` would; None: its parent's or none.

        Returns:
            This pipeline (changed in place), for chaining.

        Raises:
            TypeError: ``cache`` is not a ``Cache``.
        """
        self.cache = _check_cache(cache, "with_cache()")
        return self

    def with_callbacks(self, callbacks: Sequence[PipelineCallback] | None) -> Pipeline:
        """Set this pipeline's callbacks, as ``Pipeline(callbacks=...)`` would (None: its parent's).

        Returns:
            This pipeline (changed in place), for chaining.

        Raises:
            TypeError: not a list of ``PipelineCallback`` instances.
        """
        given = callbacks if callbacks is not None or self._parent is None else self._parent.effective_callbacks
        self.callbacks = list(check_callbacks(given))
        return self

    def with_name(self, name: str | None) -> Pipeline:
        """Set this pipeline's name (shown in errors, pictures and callbacks, and used when nested).

        Returns:
            This pipeline (changed in place), for chaining.

        Raises:
            NodeDefinitionError: ``name`` is not a string.
        """
        _check_name(name, "with_name()")
        self.name = name  # a new options record: its input checks' messages name the pipeline
        return self

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Pipeline{label}: {len(self.nodes)} nodes, inputs {list(self.inputs)} -> outputs {list(self.outputs)}>"

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Shut down the pipeline's own engine (``backend=``), if it has one.

        The shared default engine is left alone, and so is every executor the user
        passed to the engine (engines never shut those down).
        """
        if self.engine is not None:
            self.engine.shutdown()

    # -- public calls -----------------------------------------------------------

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        """``pipeline(x=1)`` is ``pipeline.run(inputs={"x": 1})``."""
        return self.run(inputs)

    def run(
        self, inputs: Mapping[str, Any] | None = None, output_name: str | Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Run the pipeline once.

        Args:
            inputs: name -> value for the pipeline's inputs (defaults fill the rest).
            output_name: a name or list of names to compute and return; None: all.
                Only the nodes these need are run.

        Returns:
            ``{output name: value}`` for the requested outputs (never the inputs).

        Raises:
            MissingInputError, UnknownOutputError, InputError, ArgumentTypeError:
                before any node runs.
            Whatever a node raises, with a note naming the node.
        """
        engine = self.engine
        if engine is None:  # effective_backend, without the property call: a hot path
            engine = default_engine() if self._parent is None else self.effective_backend
        return engine.run(self, inputs, output_name)

    def map(
        self,
        inputs: Mapping[str, Any] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        output_name: str | Sequence[str] | None = None,
        on_error: str | None = None,
    ) -> MapResult:
        """Run the pipeline once per item.

        Args:
            inputs: name -> value; each ``map_over`` name maps to a column of items
                (a list, tuple, range, numpy array, pandas Series/Index, Arrow array;
                see the README's "Columns and frames"), every other input is shared
                by all items whatever its type.
            map_over: the input name(s) whose columns are mapped over.
            map_mode: "zip" (item i takes element i of each list; equal lengths)
                or "product" (every combination, the last list varying fastest).
            output_name: as for :meth:`run`.
            on_error: "raise" stops at the first failing item and raises its
                exception; "continue" runs every item: a failed item's outputs that
                depended on the failure hold a :class:`~hypernodes.Failure` (the
                others are computed), and the result lists the failures. None: the
                pipeline's ``on_error``.

        Returns:
            A :class:`~hypernodes.MapResult`: the dict ``{output name: [value per item]}``,
            in item order (``[]`` for no items), with ``.failures``, ``.raise_if_failed()``,
            ``.good()`` (with "continue") and ``.to_pandas()``, ``.to_arrow()``, ``.to_numpy()``.

        Raises:
            MapSpecError, ArgumentTypeError (also for a one-shot iterator as a
                shared input), and the errors of :meth:`run`: before any node runs. Whatever a node raises, with a
                note naming the node and the item index.
        """
        engine = self.engine
        if engine is None:  # effective_backend, without the property call: a hot path
            engine = default_engine() if self._parent is None else self.effective_backend
        result: Mapping[str, list[Any]]
        if on_error is None or (on_error == "raise" and self.options.on_error == "raise"):
            # the pipeline's own on_error: the engine reads it (and one that predates on_error works)
            result = engine.map(self, inputs, map_over, map_mode, output_name)
        else:
            result = engine.map(self, inputs, map_over, map_mode, output_name, on_error=on_error)
        # An engine of another kind may return a plain dict of lists: still a MapResult to the user.
        return result if type(result) is MapResult else MapResult(result)

    async def arun(
        self, inputs: Mapping[str, Any] | None = None, output_name: str | Sequence[str] | None = None
    ) -> dict[str, Any]:
        """:meth:`run`, awaitable from a coroutine: ``await pipeline.arun(inputs)``.

        Same arguments, results and errors as :meth:`run` (``engine.arun``); the caller's event
        loop keeps serving its other tasks while the call runs on a thread (in a copy of the
        caller's context). Cancelling the awaiting task raises ``CancelledError`` at once; the
        call already running finishes on its thread and its result is dropped.
        """
        return await self.effective_backend.arun(self, inputs, output_name)

    async def amap(
        self,
        inputs: Mapping[str, Any] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        output_name: str | Sequence[str] | None = None,
        on_error: str | None = None,
    ) -> MapResult:
        """:meth:`map`, awaitable from a coroutine, as :meth:`arun` is :meth:`run` (``engine.amap``)."""
        engine = self.effective_backend
        result: Mapping[str, list[Any]]
        if on_error is None or (on_error == "raise" and self.options.on_error == "raise"):
            result = await engine.amap(self, inputs, map_over, map_mode, output_name)
        else:
            result = await engine.amap(self, inputs, map_over, map_mode, output_name, on_error=on_error)
        return result if type(result) is MapResult else MapResult(result)

    def as_node(
        self,
        input_mapping: Mapping[str, str] | None = None,
        output_mapping: Mapping[str, str] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        name: str | None = None,
    ) -> PipelineNode:
        """Use this pipeline as one node of another.

        Args:
            input_mapping: ``{outer name: inner input name}`` renames inputs.
            output_mapping: ``{inner output name: outer name}``; when given, only
                these outputs are exposed (and only they are computed).
            map_over: outer input name(s); the node then takes lists for them and
                returns, per output, the list of per-item results.
            map_mode: "zip" or "product", as for :meth:`map`.
            name: the node's name; defaults to the pipeline's name.

        Raises:
            NodeDefinitionError: a mapping or ``map_over`` names something the
                pipeline does not have.
        """
        return PipelineNode(self, input_mapping, output_mapping, map_over, map_mode, name)

    def visualize(
        self,
        filename: Any = None,
        orient: str = "TB",
        depth: int | None = 1,
        show_types: bool = False,
        style: Any = "default",
        *,
        flatten: bool = False,
        show_legend: bool = False,
        min_arg_group_size: int | None = None,
        return_type: str = "auto",
    ) -> Any:
        """Draw this pipeline; see :func:`hypernodes.viz.visualize` for what the picture shows.

        Args:
            filename: also write the picture there (.svg, .png, .pdf, or .dot).
            orient: "TB", "LR", "BT" or "RL".
            depth: 1 draws nested pipelines as one box; higher expands that many levels; None all.
            show_types: also show parameter and return annotations.
            style: a name in ``hypernodes.DESIGN_STYLES`` or a ``GraphvizStyle``.
            flatten: draw expanded nested pipelines without their frames.
            show_legend: also draw a legend of the kinds of box shown.
            min_arg_group_size: notebook-era; ignored with a warning (inputs are never grouped).
            return_type: "auto" (a Diagram), "graphviz" (a ``graphviz.Source``) or "html".

        Returns:
            A ``hypernodes.viz.Diagram``: ``.source`` is the DOT text; it shows as SVG in
            Jupyter (or what ``return_type`` asks for). (``filename``, ``style`` and the result
            are typed loosely here so this module need not import viz;
            :func:`hypernodes.viz.visualize` has the exact types.)

        Raises:
            ArgumentTypeError, VizSpecError: a bad argument. GraphvizNotFoundError:
                rendering is needed and ``graphviz`` or ``dot`` is missing.
        """
        from .viz import visualize  # lazy: pictures are optional, and graphviz must not load with hypernodes

        return visualize(
            self,
            filename,
            orient=orient,
            depth=depth,
            show_types=show_types,
            style=style,
            flatten=flatten,
            show_legend=show_legend,
            min_arg_group_size=min_arg_group_size,
            return_type=return_type,
        )
