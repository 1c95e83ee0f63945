"""The scheduling core in pure Python: the reference and the spec.

``_sched.pyx`` is a compiled twin of this module with the same names and the same
behaviour; one test suite runs against both (PEP 399 style). Nothing outside
``_core.py`` imports either module directly.

Vocabulary (all integers, see ``_graph.Plan``): a *slot* holds one value, a *node*
reads argument slots and writes output slots, and a *values* list is one call's
slot storage. The loops here never look a name up in a dict.
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from time import perf_counter
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from ._errors import coroutine_returned, note_node, unpack_row
from .failures import Failure, MapResult, failure_of

if TYPE_CHECKING:
    from ._events import Lookup, Observer

__all__ = [
    "API_VERSION",
    "IMPLEMENTATION",
    "ReadyQueue",
    "find_failures",
    "map_zip",
    "pack_column",
    "plan_batches",
    "run_batch",
    "run_batch_continue",
    "run_dict",
    "run_one",
    "unpack_column",
]

IMPLEMENTATION = "python"
# Bumped whenever the core's contract changes; the tests check both cores agree,
# which also catches a stale compiled extension left behind by an old build.
API_VERSION = 9

# Shared inputs of these exact types are no one-shot iterators; anything else is asked.
_NOT_ITERATORS = frozenset({int, float, complex, str, bytes, bool, type(None), list, tuple, dict})


class _Prepared:
    """A plan's arrays as Python lists (indexing an array from Python makes a new int each time)."""

    __slots__ = ("args", "indegree", "n_nodes", "names", "outs", "result_slots", "steps", "succs", "unpack")

    def __init__(self, plan: Any) -> None:
        wiring = plan.wiring
        succ_ptr, succ_idx = plan.succ_ptr.tolist(), plan.succ_idx.tolist()
        n = plan.n_nodes
        self.n_nodes = n
        self.names = wiring.names
        self.args = wiring.args
        self.outs = wiring.outs
        self.unpack = wiring.unpack
        self.succs = [tuple(succ_idx[succ_ptr[k] : succ_ptr[k + 1]]) for k in range(n)]
        self.indegree = plan.indegree.tolist()
        self.result_slots = wiring.result_slots
        # the node loop's view: (node, argument slots, output slot or -1 to unpack)
        self.steps = tuple((k, self.args[k], -1 if self.unpack[k] else self.outs[k][0]) for k in range(n))


def _prepared(plan: Any) -> _Prepared:
    p = plan._native
    if not isinstance(p, _Prepared):  # None, or the other core's form after a switch in tests
        p = plan._native = _Prepared(plan)
    return p


def _store_unpacked(result: Any, outs: tuple[int, ...], values: list[Any], name: str) -> None:
    for slot, value in zip(outs, unpack_row(result, len(outs), name)):
        values[slot] = value


def _check_call(p: _Prepared, n_slots: int, funcs: Sequence[Callable[..., Any]], values: list[Any]) -> None:
    if len(values) < n_slots:
        raise ValueError(f"values holds {len(values)} slots, the plan needs {n_slots}")
    if len(funcs) != p.n_nodes:
        raise ValueError(f"{len(funcs)} funcs given for a plan of {p.n_nodes} nodes")


def _run_nodes(
    p: _Prepared, funcs: Sequence[Callable[..., Any]], values: list[Any], item: int, errors: Observer | None = None
) -> None:
    k = 0
    try:
        for k, args, out in p.steps:
            if len(args) == 1:  # the common case, without building an argument list
                result = funcs[k](values[args[0]])
            else:
                result = funcs[k](*[values[s] for s in args])
            if type(result) is CoroutineType:  # a plain node around an async call (async nodes come awaited)
                raise coroutine_returned(result, p.names[k])
            if out >= 0:
                values[out] = result
            else:
                _store_unpacked(result, p.outs[k], values, p.names[k])
    except Exception as exc:
        note_node(exc, p.names[k], item)
        if errors is not None:
            errors.node_error(k, item, exc)
        raise


