"""Engine, the abstract engine; HypernodesEngine: owns the backends of two levels, dispatches calls to the drivers.

The layers, each importing only those below it (``tests/test_layers.py`` checks it)::

    telemetry/      ProgressCallback, TimingCallback, TelemetryCallback + waterfall (callbacks users add)
    pipeline.py     Pipeline, as_node: wiring, its call options; run()/map() hand the call to the engine
    viz.py          pictures
    engines/        the engines' public home; engines/dask.py: DaskEngine and its backend
    engine.py       Engine; HypernodesEngine: its backends' lifetime; the fast paths
    _open.py        opens every other call: input checks, cache lookup, callback hooks, flush
    callbacks.py    PipelineCallback, CallbackContext;  _observe.py: their hooks from the event seam
    _run/           the drivers: node runner, map strategies, process workers
    executors/      backends (one per executor kind), AsyncExecutor, loky's shared pool
    _call.py        the validated call record: plan, values, item layout; CallOptions
    _nested.py      PipelineNode: a pipeline as one node of another
    _graph.py       wiring checks; a call shape compiled into an integer Plan
    _core.py        the one switch between the two cores
    _sched / _sched_py   the compiled core and its pure-Python twin
    _events.py  node.py  _policy.py  failures.py  errors.py  _errors.py

One door: ``pipeline.run(...)`` is ``engine.run(pipeline, ...)`` and ``pipeline.map(...)``
is ``engine.map(pipeline, ...)``. The engine reads the pipeline's ``plans`` (compiled
plans per call shape) and ``options`` (``_call.CallOptions``: callbacks, cache,
on_error, input checks, ids), nothing else.

Data flow of one call::

    engine.run(pipeline, inputs)
        |  fast path: nothing but the nodes asked for (no callbacks, cache or checks, no
        |  enclosing call observing or passing a cache down), a shape seen before, nodes
        |  inline: core.run_dict, the whole call in C
        v
    _open.open_run        -> checks the inputs, _call.prepare_run builds the RunCall from the
        |                    cached Plan, opens it (cache lookup, start hooks), then
        v
    run_call -> _run.run_one -> sequential nodes: core.run_one(plan, funcs, values), the whole
                             node loop in C. Otherwise a NodeRunner submits each node to the
                             node backend as soon as the core's ReadyQueue releases it.
                             Then _open closes the call (end hooks, lookup flushed).

    engine.map(pipeline, inputs, ...)
        |  fast path: as for run, a zip map on a sequential engine: core.map_zip
        v
    _open.open_map        -> _call.prepare_map checks map_over/map_mode, snapshots the mapped
        |                    lists into Items, fills the broadcast inputs once (a MapCall), opens it
        v
    map_call -> _run.run_map -> the one place choosing the strategy: core.run_batch on this
                             thread, slices on threads or an event loop, or slices pickled
                             once for worker processes; results in input order.

``funcs`` is the plan's callables, except that ``async def`` nodes are wrapped so
their coroutine is awaited on the engine's own loop thread (``_run.FuncTable``), so
async nodes work under any engine, also from inside a running event loop.

Backends start nothing until a call needs them, and asyncio, cloudpickle and loky
are imported on first use: a sequential engine costs none of them.
"""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from ._call import HasPlans, MapCall, RunCall
from ._item_maps import is_item_list, map_items
from ._observe import SCOPE
from ._open import open_map, open_run
from ._resources import MADE as _resources_made
from ._run import FuncTable, Runtime, run_map, run_one
from .cache.lookup import INHERITED
from .errors import ExecutorSpecError
from .executors._loop import LoopThread
from .executors._sequential import SequentialExecutor
from .executors._spec import check_max_workers
from .executors._worker import check_inner_threads
from .executors.backends import Backend, backend_for
from .failures import LIVE as _live_failures
from .failures import MapResult

__all__ = ["Engine", "HypernodesEngine", "default_engine"]


def _check_combination(nodes: Backend, items: Backend) -> None:
    if not isinstance(items.spec, str) and items.spec is nodes.spec:
        raise ExecutorSpecError(
            "map_executor and node_executor are the same executor object: map tasks would wait for node tasks "
            "queued behind them on the same workers (a deadlock). Pass two executors, or a name for one of them."
        )
    if not items.in_process and not nodes.portable:
        raise ExecutorSpecError(
            f"node_executor={nodes!r} cannot run inside the worker processes of map_executor={items!r}: "
            "executor objects do not travel to other processes, and processes do not start processes. "
            "Use node_executor='threaded' or 'async' (made in each worker), or 'sequential'."
        )


