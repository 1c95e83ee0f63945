"""Map level: the one place that chooses how a map's items run.

=================================================  ==========================================
the map backend, from the calling thread            strategy
=================================================  ==========================================
no items                                            ``[]`` per output
inline (sequential, or a task of that very pool)    :func:`run_items` here: the cores' batch
                                                    loop, or item by item on the node runner
out of process (loky, processes, Dask, ...)         :func:`~hypernodes._run.remote.map_remote`:
                                                    few large slices, pickled once (with a
                                                    cache: only the items it does not hold
                                                    whole, :mod:`.hits`)
an ``AsyncExecutor``, async nodes, nodes inline     one coroutine per slice on its loop
                                                    (:func:`run_slice_async`)
threads (any other in-process executor)             :func:`run_items` per slice in the pool,
                                                    in chunks that check a stop flag
=================================================  ==========================================

Every strategy hands the loops the call record itself, or a slice of it
(``MapCall.on``/``slice``; a worker process receives its remote form). With
``on_error="continue"`` (``call.keep_going``) every strategy runs the same
slices through the loops that keep going (``core.run_batch_continue``, or the node
runner's and the async slice's own), so no slice raises for an item's failure.

Slices come from ``Items.split`` (``core.plan_batches``): every worker gets work,
the backend's ``tasks_per_worker`` slices each (one item per slice when there are
no more items than that: blocking I/O wants it). Results come back as one list
per output, concatenated in input order.
"""

from __future__ import annotations

import threading
from contextvars import copy_context
from typing import Any

from .._call import MapCall
from .._resources import MADE, has_resources
from ..executors._async import AsyncExecutor
from ..executors._guard import as_task_in
from .gather import concat, gather
from .hits import cached_first
from .items import run_items, run_slice_async
from .nodes import node_runner
from .remote import map_remote
from .runtime import Runtime

__all__ = ["run_map"]


def run_map(runtime: Runtime, call: MapCall) -> list[list[Any]]:
    """The items of ``call``; one list per requested output, in item order."""
    plan, items, observer, lookup = call.plan, call.items, call.observer, call.lookup
    if not len(items):
        return [[] for _ in plan.result_names]
    if MADE[0] and call.keep_going and has_resources(call.values):
        call.relabel = True  # a resource whose factory raised is a Failure in a shared slot: each item's own
    executor = runtime.items.here()
    if executor is not None and not runtime.items.in_process:
        hits = None if lookup is None else cached_first(runtime.core, call)
        if hits is not None and not hits.runs:
            return hits.results  # the cache held every item: no task, no worker started
        return map_remote(runtime, call, executor, hits)  # each worker runs the nodes of its items itself
    runner = node_runner(runtime.nodes, call, runtime.funcs(plan, observer), runtime.core)
    if executor is None:
        columns = run_items(runtime, runner, call)
        assert columns is not None  # only a stopped slice returns None
        return columns
    if isinstance(executor, AsyncExecutor) and plan.has_async and runner is None:
        slices = items.split(executor.max_workers)
        return concat(gather(executor, run_slice_async, [(call.on(s), executor._offload) for s in slices]))
    stop = threading.Event()
    slices = items.split(runtime.items.workers(executor), runtime.items.tasks_per_worker)
    # One copy of the caller's context per slice (not per item): its context variables hold in every node.
    tasks = [(copy_context(), executor, run_items, runtime, runner, call.on(s), stop) for s in slices]
    return concat(gather(executor, as_task_in, tasks, stop=stop))