def _run_nodes_observed(
    p: _Prepared,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    item: int,
    events: Observer | None,
    errors: Observer | None,
    lookup: Lookup | None,
) -> None:
    # The same loop as _run_nodes, reporting each node to `events` and asking `lookup`
    # first; taken only when one of them is configured, so the plain loop stays as it is.
    k = 0
    try:
        for k, args, out in p.steps:
            argv = tuple([values[s] for s in args])
            hit = lookup.get(k, item, argv) if lookup is not None else None
            if hit is not None:
                result = hit[0]
                if events is not None:
                    events.node_cached(k, item, result)
            else:
                if events is not None:
                    events.node_start(k, item, argv)
                    started = perf_counter()
                result = funcs[k](*argv)
                if type(result) is CoroutineType:  # before the lookup keeps it
                    raise coroutine_returned(result, p.names[k])
                if lookup is not None:
                    lookup.put(k, item, argv, result)
                if events is not None:
                    events.node_end(k, item, perf_counter() - started, result)
            if out >= 0:
                values[out] = result
            else:
                _store_unpacked(result, p.outs[k], values, p.names[k])
    except Exception as exc:
        note_node(exc, p.names[k], item)
        if errors is not None:
            errors.node_error(k, item, exc)
        raise


def run_one(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    observer: Observer | None = None,
    lookup: Lookup | None = None,
) -> None:
    """Run every node of ``plan`` once, in topological order, on ``values``.

    Args:
        plan: a compiled ``Plan``.
        funcs: one callable per plan node (``plan.funcs``, or the engine's
            wrappers of them), called positionally with the node's argument slots.
        values: the call's slots, ``len == plan.n_slots``; filled in place.
        observer: told of each node's start and end (if it wants node events)
            and of the error that stops the loop (see ``_events``).
        lookup: asked before each node is called; a hit replaces the call.

    Raises:
        Whatever a node raises, unchanged but for a note naming the node.
        OutputArityError: a tuple-output node returned the wrong shape.
    """
    p = _prepared(plan)
    _check_call(p, plan.n_slots, funcs, values)
    events = observer if observer is not None and observer.node_events else None
    if events is None and lookup is None:
        _run_nodes(p, funcs, values, -1, observer)
    else:
        _run_nodes_observed(p, funcs, values, -1, events, observer, lookup)


def run_dict(plan: Any, funcs: Sequence[Callable[..., Any]], inputs: dict[str, Any]) -> dict[str, Any]:
    """Run ``plan`` once on ``inputs`` and return ``{output name: value}``: a whole ``run()``.

    The fast path of a call whose shape was checked before (see ``_call.PlanCache``):
    no observer, no lookup, every node on the calling thread.

    Args:
        plan, funcs: as for :func:`run_one`.
        inputs: the call's inputs; it holds every name of ``plan.input_names``.

    Raises:
        As :func:`run_one`; KeyError: ``inputs`` lacks one of the plan's inputs.
    """
    p = _prepared(plan)
    values = list(plan.template)
    _check_call(p, plan.n_slots, funcs, values)
    for name, slot in plan.input_pairs:
        values[slot] = inputs[name]
    _run_nodes(p, funcs, values, -1)
    return {name: values[slot] for name, slot in plan.result_pairs}