_SEQUENTIAL = SequentialExecutor()  # what "sequential" reads back as: it holds no state


def _resolved(backend: Backend) -> Executor:
    """The executor object ``backend`` runs tasks on (started now if need be)."""
    executor = backend.executor()
    return _SEQUENTIAL if executor is None else executor


def _release(backends: tuple[Backend, ...], loop: LoopThread, wait: bool) -> None:
    """Shut down what an engine started; ``wait`` for running thread tasks."""
    try:
        for backend in backends:
            backend.shutdown(wait)
    finally:
        loop.close()


class Engine(ABC):
    """What runs pipelines: ``run``, ``map`` and ``shutdown`` (also a context manager).

    ``pipeline.run(inputs, output_name)`` is ``engine.run(pipeline, inputs, output_name)``
    and ``pipeline.map(...)`` is ``engine.map(pipeline, inputs, map_over, map_mode,
    output_name)``: the engine reads the pipeline's ``plans`` and ``options``
    (``_call.HasPlans``). :class:`HypernodesEngine` and ``hypernodes.engines.DaskEngine``
    implement it.
    """

    @abstractmethod
    def run(
        self, pipeline: HasPlans, inputs: Mapping[str, Any] | None = None, output_name: Any = None
    ) -> dict[str, Any]:
        """Run ``pipeline`` once; ``{output name: value}`` (see :meth:`Pipeline.run`)."""

    @abstractmethod
    def map(
        self,
        pipeline: HasPlans,
        inputs: Mapping[str, Any] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        output_name: Any = None,
        on_error: str | None = None,
    ) -> dict[str, list[Any]]:
        """Run ``pipeline`` once per item; ``{output name: [value per item]}`` (see :meth:`Pipeline.map`).

        ``on_error`` None means the pipeline's (``pipeline.options.on_error``). ``Pipeline.map``
        passes ``on_error`` only when that would not do, so an engine written before it
        existed keeps working for maps that do not ask for it."""

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Release what the engine started (never what the user passed in); idempotent."""

    async def arun(
        self, pipeline: HasPlans, inputs: Mapping[str, Any] | None = None, output_name: Any = None
    ) -> dict[str, Any]:
        """:meth:`run`, awaitable: the caller's event loop keeps serving its other tasks meanwhile.

        The call runs as :meth:`run` does (same results, errors, callbacks, cache), on a thread of
        the loop's default executor in a copy of the caller's context (``asyncio.to_thread``).
        Cancelling the awaiting task raises ``CancelledError`` there at once, but the call already
        running on its thread runs to its end (its result is dropped; its hooks still fire).
        """
        import asyncio

        return await asyncio.to_thread(self.run, pipeline, inputs, output_name)

    async def amap(
        self,
        pipeline: HasPlans,
        inputs: Mapping[str, Any] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        output_name: Any = None,
        on_error: str | None = None,
    ) -> dict[str, list[Any]]:
        """:meth:`map`, awaitable, as :meth:`arun` is :meth:`run`."""
        import asyncio

        if on_error is None:  # an engine whose map() predates on_error keeps working
            return await asyncio.to_thread(self.map, pipeline, inputs, map_over, map_mode, output_name)
        return await asyncio.to_thread(self.map, pipeline, inputs, map_over, map_mode, output_name, on_error)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


class HypernodesEngine(Engine):
    """Runs pipelines: which executor handles items (map level) and nodes (node level).

    An engine holds no per-call state: one engine may serve many pipelines and
    many threads at once. Executors it makes from names are its own (shut down
    by :meth:`shutdown` or a ``with`` block); executors passed in are the
    caller's and are never shut down here.
    """

    def __init__(
        self,
        node_executor: Any = "sequential",
        map_executor: Any = "sequential",
        max_workers: int | None = None,
        inner_threads: int | str | None = "auto",
    ) -> None:
        """Args:
            node_executor: runs independent nodes of one item concurrently:
                "sequential", "threaded", "async", "parallel", or any object with
                the ``concurrent.futures.Executor`` interface.
            map_executor: runs the items of a map; same choices.
            max_workers: size of the executors the engine makes from names
                (None: a ``ThreadPoolExecutor``'s default for "threaded", 100
                for "async", one process per CPU for "parallel").
            inner_threads: native threads (BLAS, OpenMP, MKL, numexpr) per
                "parallel" worker process: "auto" (``max(1, cpu_count // workers)``,
                as joblib does; a variable such as ``OMP_NUM_THREADS`` set in this
                process's environment is kept), a positive int (overrides the
                environment), or None (the environment is left alone).

        Raises:
            ExecutorSpecError: an unknown executor name, an object without
                ``submit``, ``max_workers`` that is not a positive int,
                ``inner_threads`` that is not "auto", None or a positive int, one
                executor object for both levels, or a node executor that cannot
                run inside the map executor's worker processes.
        """
        check_inner_threads(inner_threads)
        nodes = backend_for(node_executor, "node", max_workers, inner_threads)
        items = backend_for(map_executor, "map", max_workers, inner_threads)
        check_max_workers(max_workers, "max_workers", allow_none=True)
        _check_combination(nodes, items)
        self.max_workers = max_workers
        self.inner_threads = inner_threads
        self._loop = LoopThread("hypernodes-engine-loop")
        self._runtime = Runtime(nodes, items, FuncTable(self._loop), max_workers)
        self._run_runtime = self._runtime  # what run() uses; an engine may run single calls elsewhere (DaskEngine)
        # Releases what the engine started when it is collected or at interpreter exit;
        # without waiting: the last reference may go away on one of the engine's own threads.
        self._finalizer = weakref.finalize(self, _release, (nodes, items), self._loop, False)

    def __repr__(self) -> str:
        runtime = self._runtime
        return (
            f"HypernodesEngine(node_executor={runtime.nodes!r}, "
            f"map_executor={runtime.items!r}, max_workers={self.max_workers!r})"
        )

    @property
    def node_executor(self) -> Executor:
        """The executor running the nodes of one item, as an object (the notebook-era attribute).

        A name resolves to the executor it stands for, started on this first read if no
        call started it yet: "sequential" a :class:`~hypernodes.executors.SequentialExecutor`,
        "threaded" a ``ThreadPoolExecutor``, "async" an ``AsyncExecutor``, "parallel" the
        process pool. It is the engine's: :meth:`shutdown` shuts it down (a later call or
        read starts a new one). An executor you passed is returned as it is.
        """
        return _resolved(self._runtime.nodes)

    @property
    def map_executor(self) -> Executor:
        """The executor running the items of a map, as an object; see :attr:`node_executor`."""
        return _resolved(self._runtime.items)

    # -- lifetime ---------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> None:
        """Shut down what the engine started: its executors, workers and loop thread. Idempotent.

        Waits for tasks running on its threads and processes, except that worker
        processes still running work a failed or interrupted call abandoned (a
        hung item) are terminated once no other call uses them; coroutines still
        awaiting on its "async" executor's loop are cancelled. The engine stays
        usable: a later call starts what it needs again. Executors passed in by
        the user are left alone. ``wait=False`` returns without waiting for
        running thread tasks (they finish in the background).
        """
        runtime = self._runtime
        _release((runtime.nodes, runtime.items), self._loop, wait)

    def __enter__(self) -> HypernodesEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def _interrupted(self) -> None:
        # Ctrl-C: tasks already running in worker processes would run on; stop them.
        self._runtime.nodes.interrupted()
        self._runtime.items.interrupted()

    # -- calls ------------------------------------------------------------------

    def run(
        self, pipeline: HasPlans, inputs: Mapping[str, Any] | None = None, output_name: Any = None
    ) -> dict[str, Any]:
        """Run ``pipeline`` once: ``pipeline.run(inputs, output_name)`` is this call.

        Args:
            pipeline: the pipeline to run (its ``plans`` and ``options`` are read).
            inputs, output_name: as for :meth:`Pipeline.run`.

        Returns:
            ``{output name: value}`` for the requested outputs.

        Raises:
            The errors of :meth:`Pipeline.run`, before any node runs; then the
            first exception a node raises (noted with the node's name).
        """
        runtime = self._run_runtime
        options = pipeline.options
        # The fast path: nothing but the nodes asked for (no callbacks, cache or checks, and
        # no enclosing call observing this one or passing a cache down), the nodes inline.
        if (
            type(inputs) is dict
            and options.plain
            and not options.callbacks
            and runtime.nodes.inline  # the map level plays no part in run()
            and INHERITED.get() is None
            and SCOPE.get() is None
        ):
            try:  # as in map(): a name, None or a tuple keys itself
                plan = pipeline.plans.runs.get((output_name, frozenset(inputs)))
            except TypeError:
                plan = pipeline.plans.find_run(output_name, inputs)
            # a shape checked before: the whole call in the core (a Resource takes the general path)
            if plan is not None and not _live_failures[0] and not _resources_made[0]:
                try:
                    return runtime.core.run_dict(plan, plan.funcs, inputs)  # type: ignore[no-any-return]
                except KeyboardInterrupt:
                    self._interrupted()
                    raise
        return open_run(pipeline.plans, options, inputs, output_name, self.run_call)

    def map(
        self,
        pipeline: HasPlans,
        inputs: Mapping[str, Any] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        output_name: Any = None,
        on_error: str | None = None,
        items: Sequence[Mapping[str, Any]] | None = None,
    ) -> MapResult:
        """Run ``pipeline`` once per item: ``pipeline.map(...)`` is this call.

        The notebook-era form ``map(pipeline, items, inputs, output_name)`` (or
        ``items=[...]`` as a keyword) is taken too: ``items`` is a list of per-item input
        dicts over the shared ``inputs``, and the result is a list of one
        ``{output name: value}`` per item (see ``_item_maps``).

        Args:
            pipeline: the pipeline to map (its ``plans`` and ``options`` are read).
            inputs, map_over, map_mode, output_name: as for :meth:`Pipeline.map`.
            on_error: as for :meth:`Pipeline.map` (None: the pipeline's ``on_error``).
            items: the notebook-era list of per-item input dicts (then ``inputs`` is what they share).

        Returns:
            A ``MapResult``: ``{output name: [value per item]}`` in item order; in the
            notebook-era form, a list of dicts.

        Raises:
            The errors of :meth:`Pipeline.map`, before any node runs; then the
            first exception an item raises (noted with the node and item index).
        """
        runtime = self._runtime
        options = pipeline.options
        if on_error is None:
            on_error = options.on_error
        if (
            type(inputs) is dict
            and options.plain
            and not options.callbacks
            and runtime.plain
            and map_mode == "zip"
            and on_error == "raise"
            and INHERITED.get() is None
            and SCOPE.get() is None
        ):
            try:  # names as given (str, None, a tuple) key themselves; fast_key makes a list a tuple
                shape = pipeline.plans.maps.get((output_name, map_over, frozenset(inputs)))
            except TypeError:
                shape = pipeline.plans.find_map(output_name, map_over, inputs)
            # a shape checked before: the whole map in the core (while a Failure exists, the
            # general path looks for it among the inputs)
            if shape is not None and not _live_failures[0] and not _resources_made[0]:
                plan, mapped_names, map_slots, shared = shape
                try:
                    mapped = runtime.core.map_zip(plan, plan.funcs, inputs, mapped_names, map_slots, shared)
                except KeyboardInterrupt:
                    self._interrupted()
                    raise
                if mapped is not None:  # None: values the general path checks (and names)
                    return mapped  # type: ignore[no-any-return]
        # The notebook-era form, tested off the fast path above (which takes only a dict):
        # positionally its shared inputs (a dict) sit where map_over does.
        if items is not None or (is_item_list(inputs) and isinstance(map_over, Mapping)):
            return self._map_items(pipeline, inputs, map_over, map_mode, output_name, items)
        return open_map(pipeline.plans, options, inputs, map_over, map_mode, output_name, on_error, self.map_call)

    def _map_items(
        self, pipeline: HasPlans, inputs: Any, map_over: Any, map_mode: Any, output_name: Any, items: Any
    ) -> MapResult:
        """The notebook-era ``map(pipeline, items, inputs, output_name[, _ctx])``: one dict per item
        (a list of dicts, not the MapResult ``map`` promises every other caller: hence the ignores)."""
        if items is not None:  # map(pipeline, items=[...], inputs={...}, output_name=...)
            return map_items(self, pipeline, items, inputs, output_name)  # type: ignore[return-value]
        # positionally, (pipeline, items, inputs, output_name, _ctx) fill these slots
        wanted = None if map_mode == "zip" and "zip" not in pipeline.plans.graph.outputs else map_mode
        return map_items(self, pipeline, inputs, map_over, wanted, output_name)  # type: ignore[return-value]

    def run_call(self, call: RunCall) -> dict[str, Any]:
        """Execute a prepared ``run()`` call (``_call.prepare_run``; its opening, ``_open``, may have
        given it an observer and a lookup)."""
        try:
            run_one(self._run_runtime, call)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        return call.results()

    def map_call(self, call: MapCall) -> MapResult:
        """Execute a prepared ``map()`` call (``_call.prepare_map``; as :meth:`run_call`)."""
        try:
            columns = run_map(self._runtime, call)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        return call.results(columns)


_default: HypernodesEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> HypernodesEngine:
    """The sequential engine used by pipelines constructed without one (one per process)."""
    global _default
    engine = _default
    if engine is None:
        # Pipelines first called from several threads at once must share one engine: a
        # second one would be dropped with its loop thread running (and, on a free-threaded
        # build, the threads really do all arrive here together).
        with _default_lock:
            engine = _default
            if engine is None:
                engine = _default = HypernodesEngine()
    return engine
