"""A process map asks its cache here first: items the cache holds whole never travel.

Sending an item to a worker process costs pickling its values both ways, and a
pool's start; a worker then finds every node cached and sends back what the
cache already had. So, before a process map submits anything, its items run here
through the core's keep-going batch loop with node functions that only say
"missing": a cached node is served by the lookup as usual, the first node that
is not cached fails the item (its nodes after it are not even asked), and the
items that did not fail are done. Only the runs of items that missed go to the
workers, numbered as in the whole map; a fully cached map starts no worker.

With an observer, the items served here are looked up a second time, alone, so
that their events (``node_cached``, ``item_start``/``item_end``, ``items_done``)
reach it as they happen (it reads the lookup's state then, for the signatures);
the items that missed report nothing here (a worker reports them when it runs them).
A map whose first :data:`PROBE` items all miss stops asking here: a cold map pays
for at most that many lookups twice.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._call import Items, MapCall
from .._events import Observer

__all__ = ["PROBE", "Hits", "cached_first"]

PROBE = 256
"""Items looked up here per chunk; a first chunk without a single hit ends the search."""


class _Missing(Exception):
    """What a node that is not cached "raises" during the search (never seen outside it)."""


def _missing(*args: Any) -> Any:
    raise _Missing


class _Sieve:
    """An observer of the search: notes the items that missed; forwards the events of the
    others to ``observer`` (when given), on time: it reads the lookup's state as they happen."""

    def __init__(self, observer: Observer | None) -> None:
        self.observer = observer
        self.node_events = observer is not None and observer.node_events
        self.item_events = observer is not None and observer.item_events
        self.missed: set[int] = set()

    def item_start(self, item: int) -> None:
        if self.observer is not None:
            self.observer.item_start(item)

    def item_end(self, item: int, seconds: float) -> None:
        if self.observer is not None:
            self.observer.item_end(item, seconds)

    def node_cached(self, node: int, item: int, result: Any) -> None:
        if self.observer is not None:
            self.observer.node_cached(node, item, result)

    def item_failed(self, item: int, failure: Any) -> None:
        self.missed.add(item)

    def node_start(self, node: int, item: int, args: tuple[Any, ...]) -> None:
        """A node about to be "called": it missed."""

    def node_end(self, node: int, item: int, seconds: float, result: Any) -> None:
        """Never: no node is called here."""

    def node_error(self, node: int, item: int, exc: BaseException) -> None:
        """The miss itself."""

    def node_retry(self, node: int, item: int, exc: BaseException, attempt: int, delay: float) -> None:
        """Never: no node is called here."""

    def items_done(self, count: int) -> None:
        """Counted for the items served only, by :func:`cached_first`."""


class Hits:
    """What the search found: ``results`` (one list per output, missed items' places to fill)
    and ``runs``: ``(lo, hi)`` ranges of the map's items still to run, in its numbering."""

    __slots__ = ("results", "runs")

    def __init__(self, results: list[list[Any]], runs: list[tuple[int, int]]) -> None:
        self.results = results
        self.runs = runs


def cached_first(core: ModuleType, call: MapCall) -> Hits | None:
    """The items of ``call`` (a zip or product map with a lookup) that its lookup holds whole; None if none is."""
    lookup, observer, items = call.lookup, call.observer, call.items
    assert lookup is not None
    results: list[list[Any]] = [[] for _ in call.plan.result_names]
    missed: list[int] = []
    at = items.lo
    while at < items.hi:
        part = items.between(at, min(items.hi, at + PROBE))
        sieve = _search(core, call, part, None, results)
        chunk = [i for i in range(part.lo, part.hi) if items.base + i in sieve.missed]
        if observer is not None and len(chunk) < len(part):
            # Again, the hits only, reported as they happen. One that misses now (evicted
            # meanwhile) travels too; its callbacks may have heard that it started.
            late = set()
            for lo, hi in _runs([i for i in range(part.lo, part.hi) if items.base + i not in sieve.missed]):
                late |= _search(core, call, items.between(lo, hi), observer, None).missed
            chunk = sorted({*chunk, *(i - items.base for i in late)})
            observer.items_done(len(part) - len(chunk))
        missed += chunk
        at = part.hi
        if len(missed) == at - items.lo:  # nothing hit yet: a cold map, most likely
            break
    if len(missed) == at - items.lo:
        return None
    for out in results:
        out.extend([None] * (items.hi - at))
    runs = _runs(missed)
    if at < items.hi:
        runs.append((at, items.hi))
    return Hits(results, _merged(runs))


def _search(
    core: ModuleType, call: MapCall, part: Items, observer: Observer | None, results: list[list[Any]] | None
) -> _Sieve:
    """Items ``part`` through the lookup alone; their values appended to ``results`` (if given)."""
    if call.lookup is not None:
        call.lookup.prefetch(call.values, part)
    sieve = _Sieve(observer)
    funcs = (_missing,) * call.plan.n_nodes
    columns = core.run_batch_continue(call.plan, funcs, list(call.values), part, sieve, call.lookup)
    if results is not None:
        for out, column in zip(results, columns):
            out.extend(column)
    return sieve


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _merged(runs: list[tuple[int, int]], most: int = 64) -> list[tuple[int, int]]:
    """At most ``most`` runs: neighbours joined (their cached items between them then travel
    too, and are served by the cache in the worker), so scattered misses cost few tasks."""
    if len(runs) <= most:
        return runs
    size = -(-len(runs) // most)
    return [(group[0][0], group[-1][1]) for group in (runs[i : i + size] for i in range(0, len(runs), size))]
