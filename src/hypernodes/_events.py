"""The event seam: what the loops report to an observer, and what they ask a lookup.

A call may carry an :class:`Observer` (callbacks and progress bars build on it) and
a :class:`Lookup` (the cache builds on it). The cores' loops and the drivers call
them; with neither configured the cores take their plain loops, with no per-item
or per-node check added (the choice is made once per batch).

Numbering: ``node`` is the node's index in the call's plan (``plan.node_names[node]``
names it), ``item`` the map item's index in the whole map, ``-1`` in ``run()``.
Under a thread or async map the observer is called from several threads at once:
it must be thread-safe. Worker processes record events (:class:`Recorder`) and send
them back with each slice's results; the parent :func:`replay`\\ s them, so an
observer sees the same events under every executor, each slice's in one burst.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["EVENTS_ATTR", "Lookup", "Observer", "Recorder", "replay"]


class Observer(Protocol):
    """Receives the events of one call. Every method is called on the thread that ran the work."""

    def item_start(self, item: int) -> None:
        """Map item ``item`` starts."""

    def item_end(self, item: int, seconds: float) -> None:
        """Map item ``item`` finished after ``seconds`` (not called when it failed)."""

    def node_start(self, node: int, item: int) -> None:
        """Node ``node`` is called for ``item``."""

    def node_end(self, node: int, item: int, seconds: float) -> None:
        """Node ``node`` returned for ``item`` after ``seconds``."""

    def node_cached(self, node: int, item: int) -> None:
        """Node ``node``'s outputs for ``item`` came from the lookup; it was not called."""

    def node_error(self, node: int, item: int, exc: BaseException) -> None:
        """Node ``node`` raised ``exc`` for ``item`` (which then propagates)."""


class Lookup(Protocol):
    """Asked before a node is called; told its result after."""

    def get(self, node: int, item: int, args: tuple[Any, ...]) -> tuple[Any] | None:
        """``(result,)`` to use instead of calling node ``node`` on ``args``; None to call it."""

    def put(self, node: int, item: int, args: tuple[Any, ...], result: Any) -> None:
        """Node ``node`` returned ``result`` for ``args``."""


_ITEM_START, _ITEM_END, _NODE_START, _NODE_END, _NODE_CACHED, _NODE_ERROR = range(6)

EVENTS_ATTR = "__hypernodes_events__"
"""The attribute under which a worker attaches the events recorded before a failure to the exception."""


class Recorder:
    """An observer that keeps events as compact tuples, to send back from a worker process."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[tuple[int, int, int, float]] = []

    def item_start(self, item: int) -> None:
        self.events.append((_ITEM_START, -1, item, 0.0))

    def item_end(self, item: int, seconds: float) -> None:
        self.events.append((_ITEM_END, -1, item, seconds))

    def node_start(self, node: int, item: int) -> None:
        self.events.append((_NODE_START, node, item, 0.0))

    def node_end(self, node: int, item: int, seconds: float) -> None:
        self.events.append((_NODE_END, node, item, seconds))

    def node_cached(self, node: int, item: int) -> None:
        self.events.append((_NODE_CACHED, node, item, 0.0))

    def node_error(self, node: int, item: int, exc: BaseException) -> None:
        # the exception itself travels back as the task's error; it is replayed with it
        self.events.append((_NODE_ERROR, node, item, 0.0))


def replay(events: list[tuple[int, int, int, float]], observer: Observer, exc: BaseException | None = None) -> None:
    """Deliver events a :class:`Recorder` kept to ``observer``; ``exc`` is the error that ended them."""
    for kind, node, item, seconds in events:
        if kind == _NODE_START:
            observer.node_start(node, item)
        elif kind == _NODE_END:
            observer.node_end(node, item, seconds)
        elif kind == _ITEM_START:
            observer.item_start(item)
        elif kind == _ITEM_END:
            observer.item_end(item, seconds)
        elif kind == _NODE_CACHED:
            observer.node_cached(node, item)
        elif exc is not None:
            observer.node_error(node, item, exc)