def map_zip(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    inputs: dict[str, Any],
    mapped: tuple[str, ...],
    map_slots: tuple[int, ...],
    shared: tuple[tuple[str, int], ...],
) -> MapResult | None:
    """A whole zip ``map()`` of a checked call shape: ``{output name: [value per item]}``, a
    :class:`~hypernodes.failures.MapResult` that keeps the mapped columns' snapshot.

    Item ``i`` puts element ``i`` of ``inputs[mapped[j]]`` into slot ``map_slots[j]``
    (``plan.n_slots`` is a scratch slot, for a mapped input the plan does not read);
    ``shared`` gives the ``(name, slot)`` of every other input, read once. No
    observer, no lookup, everything on the calling thread.

    Returns:
        The results; or None, before any node runs, when the values do not fit the
        plain case (a mapped input that is not a list, lists of unequal lengths, a
        shared input that is an iterator): the caller then takes the general path,
        which checks them and raises the error that names the problem.

    Raises:
        As :func:`run_batch`; the note gives the item index.
    """
    p = _prepared(plan)
    values = [*plan.template, None]
    _check_call(p, plan.n_slots, funcs, values)
    if len(map_slots) != len(mapped) or not mapped:
        raise ValueError(f"{len(map_slots)} map slots for {len(mapped)} mapped inputs")
    for name, slot in shared:
        value = inputs[name]
        if type(value) not in _NOT_ITERATORS and isinstance(value, Iterator):
            return None
        values[slot] = value
    columns: list[tuple[Any, ...]] = []
    for j, m in enumerate(mapped):
        column = inputs[m]
        if type(column) is not list or (j and len(column) != len(columns[0])):
            return None
        columns.append(tuple(column))  # a snapshot: a node may change the user's list
    for slot in map_slots:
        if not 0 <= slot < len(values):
            raise ValueError(f"map slot {slot} is outside the {len(values)} value slots")
    n = len(columns[0])
    results: list[list[Any]] = [[None] * n for _ in p.result_slots]
    pairs = tuple(zip(map_slots, columns))
    result_slots = p.result_slots
    for i in range(n):
        for slot, column in pairs:
            values[slot] = column[i]
        _run_nodes(p, funcs, values, i)
        for out, slot in zip(results, result_slots):
            out[i] = values[slot]
    return MapResult._of(dict(zip(plan.result_names, results)), (mapped, tuple(columns), False))


def _rows(items: Any, lengths: list[int]) -> Iterator[tuple[Any, ...]]:
    """The mapped values of items ``lo..hi-1``: element-wise (zip) or mixed-radix (product)."""
    columns, lo, hi = items.columns, items.lo, items.hi
    if not columns:
        return itertools.repeat((), hi - lo)
    if not items.product:
        return zip(*[column[lo:hi] for column in columns])
    return (_unravel(columns, lengths, item) for item in range(lo, hi))


def _unravel(columns: Sequence[Sequence[Any]], lengths: list[int], item: int) -> tuple[Any, ...]:
    row = []
    for j in range(len(columns) - 1, -1, -1):  # last column varies fastest, as itertools.product
        item, idx = divmod(item, lengths[j])
        row.append(columns[j][idx])
    row.reverse()
    return tuple(row)


def _layout(values: list[Any], items: Any) -> list[int]:
    """A batch's item layout, checked: the column lengths (run_batch and run_batch_continue read the same)."""
    map_slots, columns, lo, hi, base = items.map_slots, items.columns, items.lo, items.hi, items.base
    n_cols = len(columns)
    if len(map_slots) != n_cols:
        raise ValueError(f"{len(map_slots)} map slots for {n_cols} columns")
    if lo < 0 or hi < lo:
        raise ValueError(f"bad item range [{lo}, {hi})")
    if base < 0:
        raise ValueError(f"base must be >= 0, got {base}")
    lengths = [len(c) for c in columns]
    for slot in map_slots:
        if not 0 <= slot < len(values):
            raise ValueError(f"map slot {slot} is outside the {len(values)} value slots")
    total = (math.prod(lengths) if items.product else min(lengths)) if n_cols else -1
    if n_cols and hi > total:
        raise ValueError(f"item range [{lo}, {hi}) exceeds the {total} items of the columns")
    return lengths


