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

How it runs: the call's opening (``_open``, below the engine) fires the call-level
hooks through :class:`CallHooks`; a :class:`CallObserver` turns the cores' integer events (the
``_events`` seam) into node and item hooks. Only what some callback overrides is
reported: a map whose callbacks want neither node nor item hooks runs the plain
batch loop, in chunks, and hears only ``items_done``. Hooks are never called from
two threads at once (one lock per call), and always in the calling process: worker
processes record hook calls (:meth:`CallObserver.remote`) and send them back with
each slice's results.

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

import contextlib
import contextvars
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import FROM_CALLBACK, add_note, check_bool
from ._graph import Plan
from .failures import release_frames

if TYPE_CHECKING:
    from ._call import MapCall, RunCall

__all__ = ["CallHooks", "CallObserver", "CallbackContext", "PipelineCallback"]


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


# The argument of each node hook that carries values (and its position, self excluded).
_VALUE_ARGS = {"on_node_start": 1, "on_node_end": 1}


def _needs_values(callback: PipelineCallback) -> bool:
    """Whether ``callback``'s node hooks read the values: its ``node_values``, or when None, whether
    an overridden ``on_node_start``/``on_node_end`` reads its ``inputs``/``outputs`` argument.

    Read from the hook's bytecode: the argument loaded anywhere (or captured by an inner
    function) counts as read; a hook that is no plain function, or that reads its frame
    (``locals()``, ``vars()``, ``*args``), is assumed to read it.
    """
    flag = type(callback).node_values
    if flag is not None:
        return flag
    return any(_reads_arg(type(callback), hook, at) for hook, at in _VALUE_ARGS.items() if _overrides(callback, hook))


def _reads_arg(cls: type, hook: str, at: int) -> bool:
    import dis
    import types

    func = getattr(cls, hook, None)
    code = getattr(func, "__code__", None)
    if not isinstance(func, types.FunctionType) or not isinstance(code, types.CodeType):
        return True
    flags = code.co_flags
    if flags & (0x04 | 0x08):  # CO_VARARGS, CO_VARKEYWORDS: the value may be read through them
        return True
    if code.co_argcount <= at + 1:
        return True
    name = code.co_varnames[at + 1]
    if name in code.co_cellvars or {"locals", "vars", "eval", "exec"} & set(code.co_names):
        return True
    for instruction in dis.get_instructions(code):
        value = instruction.argval  # a tuple of names for the paired loads of 3.13 (LOAD_FAST_LOAD_FAST)
        if "LOAD" in instruction.opname and (value == name or (isinstance(value, tuple) and name in value)):
            return True
    return False


_NODE_HOOKS = ("on_node_start", "on_node_end", "on_node_cached")
_ITEM_HOOKS = ("on_map_item_start", "on_map_item_end", "on_map_item_cached")


def _overrides(callback: PipelineCallback, hook: str) -> bool:
    return getattr(type(callback), hook, None) is not getattr(PipelineCallback, hook)


def check_callbacks(callbacks: Any) -> tuple[PipelineCallback, ...]:
    """``callbacks`` as a tuple, each a :class:`PipelineCallback` instance.

    Raises:
        TypeError: not a list of callbacks (a class instead of an instance, say).
    """
    if callbacks is None:
        return ()
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks= takes a list of PipelineCallback instances, got {type(callbacks).__name__}.")
    for cb in callbacks:
        if isinstance(cb, type):
            raise TypeError(f"callbacks= got the class {cb.__name__}; pass an instance: {cb.__name__}().")
        if not isinstance(cb, PipelineCallback):
            raise TypeError(f"callbacks= takes PipelineCallback instances, got {type(cb).__name__} {cb!r:.60}.")
    return tuple(callbacks)


