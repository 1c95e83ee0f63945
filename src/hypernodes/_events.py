"""The event seam: what the loops report to an observer, and what they ask a lookup.

A call may carry an :class:`Observer` (callbacks and progress bars build on it) and
a :class:`Lookup` (the cache builds on it). The cores' loops and the drivers call
them; with neither configured the cores take their plain loops, with no per-item
or per-node check added (the choice is made once per batch).

Numbering: ``node`` is the node's index in the call's plan (``plan.node_names[node]``
names it), ``item`` the map item's index in the whole map, ``-1`` in ``run()``.
Under a thread or async map the observer is called from several threads at once:
it must be thread-safe. Worker processes record events with the observer's
:meth:`~Observer.remote` twin and send them back with each slice's results; the
parent replays them, so an observer sees the same events under every executor,
each slice's in one burst.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["EVENTS_ATTR", "Lookup", "Observer", "RemoteObserver"]


class Observer(Protocol):
    """Receives the events of one call. Every method is called on the thread that ran the work.

    The flags say which events are wanted, so the loops skip the rest: with neither
    set, a batch runs the plain loop and reports only errors and ``items_done``.
    """

    node_events: bool  # node_start, node_end, node_cached
    item_events: bool  # item_start, item_end

    def item_start(self, item: int) -> None:
        """Map item ``item`` starts."""

    def item_end(self, item: int, seconds: float) -> None:
        """Map item ``item`` finished after ``seconds`` (not called when it failed)."""

    def item_failed(self, item: int, failure: Any) -> None:
        """Map item ``item`` failed under ``on_error="continue"`` (``failure``: its first
        ``failures.Failure``); called instead of ``item_end``, whatever the flags say."""

    def node_retry(self, node: int, item: int, exc: BaseException, attempt: int, delay: float) -> None:
        """Call ``attempt`` (1 is the first) of node ``node`` raised ``exc``, which its
        ``retry_on`` lists: it is called again after ``delay`` seconds. ``item`` is -1 when
        the caller does not know it (see ``_policy``). Always reported."""

    def items_done(self, count: int) -> None:
        """``count`` more map items finished (after each batch or chunk: progress, cheaply)."""

    def node_start(self, node: int, item: int, args: tuple[Any, ...]) -> None:
        """Node ``node`` is called for ``item`` with positional ``args``."""

    def node_end(self, node: int, item: int, seconds: float, result: Any) -> None:
        """Node ``node`` returned ``result`` for ``item`` after ``seconds``."""

    def node_cached(self, node: int, item: int, result: Any) -> None:
        """Node ``node``'s ``result`` for ``item`` came from the lookup; it was not called."""

    def node_error(self, node: int, item: int, exc: BaseException) -> None:
        """Node ``node`` raised ``exc`` for ``item`` (which then propagates). Always reported."""

    def remote(self) -> RemoteObserver:
        """A picklable observer that records this call's events in a worker process."""

    def replay(self, events: Any) -> None:
        """Deliver what a :meth:`remote` observer recorded (``RemoteObserver.drain``)."""

    def nested_task(self, node: int, item: int, func: Callable[..., Any]) -> Callable[..., Any]:
        """What a driver hands to another process in place of ``func``, the task of node
        ``node`` when it is a nested pipeline: it returns ``(func's result, events)`` (None:
        they could not travel), or raises with the events under ``EVENTS_ATTR``; the events
        go to :meth:`replay`. Asked only for nested-pipeline nodes."""


class RemoteObserver(Observer, Protocol):
    """The worker-side observer of a process map: records events to send back."""

    def drain(self) -> Any:
        """The events recorded since the last drain (picklable), for :meth:`Observer.replay`."""


class Lookup:
    """Asked before a node is called; told its result after. The base class of every lookup.

    ``get`` and ``put`` are the cores' questions, per node. The other three are the
    drivers', per slice; here they do nothing, so a driver calls them without asking
    whether a lookup has them. The cache (``cache.lookup.CacheLookup``) overrides all five.
    """

    __slots__ = ()

    def get(self, node: int, item: int, args: tuple[Any, ...]) -> tuple[Any] | None:
        """``(result,)`` to use instead of calling node ``node`` on ``args``; None to call it."""
        return None

    def put(self, node: int, item: int, args: tuple[Any, ...], result: Any) -> None:
        """Node ``node`` returned ``result`` for ``args``."""

    def prefetch(self, template: Sequence[Any], items: Any) -> None:
        """Called by the map drivers with the slot template and each slice (an ``_call.Items``)
        before its items run, so that the lookup prepares them in one go (the cache batches
        its queries)."""

    def flush(self) -> None:
        """Called after each slice, in the process that ran it, failed or not (the cache batches its writes)."""

    def inherit(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """What the drivers hand to another thread or process (a slice, a node's task) in place
        of ``func``: a nested pipeline run there then sees what the call passes down (the cache).

        Returns:
            ``func`` itself, here.
        """
        return func


EVENTS_ATTR = "__hypernodes_events__"
"""The attribute under which a worker attaches the events recorded before a failure to the exception."""