def run_batch(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    items: Any,
    observer: Observer | None = None,
    lookup: Lookup | None = None,
) -> list[list[Any]]:
    """Run the items ``items.lo <= i < items.hi`` of a map through the whole plan.

    Args:
        plan, funcs, observer, lookup: as for :func:`run_one`; the observer is
            also told of each item's start and end (if it wants item events), and
            of the batch's item count when it is done (``items_done``).
        values: slot storage with every broadcast input filled in; reused for
            every item (each slot is written before it is read, so no copy).
        items: the item layout (``_call.Items``): ``map_slots`` (the slot each
            mapped column goes into), ``columns`` (one sequence per mapped input),
            ``product`` (False: item ``i`` takes element ``i`` of every column;
            True: items enumerate the cartesian product, last column fastest),
            the range ``lo``, ``hi`` in the columns' numbering, and ``base``, added
            to the item index in notes and events (a worker's slice of a larger map).

    Returns:
        One list per ``plan.result_slots`` entry, ``hi - lo`` values each, in item order.

    Raises:
        As :func:`run_one`; the note also gives the global item index.
    """
    p = _prepared(plan)
    _check_call(p, plan.n_slots, funcs, values)
    map_slots, lo, hi, base = items.map_slots, items.lo, items.hi, items.base
    lengths = _layout(values, items)
    results: list[list[Any]] = [[] for _ in p.result_slots]
    appends = [r.append for r in results]
    pairs = list(zip(appends, p.result_slots))
    events = observer if observer is not None and observer.node_events else None
    per_node = events is not None or lookup is not None
    per_item = observer is not None and observer.item_events
    for item, row in zip(range(lo, hi), _rows(items, lengths)):
        for slot, value in zip(map_slots, row):
            values[slot] = value
        if per_item:
            observer.item_start(base + item)  # type: ignore[union-attr]
            started = perf_counter()
        if per_node:
            _run_nodes_observed(p, funcs, values, base + item, events, observer, lookup)
        else:
            _run_nodes(p, funcs, values, base + item, observer)
        if per_item:
            observer.item_end(base + item, perf_counter() - started)  # type: ignore[union-attr]
        for append, slot in pairs:
            append(values[slot])
    if observer is not None:
        observer.items_done(hi - lo)
    return results


def _run_nodes_continue(
    p: _Prepared,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    item: int,
    events: Observer | None,
    errors: Observer | None,
    lookup: Lookup | None,
) -> Failure | None:
    # The loop of on_error="continue": a node that raises gets a Failure in its output
    # slots, and a node with a Failure among its arguments is not called (the marker
    # is passed on to its outputs). Only the call and the storing of its result count
    # as the node's failure: an observer's or a lookup's own exception stops the batch.
    # Returns the item's first marker, None when it succeeded.
    failed: Failure | None = None
    for k, args, out in p.steps:
        argv = tuple([values[s] for s in args])
        marker = None
        for value in argv:
            if type(value) is Failure:
                marker = value
                break
        if marker is None:
            hit = lookup.get(k, item, argv) if lookup is not None else None
            if hit is not None:
                result = hit[0]
                if events is not None:
                    events.node_cached(k, item, result)
                stored = result if out >= 0 else unpack_row(result, len(p.outs[k]), p.names[k])
            else:
                if events is not None:
                    events.node_start(k, item, argv)
                    started = perf_counter()
                try:
                    result = funcs[k](*argv)
                    if type(result) is CoroutineType:
                        raise coroutine_returned(result, p.names[k])
                    stored = result if out >= 0 else unpack_row(result, len(p.outs[k]), p.names[k])
                except Exception as exc:
                    note_node(exc, p.names[k], item)
                    if errors is not None:
                        errors.node_error(k, item, exc)
                    marker = failure_of(exc, p.names[k], item)
                else:
                    if lookup is not None:
                        lookup.put(k, item, argv, result)
                    if events is not None:
                        events.node_end(k, item, perf_counter() - started, result)
            if marker is None:
                if out >= 0:
                    values[out] = stored
                else:
                    for slot, value in zip(p.outs[k], stored):
                        values[slot] = value
                continue
        if failed is None:
            failed = marker
        for slot in p.outs[k]:
            values[slot] = marker
    return failed


