"""HypernodesEngine: drives the compiled core with executors.

Data flow of one call::

    Pipeline.run(inputs)  -- pipeline.py: validate the call, fetch the cached Plan
        |                    for this call shape, fill a values list (one slot per value)
        v
    engine.run            -- node_executor "sequential": core.run_one(plan, funcs, values),
                             the whole node loop in C. Otherwise a NodeRunner
                             (executors/_drive.py) submits each node as soon as the
                             core's ReadyQueue releases it.

    Pipeline.map(inputs)  -- pipeline.py: validate map_over/map_mode, snapshot the
        |                    mapped lists as columns, fill the broadcast inputs once
        v
    engine.map            -- map_executor "sequential": core.run_batch(..., 0, n_items)
                             on this thread. Otherwise core.plan_batches cuts the items
                             into slices and each executor task runs a slice through the
                             whole pipeline (executors/_drive.py); results land in
                             per-output lists in input order.

``funcs`` is the plan's callables, except that ``async def`` nodes are wrapped so
their coroutine is awaited on the engine's own loop thread (so async nodes work
under any engine, also from inside a running event loop).

The drivers (and asyncio, cloudpickle, loky) are imported on the first call that
needs an executor: a sequential engine costs none of them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _core
from .errors import ExecutorSpecError
from .executors import _loky, check_max_workers, resolve_spec
from .executors._guard import is_task_of
from .executors._loop import AwaitOn, LoopThread

if TYPE_CHECKING:
    from ._graph import Plan
    from .executors._drive import NodeRunner
    from .pipeline import Pipeline

__all__ = ["HypernodesEngine"]


class _Owned:
    """What an engine started: an executor per role, its loop thread, its use of the loky pool.

    Kept apart from the engine so that the engine's finalizer can release it all
    without keeping the engine alive.
    """

    def __init__(self, max_workers: int | None) -> None:
        self.max_workers = max_workers
        self.lock = threading.Lock()
        self.loop = LoopThread("hypernodes-engine-loop")
        self.executors: dict[str, Executor] = {}
        self.uses_loky = False

    def executor(self, role: str, name: str) -> Executor:
        """The executor the engine made for ``role`` from the spec ``name`` (made on first use)."""
        if name == "parallel":
            with self.lock:
                pool = _loky.acquire(self.max_workers, first=not self.uses_loky)
                self.uses_loky = True
                return pool
        with self.lock:
            executor = self.executors.get(role)
            if executor is None:
                if name == "threaded":
                    prefix = f"hypernodes-{role.partition('_')[0]}"
                    executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix=prefix)
                else:
                    from .executors._async import AsyncExecutor

                    executor = AsyncExecutor(self.max_workers or AsyncExecutor.DEFAULT_MAX_WORKERS)
                self.executors[role] = executor
            return executor

    def close(self, wait: bool = True) -> None:
        """Shut everything down; ``wait`` for running thread tasks (never from one of those threads)."""
        with self.lock:
            executors = list(self.executors.values())
            self.executors.clear()
            uses_loky, self.uses_loky = self.uses_loky, False
        try:
            for executor in executors:
                executor.shutdown(wait=wait and not is_task_of(executor), cancel_futures=True)
        finally:
            try:
                if uses_loky:
                    _loky.release(self.max_workers, wait=wait)
            finally:
                self.loop.close()


def _is_remote(spec: Any) -> bool:
    """Whether a (valid) spec runs tasks outside this process."""
    if isinstance(spec, str):
        return spec == "parallel"
    from .executors._drive import in_process

    return not in_process(spec)


def _check_combination(node_executor: Any, map_executor: Any) -> None:
    if not isinstance(map_executor, str) and map_executor is node_executor:
        raise ExecutorSpecError(
            "map_executor and node_executor are the same executor object: map tasks would wait for node tasks "
            "queued behind them on the same workers (a deadlock). Pass two executors, or a name for one of them."
        )
    if _is_remote(map_executor) and (node_executor == "parallel" or not isinstance(node_executor, str)):
        shown = repr(node_executor) if isinstance(node_executor, str) else f"a {type(node_executor).__name__}"
        raise ExecutorSpecError(
            f"node_executor={shown} cannot run inside the worker processes of map_executor="
            f"{map_executor if isinstance(map_executor, str) else type(map_executor).__name__!r}: executor objects "
            "do not travel to other processes, and processes do not start processes. "
            "Use node_executor='threaded' or 'async' (made in each worker), or 'sequential'."
        )


class HypernodesEngine:
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
    ) -> None:
        """Args:
            node_executor: runs independent nodes of one item concurrently:
                "sequential", "threaded", "async", "parallel", or any object with
                the ``concurrent.futures.Executor`` interface.
            map_executor: runs the items of a map; same choices.
            max_workers: size of the executors the engine makes from names
                (None: a ``ThreadPoolExecutor``'s default for "threaded", 100
                for "async", one process per CPU for "parallel").

        Raises:
            ExecutorSpecError: an unknown executor name, an object without
                ``submit``, ``max_workers`` that is not a positive int, one
                executor object for both levels, or a node executor that cannot
                run inside the map executor's worker processes.
        """
        self.node_executor = resolve_spec(node_executor, "node_executor")
        self.map_executor = resolve_spec(map_executor, "map_executor")
        check_max_workers(max_workers, "max_workers", allow_none=True)
        _check_combination(self.node_executor, self.map_executor)
        self.max_workers = max_workers
        self._owned = _Owned(max_workers)
        self._async_funcs: weakref.WeakKeyDictionary[Plan, tuple[Callable[..., Any], ...]] = weakref.WeakKeyDictionary()
        # Releases what the engine started when it is collected or at interpreter exit;
        # without waiting: the last reference may go away on one of the engine's own threads.
        self._finalizer = weakref.finalize(self, self._owned.close, False)

    def __repr__(self) -> str:
        def show(spec: Any) -> str:
            return repr(spec) if isinstance(spec, str) else type(spec).__name__

        return (
            f"HypernodesEngine(node_executor={show(self.node_executor)}, "
            f"map_executor={show(self.map_executor)}, max_workers={self.max_workers!r})"
        )

    # -- lifetime ---------------------------------------------------------------

    def shutdown(self) -> None:
        """Shut down what the engine started: its executors, workers and loop thread. Idempotent.

        Waits for tasks running on its threads and processes, except that worker
        processes still running work a failed or interrupted call abandoned (a
        hung item) are terminated once no other call uses them; coroutines still
        awaiting on its "async" executor's loop are cancelled. The engine stays
        usable: a later call starts what it needs again. Executors passed in by
        the user are left alone.
        """
        self._owned.close()

    def __enter__(self) -> HypernodesEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- executors ----------------------------------------------------------------

    def _executor(self, role: str) -> Executor | None:
        """The executor for ``role``; None to run that level on the calling thread."""
        spec = getattr(self, role)
        if spec == "sequential":
            return None
        executor: Executor = self._owned.executor(role, spec) if isinstance(spec, str) else spec
        from .executors._drive import runs_on_current_thread

        # A task of this very executor (a nested pipeline sharing it) must not wait on it.
        return None if runs_on_current_thread(executor) else executor

    def _node_runner(self, plan: Plan, core: ModuleType | None = None) -> NodeRunner | None:
        """How to run one item's nodes: None for the compiled sequential loop.

        ``core``: the scheduling core the runner uses (a worker process uses its caller's).
        """
        if self.node_executor == "sequential":
            return None
        executor = self._executor("node_executor")
        if executor is None:
            return None
        from .executors._drive import NodeRunner, in_process

        if plan.n_nodes < 2 and in_process(executor):
            return None  # nothing to overlap, and this thread is as good as a pool's
        return NodeRunner(self, plan, executor, core)

    def _funcs(self, plan: Plan) -> Sequence[Callable[..., Any]]:
        if not plan.has_async:
            return plan.funcs
        funcs = self._async_funcs.get(plan)
        if funcs is None:
            loop = self._owned.loop
            funcs = tuple(AwaitOn(f, loop) if is_async else f for f, is_async in zip(plan.funcs, plan.is_async))
            self._async_funcs[plan] = funcs
        return funcs

    def _interrupted(self) -> None:
        # Ctrl-C: tasks already running in worker processes would run on; stop them.
        if "parallel" in (self.node_executor, self.map_executor) and self._owned.uses_loky:
            _loky.kill(self.max_workers)

    # -- calls ------------------------------------------------------------------

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
            The errors of :meth:`Pipeline.run`, before any node runs; then the
            first exception a node raises (noted with the node's name).
        """
        plan, values = pipeline._prepare_run(inputs, output_name)
        try:
            runner = self._node_runner(plan)
            if runner is None:
                _core.run_one(plan, self._funcs(plan), values)
            else:
                runner.run(values)
        except KeyboardInterrupt:
            self._interrupted()
            raise
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
            The errors of :meth:`Pipeline.map`, before any node runs; then the
            first exception an item raises (noted with the node and item index).
        """
        call = pipeline._prepare_map(inputs, map_over, map_mode, output_name)
        plan = call.plan
        if call.n_items == 0:
            return {name: [] for name in plan.result_names}
        try:
            executor = self._executor("map_executor")
            if executor is None and self.node_executor == "sequential":
                columns = _core.run_batch(
                    plan, self._funcs(plan), call.values, call.map_slots, call.columns, 0, call.n_items, call.product
                )
            else:
                from .executors._drive import run_map

                columns = run_map(self, call, executor)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        return dict(zip(plan.result_names, columns))


_default: HypernodesEngine | None = None


def default_engine() -> HypernodesEngine:
    """The sequential engine used by pipelines constructed without one."""
    global _default
    if _default is None:
        _default = HypernodesEngine()
    return _default
