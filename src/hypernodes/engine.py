"""HypernodesEngine: drives the compiled core with executors.

Data flow of one call::

    Pipeline.run(inputs)  -- pipeline.py: validate the call, fetch the cached Plan
        |                    for this call shape, fill a values list (one slot per value)
        v
    engine.run            -- sequential: core.run_one(plan, funcs, values), the whole
                             node loop in C; outputs are read back from their slots

    Pipeline.map(inputs)  -- pipeline.py: validate map_over/map_mode, snapshot the
        |                    mapped lists as columns, fill the broadcast inputs once
        v
    engine.map            -- sequential: core.run_batch(..., 0, n_items): items are
                             filled from the columns (zip or product index arithmetic
                             in C), run through every node, results land in
                             pre-sized per-output lists in input order

``funcs`` is the plan's callables, except that ``async def`` nodes are wrapped so
their coroutine is awaited on the engine's own loop thread (so async nodes work
under the sequential engine too, also from inside a running event loop).

The threaded/async/parallel executors hand ``core.plan_batches`` slices of items
(map level) or ``core.ReadyQueue`` nodes (node level) to an executor; they arrive
with the executors issue, and until then such a spec raises NotImplementedError
before any node runs rather than pretending to be parallel.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _core
from .executors import check_max_workers, resolve_spec
from .executors._loop import LoopThread

if TYPE_CHECKING:
    from ._graph import Plan
    from .pipeline import Pipeline

__all__ = ["HypernodesEngine"]


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _AwaitOnLoop:
    """Calls an async node and blocks until what it returns is awaited on the loop thread.

    A result that is not awaitable (a sync wrapper of an ``async def`` that already
    resolves it) is returned as it is.
    """

    __slots__ = ("func", "loop")

    def __init__(self, func: Callable[..., Any], loop: LoopThread) -> None:
        self.func = func
        self.loop = loop

    def __call__(self, *args: Any) -> Any:
        result = self.func(*args)
        if inspect.iscoroutine(result):
            return self.loop.run(result)
        if inspect.isawaitable(result):
            return self.loop.run(_await(result))
        return result


class HypernodesEngine:
    """Runs pipelines: which executor handles items (map level) and nodes (node level).

    An engine holds no per-call state: one engine may serve many pipelines and
    many threads at once.
    """

    def __init__(
        self,
        node_executor: Any = "sequential",
        map_executor: Any = "sequential",
        max_workers: int | None = None,
    ) -> None:
        """Args:
            node_executor: runs independent nodes of one item: "sequential",
                "threaded", "async", "parallel", or a ``concurrent.futures.Executor``.
            map_executor: runs the items of a map; same choices.
            max_workers: worker count for executors the engine creates itself
                (None: the executor's default).

        Raises:
            ExecutorSpecError: an unknown executor name, an object without
                ``submit``, or ``max_workers`` that is not a positive int.
        """
        self.node_executor = resolve_spec(node_executor, "node_executor")
        self.map_executor = resolve_spec(map_executor, "map_executor")
        check_max_workers(max_workers, "max_workers", allow_none=True)
        self.max_workers = max_workers
        self._loop = LoopThread("hypernodes-engine-loop")
        self._async_funcs: weakref.WeakKeyDictionary[Plan, tuple[Callable[..., Any], ...]] = weakref.WeakKeyDictionary()
        # Stops the loop thread when the engine is collected or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._loop.close)

    def __repr__(self) -> str:
        def show(spec: Any) -> str:
            return repr(spec) if isinstance(spec, str) else type(spec).__name__

        return (
            f"HypernodesEngine(node_executor={show(self.node_executor)}, "
            f"map_executor={show(self.map_executor)}, max_workers={self.max_workers!r})"
        )

    # -- lifetime ---------------------------------------------------------------

    def shutdown(self) -> None:
        """Release what the engine started (its event-loop thread). Idempotent.

        The engine stays usable: a later call starts what it needs again.
        Executors passed in by the user are never shut down here.
        """
        self._loop.close()

    def __enter__(self) -> HypernodesEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- calls ------------------------------------------------------------------

    def _require_sequential(self, *roles: str) -> None:
        for role in roles:
            spec = getattr(self, role)
            if spec != "sequential":
                shown = repr(spec) if isinstance(spec, str) else f"an executor object ({type(spec).__name__})"
                raise NotImplementedError(
                    f"{role}={shown} is not available in this version of hypernodes: only 'sequential' runs "
                    "today (threaded, async, parallel and executor objects arrive with the executors release). "
                    "Nothing was run."
                )

    def _check_runnable(self, plan: Plan, *roles: str) -> None:
        self._require_sequential(*roles)
        # Nested pipelines run on their own engine (the shared sequential one if they
        # have none): check those too, so nothing fails half-way through a call.
        for inner in plan.nested:
            inner._engine()._require_sequential("node_executor", "map_executor")

    def _funcs(self, plan: Plan) -> Sequence[Callable[..., Any]]:
        if not plan.has_async:
            return plan.funcs
        funcs = self._async_funcs.get(plan)
        if funcs is None:
            funcs = tuple(
                _AwaitOnLoop(f, self._loop) if is_async else f for f, is_async in zip(plan.funcs, plan.is_async)
            )
            self._async_funcs[plan] = funcs
        return funcs

    def run(
        self, pipeline: Pipeline, inputs: Mapping[str, Any] | None = None, output_name: Any = None
    ) -> dict[str, Any]:
        """Run ``pipeline`` once.

        Args:
            pipeline: the pipeline to run.
            inputs, output_name: as for :meth:`Pipeline.run`.

        Returns:
            ``{output name: value}`` for the requested outputs.

        Raises:
            NotImplementedError: an executor of this engine (or of a nested
                pipeline's engine) is not available yet; before any node runs.
            The errors of :meth:`Pipeline.run`.
        """
        plan, values = pipeline._prepare_run(inputs, output_name)
        self._check_runnable(plan, "node_executor")
        _core.run_one(plan, self._funcs(plan), values)
        return {name: values[slot] for name, slot in plan.result_pairs}

    def map(
        self,
        pipeline: Pipeline,
        inputs: Mapping[str, Any] | None = None,
        map_over: str | Sequence[str] | None = None,
        map_mode: str = "zip",
        output_name: Any = None,
    ) -> dict[str, list[Any]]:
        """Run ``pipeline`` once per item.

        Args:
            pipeline: the pipeline to map.
            inputs, map_over, map_mode, output_name: as for :meth:`Pipeline.map`.

        Returns:
            ``{output name: [value per item]}`` in item order.

        Raises:
            NotImplementedError: as for :meth:`run`.
            The errors of :meth:`Pipeline.map`.
        """
        call = pipeline._prepare_map(inputs, map_over, map_mode, output_name)
        plan = call.plan
        self._check_runnable(plan, "map_executor", "node_executor")
        if call.n_items == 0:
            return {name: [] for name in plan.result_names}
        columns = _core.run_batch(
            plan, self._funcs(plan), call.values, call.map_slots, call.columns, 0, call.n_items, call.product
        )
        return dict(zip(plan.result_names, columns))


_default: HypernodesEngine | None = None


def default_engine() -> HypernodesEngine:
    """The sequential engine used by pipelines constructed without one."""
    global _default
    if _default is None:
        _default = HypernodesEngine()
    return _default