def run_batch_continue(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    items: Any,
    observer: Observer | None = None,
    lookup: Lookup | None = None,
) -> list[list[Any]]:
    """:func:`run_batch` for ``on_error="continue"``: a failing item does not stop the batch.

    A node that raises (or returns what does not fit its outputs) gets a
    :class:`~hypernodes.failures.Failure` in each of its output slots; a node
    reading a slot that holds one is not called and passes it on to its outputs.
    So each result of a failed item holds the marker exactly when it depended on
    the failure. The observer hears ``node_error`` for each failure and
    ``item_failed`` for each failed item (always; ``item_end`` is not called for
    it); a lookup is never told of a failure.

    Returns:
        As :func:`run_batch`; markers in place of the values that could not be computed.

    Raises:
        What the observer or the lookup raise, and the argument errors of :func:`run_batch`.
    """
    p = _prepared(plan)
    _check_call(p, plan.n_slots, funcs, values)
    map_slots, lo, hi, base = items.map_slots, items.lo, items.hi, items.base
    lengths = _layout(values, items)
    results: list[list[Any]] = [[] for _ in p.result_slots]
    pairs = list(zip([r.append for r in results], p.result_slots))
    events = observer if observer is not None and observer.node_events else None
    per_item = observer is not None and observer.item_events
    for item, row in zip(range(lo, hi), _rows(items, lengths)):
        for slot, value in zip(map_slots, row):
            values[slot] = value
        if per_item:
            observer.item_start(base + item)  # type: ignore[union-attr]
            started = perf_counter()
        failed = _run_nodes_continue(p, funcs, values, base + item, events, observer, lookup)
        if failed is not None:
            if observer is not None:
                observer.item_failed(base + item, failed)
        elif per_item:
            observer.item_end(base + item, perf_counter() - started)  # type: ignore[union-attr]
        for append, slot in pairs:
            append(values[slot])
    if observer is not None:
        observer.items_done(hi - lo)
    return results


def find_failures(columns: Sequence[Sequence[Any]]) -> list[Failure]:
    """Every :class:`~hypernodes.failures.Failure` in ``columns`` (lists of values), column by column.

    A marker shared by several outputs appears once per output it is in.
    """
    return [value for column in columns for value in column if type(value) is Failure]