class _Session:
    """The callbacks and context of one top-level call, shared with its nested calls."""

    def __init__(self, callbacks: Sequence[PipelineCallback]) -> None:
        self.callbacks = tuple(callbacks)
        self.ctx = CallbackContext()
        self.lock = threading.RLock()  # hooks are never called from two threads at once
        self._hooks: dict[str, tuple[tuple[PipelineCallback, Callable[..., Any]], ...]] = {}

    def including(self, more: Iterable[PipelineCallback]) -> _Session:
        """This session, with a nested pipeline's own callbacks added (once each)."""
        extra = [cb for cb in more if all(cb is not c for c in self.callbacks)]
        if extra:
            with self.lock:
                self.callbacks = (*self.callbacks, *extra)
                self._hooks = {}
        return self

    def _overriding(self, hook: str) -> tuple[tuple[PipelineCallback, Callable[..., Any]], ...]:
        """The callbacks that override ``hook``, with the bound hook: found once per call and
        hook (an event of a map's items happens thousands of times)."""
        found = self._hooks.get(hook)
        if found is None:
            found = self._hooks[hook] = tuple((cb, getattr(cb, hook)) for cb in self.callbacks if _overrides(cb, hook))
        return found

    def emit(
        self,
        hook: str,
        *args: Any,
        path: tuple[str, ...],
        where: _Where = "",
        items: tuple[int, ...] = (),
        origin: tuple[int, int, int] | None = None,
    ) -> None:
        with self.lock:
            self.ctx._stack = list(path)  # under the lock: each hook sees its own event's place
            self.ctx._items = items
            self.ctx._origin = origin
            for cb, method in self._overriding(hook):
                try:
                    method(*args, self.ctx)
                except Exception as exc:
                    add_note(exc, f"hypernodes: raised by callback {type(cb).__name__}.{hook}{_where_text(where)}")
                    with contextlib.suppress(Exception):
                        setattr(exc, _FROM_CALLBACK, True)
                    raise

    def wants(self, hooks: Sequence[str], in_map: bool) -> bool:
        return any(
            _overrides(cb, h) and (not in_map or cb.node_events_in_maps or h not in _NODE_HOOKS)
            for cb in self.callbacks
            for h in hooks
        )

    def wants_values(self, in_map: bool) -> bool:
        return any(
            _needs_values(cb) and (not in_map or cb.node_events_in_maps) and any(_overrides(cb, h) for h in _NODE_HOOKS)
            for cb in self.callbacks
        )


_Where = str | tuple[str | None, int]
"""Where an event happened, for a raising hook's note: text, or (node id or None, map item)."""


def _where_text(where: _Where) -> str:
    """Where a hook's event happened, for the note on its exception: events carry the node
    and item, and the text is made only when a hook raises (events are many, raises rare)."""
    if isinstance(where, str):
        return where
    node_id, item = where
    if node_id is None:
        return f" (map item {item})"
    return f" (node `{node_id}`" + (f", map item {item})" if item >= 0 else ")")


# Marks an exception a hook raised: the loops report it as the node's error, but
# on_error is for a node's own exceptions, and on_error="continue" never keeps it as a failure.
_FROM_CALLBACK = FROM_CALLBACK


class _Scope:
    """Where a nested pipeline call happens: the session, the pipeline ids from the root
    to the nested one, the prefix of its nodes' ids, and the map items (-1: none) of the
    pipelines above it."""

    __slots__ = ("items", "node_prefix", "path", "session")

    def __init__(self, session: Any, path: tuple[str, ...], node_prefix: str, items: tuple[int, ...] = ()) -> None:
        self.session = session
        self.path = path
        self.node_prefix = node_prefix
        self.items = items


SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("hypernodes_callback_scope", default=None)
"""Set while a nested pipeline's node runs inside an observed call: its own call then observes too."""


def pipeline_id(name: str | None, node_names: Sequence[str]) -> str:
    """A pipeline's id: its name, or one derived from its nodes' names (stable across runs)."""
    if name:
        return name
    digest = hashlib.sha1("\0".join(node_names).encode()).hexdigest()[:8]
    return f"pipeline-{digest}"


