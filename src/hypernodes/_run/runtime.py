"""What the drivers run a call with: a backend per level, the function table, the core.

The engine builds one :class:`Runtime` and hands it down with each call record; a
worker process that runs a map slice with a node executor builds its own. The
drivers read nothing else: they never import the engine or the pipeline.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .. import _core
from .._events import Observer
from .._graph import Plan
from .._policy import bind
from ..executors._loop import AwaitOn, CoroutineRunner
from ..executors.backends import Backend, Sequential

__all__ = ["FuncTable", "Runtime"]


class FuncTable:
    """The callables the loops call for a plan's nodes, one tuple per plan (cached).

    ``plan.funcs`` as they are, except that each ``async def`` node is wrapped so
    that its coroutine is awaited by ``runner`` (the engine's loop thread, or a
    worker's own loop): blocking loops can then call every node alike, also from
    inside a running event loop. Drivers that await coroutines themselves (an
    async map slice) use ``plan.funcs``.
    """

    __slots__ = ("_tables", "runner")

    def __init__(self, runner: CoroutineRunner) -> None:
        self.runner = runner
        self._tables: weakref.WeakKeyDictionary[Plan, tuple[Callable[..., Any], ...]] = weakref.WeakKeyDictionary()

    def __call__(self, plan: Plan, observer: Observer | None = None) -> tuple[Callable[..., Any], ...]:
        if observer is not None:
            bound = bind(plan.funcs, observer)
            if bound is not plan.funcs:  # retrying nodes report their attempts to this call's observer
                return self._awaiting(plan, bound) if plan.has_async else bound
        if not plan.has_async:
            return plan.funcs
        funcs = self._tables.get(plan)
        if funcs is None:
            funcs = self._tables[plan] = self._awaiting(plan, plan.funcs)
        return funcs

    def _awaiting(self, plan: Plan, funcs: tuple[Callable[..., Any], ...]) -> tuple[Callable[..., Any], ...]:
        runner = self.runner
        return tuple(AwaitOn(f, runner) if a else f for f, a in zip(funcs, plan.is_async))


class Runtime:
    """A backend per level, the function table, and the scheduling core to run on.

    Attributes:
        nodes: runs the nodes of one item.
        items: runs the items of a map.
        funcs: the function table (see :class:`FuncTable`).
        core: the core module (``_core``, or in a worker the caller's core).
        max_workers: the engine's ``max_workers``, for backends made in workers.
        plain: nodes inline and items sequential: a map with nothing observing or
            caching it may run on the cores' whole-map fast path (``map_zip``; a ``run()``
            needs only the nodes inline for ``run_dict``).
    """

    __slots__ = ("core", "funcs", "items", "max_workers", "nodes", "plain")

    def __init__(
        self,
        nodes: Backend,
        items: Backend,
        funcs: FuncTable,
        max_workers: int | None,
        core: ModuleType = _core,
    ) -> None:
        self.nodes = nodes
        self.items = items
        self.funcs = funcs
        self.max_workers = max_workers
        self.core = core
        self.plain = nodes.inline and type(items) is Sequential
