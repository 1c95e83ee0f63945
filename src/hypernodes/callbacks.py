"""Callbacks: hooks that see a run or map as it happens, under every executor.

``Pipeline(..., callbacks=[...])`` takes :class:`PipelineCallback` subclasses; each
overrides the hooks it wants (all are no-ops by default; the names are the
notebook-era API's). One call of a pipeline with callbacks gets one
:class:`CallbackContext`; the hooks fire in this order::

    run():  on_pipeline_start
              on_node_start / on_node_end  (or on_node_cached, or on_error)   per node
            on_pipeline_end                (on_pipeline_error instead when the call fails)

    map():  on_pipeline_start, on_map_start(total)
              on_map_item_start
                on_node_start / on_node_end ...                               per node
              on_map_item_end                (on_map_item_failed, on_error="continue")
              on_map_items_done(count)                                        after each batch
            on_map_end, on_pipeline_end

Items may interleave with one another under a concurrent executor, but an item's
node events come between its own start and end. A nested pipeline's events come
between its node's ``on_node_start`` and ``on_node_end``, bracketed by
``on_nested_pipeline_start`` / ``on_nested_pipeline_end``; it inherits its parent's
callbacks. Ids are paths: the root pipeline's :attr:`~hypernodes.Pipeline.id`, and
for a nested one ``<parent id>/<node name>``; a node's id is its name, prefixed by
the nested nodes it runs inside (``inner/embed``).

Only what some callback overrides is reported: a map whose callbacks want neither
node nor item hooks runs the plain batch loop, in chunks, and hears only
``on_map_items_done``. Hooks are never called from two threads at once (one lock per
call), and always in the calling process: worker processes record hook calls and
send them back with each slice's results. (The machinery is the private
``_observe`` module; this one is the API.)

A node with ``retries=`` reports each retried attempt to ``on_node_retry`` (with the
exception and the delay before the next call) before ``on_error`` for a final
failure. Under ``map(..., on_error="continue")`` a failed item gets
``on_map_item_failed`` (always reported, like ``on_error``) instead of
``on_map_item_end``; ``on_map_items_done`` counts it among the finished items.

A hook that raises fails the call with its own exception, noted with the hook and
the node or item; the call stops as it does for a failing node (nothing is left
running) and ``on_error`` is not called for the callback's own exception.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from ._errors import check_bool

__all__ = ["CallbackContext", "PipelineCallback"]


class CallbackContext:
    """State shared by the callbacks of one call (and of the nested pipelines it runs).

    ``set``/``get`` pass values between callbacks; the hierarchy properties say
    where the current event comes from. Two calls, even of one pipeline from two
    threads, get two contexts.
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self._stack: list[str] = []
        self._items: tuple[int, ...] = ()  # per pipeline of _stack: its map item, -1 for none
        self._origin: tuple[int, int, int] | None = None  # see event_time_ns; None: here, now

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for other callbacks to read."""
        self.data[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        return self.data.get(key, default)

    def push_pipeline(self, pipeline_id: str) -> None:
        """Enter a pipeline (kept for the notebook-era API; hypernodes sets the place of each event itself)."""
        self._stack.append(pipeline_id)

    def pop_pipeline(self) -> str:
        """Leave the current pipeline; returns its id (see :meth:`push_pipeline`)."""
        return self._stack.pop()

    @property
    def current_pipeline_id(self) -> str | None:
        """The id of the pipeline the current event belongs to (None outside a call)."""
        return self._stack[-1] if self._stack else None

    @property
    def parent_pipeline_id(self) -> str | None:
        """The id of the pipeline that runs the current one (None at the root)."""
        return self._stack[-2] if len(self._stack) >= 2 else None

    @property
    def depth(self) -> int:
        """0 in the root pipeline, 1 in a pipeline nested in it, and so on."""
        return max(len(self._stack) - 1, 0)

    @property
    def hierarchy_path(self) -> list[str]:
        """The pipeline ids from the root to the current one."""
        return list(self._stack)

    @property
    def item_index(self) -> int | None:
        """The map item the current event belongs to: the item of the innermost map on
        :attr:`hierarchy_path` that is inside one (a node of a pipeline nested in item 3's
        node: 3), or None (``run()``, and a map's own start and end)."""
        for item in reversed(self._items):
            if item >= 0:
                return item
        return None

    @property
    def item_indices(self) -> tuple[int | None, ...]:
        """The map item of each pipeline on :attr:`hierarchy_path` the current event is
        inside (None for a run, or outside any item): tells apart the calls of one nested
        pipeline made by concurrent items."""
        items = self._items + (-1,) * (len(self._stack) - len(self._items))
        return tuple(None if i < 0 else i for i in items)

    @property
    def event_time_ns(self) -> int:
        """When the current event happened (``time.time_ns()``, where it happened): the
        hook's own time, except for events a worker process recorded and sent back."""
        return self._origin[0] if self._origin is not None else time.time_ns()

    @property
    def event_worker(self) -> tuple[int, int]:
        """Where the current event happened: (process id, thread id, as
        ``threading.get_ident()``); a worker process's for the events it recorded."""
        if self._origin is not None:
            return self._origin[1], self._origin[2]
        return _pid(), threading.get_ident()

    def get_pipeline_metadata(self, pipeline_id: str) -> dict[str, Any]:
        """What is known of a pipeline of this call: ``name``, ``kind`` ("run" or "map"),
        ``total_nodes``, ``node_ids`` and, for a map, ``total_items``."""
        return dict(self.data.get(f"_pipeline_metadata:{pipeline_id}", {}))

    def set_pipeline_metadata(self, pipeline_id: str, metadata: Mapping[str, Any]) -> None:
        """Record a pipeline's metadata (done by hypernodes when the pipeline starts)."""
        self.data[f"_pipeline_metadata:{pipeline_id}"] = dict(metadata)


_PID = [os.getpid()]


def _pid() -> int:
    """This process's id: a system call saved per event (refreshed in a forked child)."""
    return _PID[0]


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class PipelineCallback:
    """Base class of callbacks: override any hook; the others cost nothing.

    Two class attributes say what a callback needs, so that nothing else is paid for:

    Attributes:
        node_values: whether ``on_node_start``/``on_node_end`` need the values in
            their ``inputs``/``outputs`` dicts. Under a process map the workers then
            send every node's inputs and outputs back; with False (and no other
            callback wanting them) the dicts there map each name to None. None (the
            default): True exactly when one of those hooks, as overridden, reads that
            argument (a hook that reads only names or durations costs no values).
        node_events_in_maps: whether the node hooks fire for every item of a map
            (False: only in ``run()``; a map then costs one call per batch).
    """

    node_values: ClassVar[bool | None] = None
    node_events_in_maps: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the subclass's hooks when it is defined: a misspelt one would never be called.

        Raises:
            TypeError: a public ``on_*`` method that is no hook (naming the closest hook), a
                hook that cannot take the hook's arguments, or a flag that is not a bool.
        """
        super().__init_subclass__(**kwargs)
        _check_hooks(cls)

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
        """A run or map of ``pipeline_id`` starts with ``inputs``."""

    def on_pipeline_end(self, pipeline_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        """It returned ``outputs`` after ``duration`` seconds."""

    def on_pipeline_error(self, pipeline_id: str, error: BaseException, duration: float, ctx: CallbackContext) -> None:
        """It failed (with ``error``, also Ctrl-C) instead; no ``on_pipeline_end`` follows."""

    def on_node_start(self, node_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
        """Node ``node_id`` is called with ``inputs`` (parameter name -> value)."""

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        """It returned ``outputs`` (output name -> value) after ``duration`` seconds."""

    def on_node_cached(self, node_id: str, signature: str, ctx: CallbackContext) -> None:
        """Its outputs came from the cache (``signature`` names the entry) instead of a call."""

    def on_error(self, node_id: str, error: BaseException, ctx: CallbackContext) -> None:
        """Node ``node_id`` raised ``error``, which then fails the call."""

    def on_nested_pipeline_start(self, parent_id: str, child_pipeline_id: str, ctx: CallbackContext) -> None:
        """A nested pipeline starts inside ``parent_id``."""

    def on_nested_pipeline_end(
        self, parent_id: str, child_pipeline_id: str, duration: float, ctx: CallbackContext
    ) -> None:
        """The nested pipeline finished after ``duration`` seconds."""

    def on_map_start(self, total_items: int, ctx: CallbackContext) -> None:
        """A map of ``total_items`` items starts."""

    def on_map_item_start(self, item_index: int, ctx: CallbackContext) -> None:
        """Item ``item_index`` starts."""

    def on_map_item_end(self, item_index: int, duration: float, ctx: CallbackContext) -> None:
        """Item ``item_index`` finished after ``duration`` seconds."""

    def on_map_item_cached(self, item_index: int, signature: str, ctx: CallbackContext) -> None:
        """Item ``item_index`` came whole from the cache."""

    def on_map_item_failed(self, item_index: int, failure: Any, ctx: CallbackContext) -> None:
        """Item ``item_index`` failed under ``on_error="continue"``; ``failure`` is its
        :class:`~hypernodes.Failure` (the node, the exception). No ``on_map_item_end`` follows."""

    def on_node_retry(
        self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: CallbackContext
    ) -> None:
        """Call ``attempt`` (1 is the first) of node ``node_id`` raised ``error``, which its
        ``retry_on`` lists: it is called again after ``delay`` seconds."""

    def on_map_items_done(self, count: int, ctx: CallbackContext) -> None:
        """``count`` more items finished (once per batch: progress at next to no cost)."""

    def on_map_end(self, total_duration: float, ctx: CallbackContext) -> None:
        """The map finished after ``total_duration`` seconds."""


def _check_hooks(cls: type) -> None:
    import difflib
    import inspect

    hooks = {name for name in vars(PipelineCallback) if name.startswith("on_")}
    for name, value in vars(cls).items():
        if not name.startswith("on_") or not callable(value):
            continue
        if name not in hooks:
            close = difflib.get_close_matches(name, sorted(hooks), n=1, cutoff=0.5)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise TypeError(
                f"{cls.__qualname__}.{name} is not a callback hook, so it would never be called.{hint} "
                f"Hooks: {', '.join(sorted(hooks))}. (A helper method of your own must not start with `on_`.)"
            )
        base = inspect.signature(getattr(PipelineCallback, name))
        n_args = len(base.parameters)  # self and the hook's positional arguments
        if isinstance(value, staticmethod):
            value, n_args = value.__func__, n_args - 1
        elif isinstance(value, classmethod):
            value = value.__func__
        try:
            own = inspect.signature(value)
        except (TypeError, ValueError):  # no signature to read (a builtin): called as it is
            continue
        args = [None] * n_args
        try:
            own.bind(*args)
        except TypeError:
            wanted = ", ".join(base.parameters)
            raise TypeError(
                f"{cls.__qualname__}.{name}{own} cannot take the hook's arguments: it is called as "
                f"{name}({wanted}) (positionally)."
            ) from None
    for flag in ("node_values", "node_events_in_maps"):
        if flag in vars(cls) and not (flag == "node_values" and vars(cls)[flag] is None):
            check_bool(vars(cls)[flag], flag, cls.__qualname__)
