"""Items on one thread: a map slice through the whole pipeline, blocking or as a coroutine.

:func:`run_items` is what a thread task (or the caller, or a worker process)
runs: the cores' batch loop when the nodes run sequentially, else one item after
another through a :class:`~hypernodes._run.nodes.NodeRunner`. With a stop flag it
runs in chunks and gives up between them once the call has failed.
:func:`run_slice_async` is the same slice as one coroutine on an
``AsyncExecutor``'s loop, for pipelines with ``async def`` nodes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

from .._call import Items, MapCall
from .._events import Lookup
from .._policy import STOP, bind
from .._resources import MADE, resolved
from ..failures import Failure
from .gather import concat
from .nodes import NodeRunner, acall_node, marker_in, outputs_of, store, store_marker
from .runtime import Runtime

__all__ = ["CHUNK_S", "MAX_CHUNK", "run_items", "run_slice_async"]

CHUNK_S = 0.02
"""A thread slice runs in chunks of about this long and checks between chunks whether the
call has failed or was interrupted; a slice that is no longer wanted stops there."""

MAX_CHUNK = 4096
"""The most items in one chunk: tiny items reach it (a check per 4,096 costs nothing), and
items that turn slow after fast ones delay a stop by at most that many."""


def run_items(
    runtime: Runtime, runner: NodeRunner | None, call: MapCall, stop: threading.Event | None = None
) -> list[list[Any]] | None:
    """The items of ``call`` (a map, or a slice of one) on this thread; one list per output.

    A call that keeps going (``on_error="continue"``): a failing item leaves error markers
    in its outputs instead of raising (``core.run_batch_continue``, ``NodeRunner.run``).

    With ``stop``, the items run in chunks of about :data:`CHUNK_S` each, and the
    slice returns None (its result unwanted) once ``stop`` is set. So they do with
    an observer, which hears ``items_done`` after each chunk (progress moves during
    a long slice at the cost of one call per chunk, not per item), and with a
    lookup (one ``prefetch`` query per chunk of at most :data:`MAX_CHUNK`).

    A :class:`~hypernodes.Resource` in the call's slot template becomes its instance here,
    once for the slice (unless the nodes run in other processes: each resolves it there).
    """
    template: Sequence[Any] = call.values
    if MADE[0] and (runner is None or runner.payload is None):
        template = resolved(template, call.keep_going)
    if stop is None:
        return _run_items(runtime, runner, call, template, stop)
    token = STOP.set(stop)  # a retrying node's backoff wakes when the call stops
    try:
        return _run_items(runtime, runner, call, template, stop)
    finally:
        STOP.reset(token)


def _run_items(
    runtime: Runtime,
    runner: NodeRunner | None,
    call: MapCall,
    template: Sequence[Any],
    stop: threading.Event | None,
) -> list[list[Any]] | None:
    plan, items, observer, lookup = call.plan, call.items, call.observer, call.lookup
    if runner is None:
        funcs = runtime.funcs(plan, observer)
        core = runtime.core
        run_batch: Callable[..., list[list[Any]]] = core.run_batch_continue if call.keep_going else core.run_batch

        def run(part: Items) -> list[list[Any]]:
            if prefetch is not None:
                prefetch(template, part)
            return run_batch(plan, funcs, list(template), part, observer, lookup)

        prefetch = None if lookup is None else lookup.prefetch  # a cache: one query per chunk, a chunk of state
        if stop is None and observer is None and lookup is None:
            return run(items)
        if lookup is None:  # progress alone needs no quick stop: chunks may grow past MAX_CHUNK, to CHUNK_S
            return _run_chunked(run, items, stop, MAX_CHUNK if stop is not None else len(items))
        return _with_lookup(lookup, _run_chunked, run, items, stop, MAX_CHUNK)
    if lookup is not None:
        return _with_lookup(lookup, _run_items_one_by_one, runner, call, template, stop)
    return _run_items_one_by_one(runner, call, template, stop)


def _with_lookup(lookup: Lookup, run: Callable[..., list[list[Any]] | None], *args: Any) -> list[list[Any]] | None:
    # The lookup's slice hooks: `inherit` wraps the slice so that nested pipelines see the
    # call's cache on this thread or process; `flush` writes what it buffered, also after a failure.
    try:
        result: list[list[Any]] | None = lookup.inherit(run)(*args)
        return result
    finally:
        lookup.flush()


def _run_items_one_by_one(
    runner: NodeRunner, call: MapCall, template: Sequence[Any], stop: threading.Event | None
) -> list[list[Any]] | None:
    items, observer, lookup = call.items, call.observer, call.lookup
    result_slots = runner.steps.result_slots
    lo, base = items.lo, items.base
    results: list[list[Any]] = [[None] * len(items) for _ in result_slots]
    prefetch = None if lookup is None else lookup.prefetch
    for i in range(lo, items.hi):
        if stop is not None and stop.is_set():
            return None
        if prefetch is not None and (i - lo) % MAX_CHUNK == 0:
            prefetch(template, items.between(i, min(items.hi, i + MAX_CHUNK)))
        values = list(template)
        items.fill(values, i)
        if observer is not None and observer.item_events:
            observer.item_start(base + i)
            started = perf_counter()
        failed = runner.run(values, base + i)
        if observer is not None:
            if failed is not None:
                observer.item_failed(base + i, failed)
            elif observer.item_events:
                observer.item_end(base + i, perf_counter() - started)
            observer.items_done(1)
        for out, slot in zip(results, result_slots):
            out[i - lo] = values[slot]
    return results


def _run_chunked(
    run: Callable[[Items], list[list[Any]]], items: Items, stop: threading.Event | None, max_chunk: int = MAX_CHUNK
) -> list[list[Any]] | None:
    # The first chunk is one item; each next one is sized from the last one's pace to take
    # about CHUNK_S, growing at most 16x a step and to MAX_CHUNK items (an unusually fast
    # first item must not commit a slow slice to one long chunk). Slow items are then
    # checked between every item, tiny ones every MAX_CHUNK items after a few steps (the
    # check and the extra batch calls cost well under 1% of the work).
    parts: list[list[list[Any]]] = []
    size = 1
    i, hi = items.lo, items.hi
    while i < hi:
        if stop is not None and stop.is_set():
            return None
        j = min(hi, i + size)
        started = time.perf_counter()
        parts.append(run(items.between(i, j)))
        elapsed = time.perf_counter() - started
        size = max(1, min(16 * size, max_chunk, int(size * CHUNK_S / elapsed) if elapsed > 0 else max_chunk))
        i = j
    return concat(parts) if parts else run(items)


async def run_slice_async(call: MapCall, offload: Callable[..., Awaitable[Any]]) -> list[list[Any]]:
    """The items of ``call`` (a slice of a map) as one coroutine: async nodes awaited, sync nodes offloaded.

    Used by an :class:`AsyncExecutor` map of a pipeline with ``async def`` nodes:
    thousands of awaiting items then cost no thread each. ``offload(f, *args)``
    runs a sync node in the executor's thread pool, so a blocking one does not
    stall the loop. A call that keeps going: as for :func:`run_items`.
    """
    lookup = call.lookup
    if lookup is None:
        return await _slice_async(call, offload)
    inherit = lookup.inherit
    try:  # as _with_lookup, for a coroutine: the cache inherited for the slice, its writes flushed after

        def inheriting_offload(f: Callable[..., Any], *args: Any) -> Awaitable[Any]:  # sync nodes run in threads
            return offload(inherit(f), *args)

        result: list[list[Any]] = await inherit(_slice_async)(call, inheriting_offload)
        return result
    finally:
        lookup.flush()


async def _slice_async(call: MapCall, offload: Callable[..., Awaitable[Any]]) -> list[list[Any]]:
    plan, template, items, observer, lookup, keep_going = (
        call.plan,
        call.values,
        call.items,
        call.observer,
        call.lookup,
        call.keep_going,
    )
    steps, funcs = plan.wiring, bind(plan.funcs, observer)
    values = list(resolved(template, keep_going) if MADE[0] else template)  # a Resource: its instance, once
    lo, base = items.lo, items.base
    results: list[list[Any]] = [[None] * len(items) for _ in steps.result_slots]
    prefetch = None if lookup is None else lookup.prefetch
    for i in range(lo, items.hi):
        if prefetch is not None and (i - lo) % MAX_CHUNK == 0:
            prefetch(template, items.between(i, min(items.hi, i + MAX_CHUNK)))
        items.fill(values, i)
        if observer is not None and observer.item_events:
            observer.item_start(base + i)
            started = perf_counter()
        failed: Failure | None = None
        for k in range(plan.n_nodes):
            if keep_going:
                marker = marker_in(values, steps.args[k])
                if marker is not None:
                    failed = failed or marker
                    store_marker(steps, k, marker, values)
                    continue
            if lookup is not None:
                args = tuple(values[s] for s in steps.args[k])
                hit = lookup.get(k, base + i, args)
                if hit is not None:
                    store(steps, k, hit[0], values)
                    if observer is not None and observer.node_events:
                        observer.node_cached(k, base + i, hit[0])
                    continue
            marker = await acall_node(steps, funcs, values, k, base + i, observer, offload, keep_going)
            if marker is not None:
                failed = failed or marker
                continue
            if lookup is not None:
                lookup.put(k, base + i, args, outputs_of(steps, k, values))
        if observer is not None:
            if failed is not None:
                observer.item_failed(base + i, failed)
            elif observer.item_events:
                observer.item_end(base + i, perf_counter() - started)
            observer.items_done(1)
        for out, slot in zip(results, steps.result_slots):
            out[i - lo] = values[slot]
    return results
