"""The machinery under ``hypernodes.callbacks``: how a call's events reach the hooks.

The call's opening (``_open``, below the engine) fires the call-level
hooks through :class:`CallHooks`; a :class:`CallObserver` turns the cores' integer events (the
``_events`` seam) into node and item hooks. Only what some callback overrides is
reported: a map whose callbacks want neither node nor item hooks runs the plain
batch loop, in chunks, and hears only ``items_done``. Hooks are never called from
two threads at once (one lock per call), and always in the calling process: worker
processes record hook calls (:meth:`CallObserver.remote`) and send them back with
each slice's results.

Private: ``hypernodes.callbacks`` is the API (``PipelineCallback``, ``CallbackContext``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import FROM_CALLBACK, add_note
from ._graph import Plan
from .callbacks import CallbackContext, PipelineCallback, _pid
from .failures import release_frames

if TYPE_CHECKING:
    from ._call import MapCall, RunCall

__all__ = ["SCOPE", "CallHooks", "CallObserver", "RecordedTask", "check_callbacks", "pipeline_id"]

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
        # The call's cache lookup (``cache.lookup.CacheLookup``): the signatures of hits, and
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

    def nested_task(self, node: int, item: int, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func``, the task of nested-pipeline node ``node`` for another process, wrapped so
        that the nested call there records its hook calls; they come back with the task's
        result (:class:`RecordedTask`), and :meth:`replay` delivers them here."""
        scope = _Scope(
            _Recording(self.session),
            (*self.path, f"{self.path[-1]}/{self.names[node]}"),
            self.node_ids[node] + "/",
            (*self.items, item),
        )
        return RecordedTask(func, scope)

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


class RecordedTask:
    """A nested pipeline node's task run in another process (a ``"parallel"`` node executor,
    Dask's node tasks), made by :meth:`CallObserver.nested_task`: the call's scope is set
    there, with a recording session, so the nested call records its hook calls as a slice
    worker's do. Returns ``(the task's result, the events)``; a failure carries the events
    on its exception (``EVENTS_ATTR``). Events that cannot be pickled come back as None.
    """

    __slots__ = ("func", "scope")

    def __init__(self, func: Callable[..., Any], scope: _Scope) -> None:
        self.func = func
        self.scope = scope

    def __reduce__(self) -> tuple[Any, ...]:
        return (RecordedTask, (self.func, self.scope))

    def __call__(self, *args: Any) -> tuple[Any, list[_Recorded] | None]:
        from ._events import EVENTS_ATTR

        token = SCOPE.set(self.scope)
        try:
            result = self.func(*args)
        except Exception as exc:
            with contextlib.suppress(Exception):  # an exception that takes no attributes loses them
                setattr(exc, EVENTS_ATTR, self._events())
            raise
        finally:
            SCOPE.reset(token)
        return result, self._events()

    def _events(self) -> list[_Recorded] | None:
        """The recorded events, their exceptions made portable, or None if they cannot travel."""
        import pickle

        from ._run.payload import portable

        events = [
            (hook, tuple((portable(a) or a) if isinstance(a, Exception) else a for a in args), *rest)
            for hook, args, *rest in self.scope.session.events
        ]
        try:
            pickle.dumps(events)
        except Exception:
            return None
        return events


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