class CallObserver:
    """The cores' integer events of one pipeline call, as callback hooks (an ``_events.Observer``)."""

    def __init__(
        self,
        session: Any,
        path: tuple[str, ...],
        node_prefix: str,
        plan: Plan,
        in_map: bool,
        nested: frozenset[int] = frozenset(),
        lookup: Any = None,
        items: tuple[int, ...] = (),
    ) -> None:
        self.session = session
        self.path = path  # pipeline ids, root first; the last is this call's
        self.items = items  # the map items (-1: none) of the pipelines above this call's
        self.node_prefix = node_prefix
        self.in_map = in_map
        self.names = plan.node_names
        self.node_ids = tuple(node_prefix + n for n in plan.node_names)
        self.params = tuple(n.parameters for n in plan.nodes)
        self.outputs = tuple(n.outputs for n in plan.nodes)
        self.unpack = plan.wiring.unpack
        self.nested = nested  # plan indices of nested-pipeline nodes: they open a scope
        self.node_events = bool(nested) or session.wants(_NODE_HOOKS, in_map)
        self.item_events = in_map and session.wants(_ITEM_HOOKS, in_map)
        self.values = session.wants_values(in_map)
        self._tokens: dict[tuple[int, int, int], contextvars.Token[_Scope | None]] = {}
        # The call's cache lookup (``cache.CacheLookup``): the signatures of hits, and
        # whether an item will come whole from the cache (then it is reported as cached,
        # not started and ended).
        self.lookup = lookup
        self._whole: dict[int, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokens"] = {}
        state["_whole"] = {}
        return state

    # -- the _events.Observer interface -------------------------------------------

    def item_start(self, item: int) -> None:
        signature = None if self.lookup is None else self.lookup.whole(item)
        if signature is not None:
            self._whole[item] = signature
            return
        self.session.emit("on_map_item_start", item, path=self.path, where=(None, item), items=(*self.items, item))

    def item_end(self, item: int, seconds: float) -> None:
        signature = self._whole.pop(item, None) if self._whole else None
        if signature is not None:
            self.session.emit(
                "on_map_item_cached",
                item,
                signature,
                path=self.path,
                where=(None, item),
                items=(*self.items, item),
            )
            return
        self.session.emit(
            "on_map_item_end", item, seconds, path=self.path, where=(None, item), items=(*self.items, item)
        )

    def items_done(self, count: int) -> None:
        if self.in_map:
            self.session.emit("on_map_items_done", count, path=self.path, items=(*self.items, -1))

    def node_start(self, node: int, item: int, args: tuple[Any, ...]) -> None:
        if node in self.nested:  # the nested pipeline's call, made inside this node, observes too
            child = _Scope(
                self.session,
                (*self.path, f"{self.path[-1]}/{self.names[node]}"),
                self.node_ids[node] + "/",
                (*self.items, item),
            )
            self._tokens[(node, item, threading.get_ident())] = SCOPE.set(child)
        inputs = dict(zip(self.params[node], args if self.values else (None,) * len(args)))
        self.session.emit(
            "on_node_start",
            self.node_ids[node],
            inputs,
            path=self.path,
            where=self._where(node, item),
            items=(*self.items, item),
        )

    def node_end(self, node: int, item: int, seconds: float, result: Any) -> None:
        self._close_scope(node, item)
        names = self.outputs[node]
        if not self.values:
            outputs: dict[str, Any] = dict.fromkeys(names)
        elif self.unpack[node]:
            outputs = dict(zip(names, result))
        else:
            outputs = {names[0]: result}
        self.session.emit(
            "on_node_end",
            self.node_ids[node],
            outputs,
            seconds,
            path=self.path,
            where=self._where(node, item),
            items=(*self.items, item),
        )

    def node_cached(self, node: int, item: int, result: Any) -> None:
        signature = "" if self.lookup is None else self.lookup.last_signature()
        self.session.emit(
            "on_node_cached",
            self.node_ids[node],
            signature,
            path=self.path,
            where=self._where(node, item),
            items=(*self.items, item),
        )

    def item_failed(self, item: int, failure: Any) -> None:
        if self._whole:
            self._whole.pop(item, None)
        self.session.emit(
            "on_map_item_failed", item, failure, path=self.path, where=(None, item), items=(*self.items, item)
        )

    def node_retry(self, node: int, item: int, exc: BaseException, attempt: int, delay: float) -> None:
        self.session.emit(
            "on_node_retry",
            self.node_ids[node],
            exc,
            attempt,
            delay,
            path=self.path,
            where=self._where(node, item),
            items=(*self.items, item),
        )
        if type(self.session) is _Session:
            # A retried attempt's exception is over once reported: a callback that keeps it
            # (a log of retries) must not keep the attempt's frames and locals alive too.
            release_frames(exc)

    def node_error(self, node: int, item: int, exc: BaseException) -> None:
        self._close_scope(node, item)
        if getattr(exc, _FROM_CALLBACK, False):
            return
        self.session.emit(
            "on_error",
            self.node_ids[node],
            exc,
            path=self.path,
            where=self._where(node, item),
            items=(*self.items, item),
        )

    def remote(self) -> CallObserver:
        """A twin that records hook calls in a worker process, to :meth:`replay` here."""
        twin = CallObserver.__new__(CallObserver)
        twin.__dict__.update(self.__getstate__())
        twin.session = _Recording(self.session)
        return twin

    def drain(self) -> list[_Recorded]:
        """The hook calls a :meth:`remote` twin recorded since the last drain."""
        recording: _Recording = self.session
        events, recording.events = recording.events, []
        return events

    def replay(self, events: list[_Recorded]) -> None:
        """Deliver hook calls recorded in a worker process, in their order (with the
        worker's time, process and thread of each: ``CallbackContext.event_time_ns``)."""
        for hook, args, path, where, items, origin in events:
            self.session.emit(hook, *args, path=path, where=where, items=items, origin=origin)

    # -- helpers ------------------------------------------------------------------

    def _where(self, node: int, item: int) -> tuple[str, int]:
        return self.node_ids[node], item

    def _close_scope(self, node: int, item: int) -> None:
        if node in self.nested:
            token = self._tokens.pop((node, item, threading.get_ident()), None)
            if token is not None:
                SCOPE.reset(token)


_Recorded = tuple[str, tuple[Any, ...], tuple[str, ...], "_Where", tuple[int, ...], tuple[int, int, int]]
"""A hook call recorded in a worker: hook, arguments, path, where, items, (time_ns, pid, thread id)."""


class _Recording:
    """A session stand-in in a worker process: records hook calls instead of making them."""

    def __init__(self, session: Any) -> None:
        self.events: list[_Recorded] = []
        # what the caller's callbacks want, as the nested calls in this worker ask for it
        self.map_nodes: bool = session.wants(_NODE_HOOKS, True)
        self.map_items: bool = session.wants(_ITEM_HOOKS, True)
        self.map_values: bool = session.wants_values(True)
        self.run_nodes: bool = session.wants(_NODE_HOOKS, False)
        self.run_values: bool = session.wants_values(False)
        self.ctx = None  # hooks are called in the caller's process, with its context

    def emit(
        self,
        hook: str,
        *args: Any,
        path: tuple[str, ...],
        where: _Where = "",
        items: tuple[int, ...] = (),
        origin: tuple[int, int, int] | None = None,
    ) -> None:
        if hook == "on_node_retry":
            # The attempt succeeded or failed again: either way its exception travels back with
            # the slice's results, so one pickle cannot rebuild there (an SDK error) goes as its
            # stand-in, or it would lose the whole slice (formatted now, while it has its frames).
            from ._run.payload import portable

            exc = args[1]
            args = (args[0], portable(exc) or exc, *args[2:])
        # when and where it happened travel along: the parent replays it later, elsewhere
        when = origin if origin is not None else (time.time_ns(), _pid(), threading.get_ident())
        self.events.append((hook, args, path, where, items, when))

    def including(self, more: Iterable[PipelineCallback]) -> _Recording:
        return self  # a nested pipeline's own callbacks stay in the parent process

    def wants(self, hooks: Sequence[str], in_map: bool) -> bool:
        if hooks == _ITEM_HOOKS:
            return self.map_items
        return self.map_nodes if in_map else self.run_nodes

    def wants_values(self, in_map: bool) -> bool:
        return self.map_values if in_map else self.run_values


def _start(
    options: Any, kind: str, plan: Plan, inputs: Mapping[str, Any] | None
) -> tuple[Any, tuple[str, ...], str, tuple[int, ...]]:
    """Open a call: its session, its pipeline path, its nodes' id prefix and the map items of
    the pipelines above it; fires the start hooks. ``options``: the pipeline's ``CallOptions``."""
    scope = SCOPE.get()
    path: tuple[str, ...]
    above: tuple[int, ...]
    if scope is None:
        session: Any = _Session(options.callbacks)
        path, prefix, above = (options.id,), "", ()
    else:
        session = scope.session.including(options.callbacks)
        path, prefix, above = scope.path, scope.node_prefix, scope.items
    if session.ctx is not None:
        metadata = {
            "name": options.name or path[-1],
            "kind": kind,
            "total_nodes": plan.n_nodes,
            "node_ids": [prefix + n for n in plan.node_names],
        }
        with session.lock:
            session.ctx.set_pipeline_metadata(path[-1], metadata)
    items = (*above, -1)
    if len(path) > 1:
        session.emit("on_nested_pipeline_start", path[-2], path[-1], path=path, items=items)
    session.emit("on_pipeline_start", path[-1], dict(inputs or {}), path=path, items=items)
    return session, path, prefix, above


def _nested_nodes(plan: Plan) -> frozenset[int]:
    return frozenset(k for k, n in enumerate(plan.nodes) if n.nested)


class CallHooks:
    """The call-level hooks of one observed call; the call's opening (``_open``) fires them.

    Made when the call opens: fires ``on_pipeline_start`` (and, nested,
    ``on_nested_pipeline_start``) and gives the call its :class:`CallObserver`, which
    turns the cores' events into node and item hooks. Then :meth:`begin` (a map's
    ``on_map_start``) before its work, and :meth:`ended` or :meth:`failed` after it.
    """

    __slots__ = ("above", "in_map", "path", "session", "started", "total")

    def __init__(self, options: Any, kind: str, call: RunCall | MapCall, inputs: Any) -> None:
        """Args:
        options: the pipeline's ``CallOptions`` (its callbacks, id and name).
        kind: "run" or "map".
        call: the prepared call; its ``observer`` is set here (with its ``lookup``).
        inputs: the call's inputs, as ``on_pipeline_start`` shows them.
        """
        session, path, prefix, above = _start(options, kind, call.plan, inputs)
        self.session, self.path, self.above = session, path, above
        self.in_map = kind == "map"
        self.total = total = len(call.items) if self.in_map else 0  # type: ignore[union-attr]
        if self.in_map and session.ctx is not None:
            with session.lock:
                metadata = session.ctx.get_pipeline_metadata(path[-1])
                session.ctx.set_pipeline_metadata(path[-1], {**metadata, "total_items": total})
        call.observer = CallObserver(
            session, path, prefix, call.plan, self.in_map, _nested_nodes(call.plan), call.lookup, above
        )
        self.started = time.perf_counter()

    def begin(self) -> None:
        """Before the call's work: ``on_map_start`` for a map."""
        if self.in_map:
            self.session.emit("on_map_start", self.total, path=self.path, items=(*self.above, -1))

    def ended(self, result: Any) -> None:
        """The call returned ``result``: ``on_map_end`` for a map, then ``on_pipeline_end`` (and
        ``on_nested_pipeline_end``). A hook that raises ends the call as failed with it."""
        if self.in_map:
            try:
                self.session.emit(
                    "on_map_end", time.perf_counter() - self.started, path=self.path, items=(*self.above, -1)
                )
            except BaseException as exc:
                self.failed(exc)
                raise
        _finish(self.session, self.path, self.above, self.started, None, result)

    def failed(self, error: BaseException) -> None:
        """The call failed with ``error`` (Ctrl-C included): ``on_pipeline_error``."""
        _finish(self.session, self.path, self.above, self.started, error, None)


def _finish(
    session: Any,
    path: tuple[str, ...],
    above: tuple[int, ...],
    started: float,
    error: BaseException | None,
    outputs: Any,
) -> None:
    duration = time.perf_counter() - started
    items = (*above, -1)
    if error is not None:
        session.emit("on_pipeline_error", path[-1], error, duration, path=path, items=items)
        return
    session.emit("on_pipeline_end", path[-1], outputs, duration, path=path, items=items)
    if len(path) > 1:
        session.emit("on_nested_pipeline_end", path[-2], path[-1], duration, path=path, items=items)