def plan_batches(n_items: int, n_workers: int, tasks_per_worker: int = 1, min_batch: int = 1) -> list[tuple[int, int]]:
    """Split ``range(n_items)`` into contiguous ``(lo, hi)`` slices for executors.

    There are ``min(n_items, n_workers * tasks_per_worker)`` slices (fewer if that
    would make a slice shorter than ``min_batch``), their sizes differing by at
    most one, so every worker gets work and none waits on a long tail. With
    ``n_items <= n_workers`` each item is its own slice (blocking I/O wants that).

    Raises:
        ValueError: a negative ``n_items`` or a count below 1.
    """
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    if n_workers < 1 or tasks_per_worker < 1 or min_batch < 1:
        raise ValueError(
            f"n_workers, tasks_per_worker and min_batch must be >= 1, got {n_workers}, {tasks_per_worker}, {min_batch}"
        )
    n_tasks = min(n_items, n_workers * tasks_per_worker, max(1, n_items // min_batch))
    if n_tasks == 0:
        return []
    size, extra = divmod(n_items, n_tasks)
    out: list[tuple[int, int]] = []
    lo = 0
    for t in range(n_tasks):
        hi = lo + size + (1 if t < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


_PENDING, _ISSUED, _DONE = 0, 1, 2


class ReadyQueue:
    """Dependency counting over a plan, in the shape of ``graphlib.TopologicalSorter``.

    ``get_ready()`` returns the nodes whose predecessors are all done and that were
    not returned before; ``done(*ids)`` marks issued nodes finished and releases
    their successors; ``is_active()`` says whether more progress can be made.
    Safe to drive from several threads (one lock; every method is O(work done)).
    """

    def __init__(self, plan: Any) -> None:
        p = _prepared(plan)
        self._succs = p.succs
        self._remaining = list(p.indegree)
        self._state = [_PENDING] * len(self._remaining)
        self._ready = [k for k, d in enumerate(self._remaining) if d == 0]
        self._n = p.n_nodes
        self._n_issued = 0
        self._n_done = 0
        self._lock = threading.Lock()

    def get_ready(self) -> tuple[int, ...]:
        """Return (and mark issued) every node that became ready since the last call."""
        with self._lock:
            ready = tuple(self._ready)
            self._ready.clear()
            for k in ready:
                self._state[k] = _ISSUED
            self._n_issued += len(ready)
            return ready

    def done(self, *ids: int) -> None:
        """Mark issued nodes as finished and release the successors they were the last wait of.

        Ids are checked in order and the ones before a bad id stay done (as graphlib);
        an id out of range is refused before any is marked.

        Raises:
            TypeError: an id that is not an integer.
            ValueError: an id out of range, not yet returned by ``get_ready()``, or already done.
        """
        ks = [operator.index(k) for k in ids]
        for k in ks:
            if not 0 <= k < self._n:
                raise ValueError(f"node id {k} is out of range for a plan of {self._n} nodes")
        with self._lock:
            for k in ks:
                state = self._state[k]
                if state != _ISSUED:
                    what = "was already marked done" if state == _DONE else "was not returned by get_ready()"
                    raise ValueError(f"node {k} {what}")
                self._state[k] = _DONE
                self._n_done += 1
                for s in self._succs[k]:
                    self._remaining[s] -= 1
                    if self._remaining[s] == 0:
                        self._ready.append(s)

    def is_active(self) -> bool:
        """True while a node is ready to be returned or issued and not yet done."""
        with self._lock:
            return bool(self._ready) or self._n_issued > self._n_done

    @property
    def n_done(self) -> int:
        """How many nodes are done."""
        return self._n_done


# -- a map slice's results on their way back from a worker process --------------------------

_INT_CODES = (("b", 1 << 7), ("h", 1 << 15), ("i", 1 << 31), ("q", 1 << 63))
"""``array`` typecodes for ints, narrowest first, each with its bound: it holds ``-bound <= x < bound``."""


def pack_column(column: Any) -> tuple[str, bytes] | None:
    """``column`` as one buffer: ``(typecode, bytes)`` as ``array(typecode, column).tobytes()`` gives them; or None.

    Columns of plain numbers travel to and from worker processes this way instead
    of pickling each value: a list or tuple of exact ``int`` (no ``bool``, no
    subclass) goes in the narrowest of int8, int16, int32 and int64 that holds all
    of them, one of exact ``float`` as doubles (native byte order). Anything else
    (empty, a mix of types, an int beyond 64 bits, neither a list nor a tuple) is
    None: it is pickled as it is. ``memoryview(data).cast(typecode).tolist()``
    gives the values back, equal and of the same type.
    """
    if (type(column) is not list and type(column) is not tuple) or not column:
        return None
    kinds = set(map(type, column))  # one pass in C (a generator of `type(v) is int` is 4x slower)
    if kinds == {float}:
        return "d", array("d", column).tobytes()
    if kinds != {int}:
        return None
    lo, hi = min(column), max(column)
    for code, bound in _INT_CODES:
        if -bound <= lo and hi < bound:
            return code, array(code, column).tobytes()
    return None


def unpack_column(code: str, data: Any, out: list[Any], at: int) -> None:
    """Put the values packed in ``data`` (``pack_column``'s ``(code, data)``, native byte order) in ``out[at:]``.

    A worker's packed result column goes straight into its place in the call's result
    list: ``out[at + i]`` becomes value ``i``, equal and of the same type as the value
    packed. Raises ValueError for a typecode ``pack_column`` does not make, or values
    that would not fit ``out`` from ``at`` (nothing is written then).
    """
    if code not in ("b", "h", "i", "q", "d"):
        raise ValueError(f"unpack_column: typecode {code!r} is not one of 'bhiqd'")
    raw = memoryview(data).cast("B")
    size = array(code).itemsize
    n = raw.nbytes // size
    if raw.nbytes != n * size or at < 0 or at + n > len(out):
        raise ValueError(
            f"unpack_column: {raw.nbytes} bytes of {code!r} values do not fit a list of {len(out)} from {at}"
        )
    out[at : at + n] = raw.cast(code).tolist()  # type: ignore[call-overload]
