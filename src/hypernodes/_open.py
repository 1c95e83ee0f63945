"""Opening a call: where every ``run()`` and ``map()`` that is more than its nodes starts and ends.

``Pipeline.run/map`` call ``engine.run/map(pipeline, ...)``; the engine takes its
fast path when nothing but the nodes is asked for, and otherwise hands the call
here with the pipeline's plans and options (``_call.CallOptions``). So a call
made on the engine directly, ``engine.run(pipeline, ...)``, is the same call as
``pipeline.run(...)``: one door.

Opening a call, in order:

1. its inputs are checked against the annotations (``validate_inputs``), then the
   call is prepared (``_call.prepare_run`` / ``prepare_map``);
2. with a cache (the pipeline's own, else the one an enclosing call passes down),
   the call gets a :class:`~hypernodes.cache.lookup.CacheLookup`, and the cache is passed
   down (``INHERITED``) to the nested pipelines it runs on this thread;
3. with callbacks (the pipeline's, or an enclosing observed call's), the start hooks
   fire and the call gets its observer (``callbacks.CallHooks``);
4. the engine executes the prepared call;
5. the end hooks fire (``on_pipeline_error`` instead when it failed), the cache is no
   longer passed down, and what the lookup buffered is written.

:class:`Opened` is steps 2, 3 and 5 as an object, so that each calling convention
(blocking :func:`open_run` / :func:`open_map`, and later an awaitable or a
streaming one) opens and closes its calls the same way around its own step 4.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from ._call import CallOptions, MapCall, PlanCache, RunCall, prepare_map, prepare_run
from ._observe import SCOPE, CallHooks
from .cache import Cache
from .cache.lookup import INHERITED, CacheLookup
from .failures import check_on_error

__all__ = ["Opened", "open_map", "open_run"]

_Call = TypeVar("_Call", RunCall, MapCall)
_Result = TypeVar("_Result")


class Opened:
    """One call, opened: its cache lookup and the cache passed down, its start hooks fired.

    Made on the thread (and in the context) that will :meth:`close` it. With no
    cache and nothing observing, opening costs two context-variable reads.
    """

    __slots__ = ("hooks", "lookup", "token")

    def __init__(self, options: CallOptions, kind: str, call: RunCall | MapCall, inputs: Any) -> None:
        """Args:
            options: the pipeline's options (its callbacks and cache; its id and name for the hooks).
            kind: "run" or "map".
            call: the prepared call: its ``lookup`` and ``observer`` are set here.
            inputs: the call's inputs (as the start hooks show them).

        Raises:
            What a start hook raises (nothing is left opened then).
        """
        self.hooks: CallHooks | None = None
        self.lookup: CacheLookup | None = None
        self.token: contextvars.Token[Cache | None] | None = None
        cache = options.cache
        if cache is None:
            cache = INHERITED.get()
        observed = bool(options.callbacks) or SCOPE.get() is not None
        if cache is not None:
            map_slots = call.items.map_slots if kind == "map" else None  # type: ignore[union-attr]
            self.lookup = call.lookup = CacheLookup(cache, call.plan, call.values, map_slots, observed)
            # Nested pipelines run on this thread use the cache too; elsewhere (threads, processes)
            # the drivers pass it on through lookup.inherit.
            self.token = INHERITED.set(cache)
        if not observed:
            return
        try:
            self.hooks = hooks = CallHooks(options, kind, call, inputs)
        except BaseException:
            self._release()
            raise
        try:
            hooks.begin()
        except BaseException as exc:
            self.close(exc)
            raise

    def close(self, error: BaseException | None = None, result: Any = None) -> None:
        """End the call: the end hooks (``on_pipeline_error`` when ``error``), the cache no longer
        passed down, the lookup's buffered writes flushed (also when a hook raises)."""
        try:
            hooks = self.hooks
            if hooks is not None:
                if error is None:
                    hooks.ended(result)
                else:
                    hooks.failed(error)
        finally:
            self._release()

    def _release(self) -> None:
        if self.token is not None:
            INHERITED.reset(self.token)
            self.token = None
        if self.lookup is not None:
            self.lookup.flush()  # what this process buffered (workers flush their own after each slice)


def _executed(
    options: CallOptions, kind: str, call: _Call, inputs: Any, execute: Callable[[_Call], _Result]
) -> _Result:
    """``execute(call)``, opened and closed around it (directly when nothing is to open)."""
    if options.cache is None and not options.callbacks and INHERITED.get() is None and SCOPE.get() is None:
        return execute(call)  # only the input checks brought the call here
    opened = Opened(options, kind, call, inputs)
    try:
        result = execute(call)
    except BaseException as exc:
        opened.close(exc)
        raise
    opened.close(None, result)
    return result


def open_run(
    plans: PlanCache,
    options: CallOptions,
    inputs: Any,
    output_name: Any,
    execute: Callable[[RunCall], dict[str, Any]],
) -> dict[str, Any]:
    """One ``run()`` call, opened: checked, prepared, ``execute``-d, closed.

    Args:
        plans, options: the pipeline's.
        inputs, output_name: as for ``Pipeline.run``.
        execute: runs the prepared call on an engine and returns its results (``HypernodesEngine.run_call``).

    Raises:
        The errors of ``Pipeline.run`` before any node runs (and before any hook fires);
        then what ``execute`` or a hook raises.
    """
    if options.validator is not None:
        inputs = options.validator.run_inputs(inputs)
    call = prepare_run(plans, inputs, output_name)
    return _executed(options, "run", call, inputs, execute)


def open_map(
    plans: PlanCache,
    options: CallOptions,
    inputs: Any,
    map_over: Any,
    map_mode: Any,
    output_name: Any,
    on_error: str,
    execute: Callable[[MapCall], _Result],
) -> _Result:
    """One ``map()`` call, opened, as :func:`open_run` (``on_error``: "raise" or "continue", checked here)."""
    if on_error != "raise":
        check_on_error(on_error, "map()")
    if options.validator is not None:
        inputs = options.validator.map_inputs(inputs, map_over)
    call = prepare_map(plans, inputs, map_over, map_mode, output_name, None, None, on_error)
    return _executed(options, "map", call, inputs, execute)
