"""One validated call: the record a pipeline builds once and every layer below reads by name.

:func:`prepare_run` and :func:`prepare_map` check a call's arguments before any node
runs, fetch the compiled :class:`~hypernodes._graph.Plan` for its shape from the
pipeline's :class:`PlanCache`, and return a :class:`RunCall` or :class:`MapCall`.
The engine, the drivers (``_run/``), the worker processes and the cores all read
that record's fields; nothing below re-validates or re-shapes it.

:class:`Items` is the one owner of the item layout: which slots the mapped values
go into, the columns, zip or product (mixed-radix, last column fastest), and the
item range with its numbering. Slicing a map for executors and shipping a slice
to another process are its methods, so the product arithmetic lives here and in
the two cores' batch loops, nowhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from . import _core
from ._columns import LazyColumn, as_column, column_error, items_of
from ._events import Lookup, Observer
from ._graph import Graph, Plan, compile_plan, ticks
from .errors import ArgumentTypeError, InputError, MapSpecError
from .failures import LIVE, Failure, MapResult, check_on_error, unique

__all__ = [
    "MAP_MODES",
    "CallOptions",
    "HasPlans",
    "Items",
    "MapCall",
    "PlanCache",
    "RunCall",
    "map_mode_message",
    "prepare_map",
    "prepare_run",
]

MAP_MODES = ("zip", "product")
_PLAN_CACHE_SIZE = 256  # distinct call shapes kept per pipeline; real code uses a handful


def map_mode_message(map_mode: Any) -> str:
    """The error text for a ``map_mode`` that is not one of :data:`MAP_MODES`."""
    return f"Unknown map_mode {map_mode!r}; allowed: {', '.join(map(repr, MAP_MODES))}."


class PlanCache:
    """A pipeline's compiled plans, one per call shape (requested outputs, given input names).

    A repeated call shape costs one dict lookup; :func:`compile_plan` runs once per shape.
    Two more dicts hold the shapes that engines may run on the cores' fast paths
    (``run_dict`` / ``map_zip``) without checking them again, filled by
    :func:`prepare_run` / :func:`prepare_map` once a call of that shape has passed
    every check of its names:

    * ``runs``: ``(fast_key(output_name), frozenset(inputs))`` -> plan, for a plan
      without async nodes;
    * ``maps``: ``(fast_key(output_name), fast_key(map_over), frozenset(inputs))`` ->
      ``(plan, mapped, map_slots, shared)`` (the arguments of ``map_zip``), for zip
      maps of a plan without async nodes.

    The values are checked per call (``map_zip`` declines what it cannot run plainly).
    """

    __slots__ = ("_plans", "graph", "maps", "runs", "strict")

    def __init__(self, graph: Graph, strict: bool = True) -> None:
        self.graph = graph
        self.strict = strict  # a given name no node reads: an error (else a warning; see compile_plan)
        self._plans: dict[tuple[tuple[str, ...] | None, frozenset[str]], Plan] = {}
        self.runs: dict[tuple[Any, frozenset[str]], Plan] = {}
        self.maps: dict[tuple[Any, Any, frozenset[str]], MapShape] = {}

    def get(self, outputs: tuple[str, ...] | None, given: frozenset[str], verb: str) -> Plan:
        """The plan computing ``outputs`` (None: all) from the inputs named ``given``.

        Raises:
            UnknownOutputError, InputError, MissingInputError: see :func:`compile_plan`.
        """
        key = (outputs, given)
        plan = self._plans.get(key)
        if plan is None:
            plan = compile_plan(self.graph, outputs, given, verb, self.strict)
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
                self.runs.clear()
                self.maps.clear()
            self._plans[key] = plan
        return plan

    def find_run(self, output_name: Any, inputs: Mapping[str, Any]) -> Plan | None:
        """The remembered ``run()`` plan for this shape; None if there is none or a name is unhashable.

        Engines first try ``runs.get((output_name, frozenset(inputs)))`` inline (a name, None
        or a tuple is its own key) and call this when that raised TypeError (a list of names)."""
        try:
            return self.runs.get((fast_key(output_name), frozenset(inputs)))
        except TypeError:  # the general path names what is wrong
            return None

    def find_map(self, output_name: Any, map_over: Any, inputs: Mapping[str, Any]) -> MapShape | None:
        """The remembered zip ``map()`` shape, as :meth:`find_run` (the inline key: ``(output_name,
        map_over, frozenset(inputs))``)."""
        try:
            return self.maps.get((fast_key(output_name), fast_key(map_over), frozenset(inputs)))
        except TypeError:
            return None

    def remember_run(self, output_name: Any, given: frozenset[str], plan: Plan) -> None:
        """Record a checked ``run()`` shape for the fast path (see the class docstring)."""
        if not plan.has_async:
            _bounded_put(self.runs, (fast_key(output_name), given), plan)

    def remember_map(self, output_name: Any, map_over: Any, given: frozenset[str], shape: MapShape) -> None:
        """Record a checked zip ``map()`` shape for the fast path (see the class docstring)."""
        if not shape[0].has_async:
            _bounded_put(self.maps, (fast_key(output_name), fast_key(map_over), given), shape)


def _bounded_put(table: dict[Any, Any], key: Any, value: Any) -> None:
    if len(table) >= _PLAN_CACHE_SIZE:
        table.clear()
    table[key] = value


Column = tuple[Any, ...] | LazyColumn
"""A mapped column as a map holds it: its items, or a numpy or Arrow column's buffer."""

MapShape = tuple[Plan, tuple[str, ...], tuple[int, ...], tuple[tuple[str, int], ...]]
"""A zip map's checked shape: the plan, the mapped names, their slots, the shared inputs' (name, slot)."""


class CallOptions:
    """What a pipeline asks of each of its calls besides its nodes (``Pipeline.options``).

    An engine reads a pipeline's :class:`PlanCache` and these, nothing else. The
    pipeline makes a new record when one of them is assigned; a record's fields
    never change (``callbacks`` is the pipeline's own list: one appended to it is seen).

    Attributes:
        name: the pipeline's name (None: unnamed).
        id: its id in callbacks (its name, or one derived from its nodes).
        callbacks: the callbacks that see each call (the parent's, when the pipeline gave none).
        cache: the cache its calls use (its own, else its parent's); None: the one
            an enclosing call passes down, if any.
        on_error: what a ``map()`` that does not say does when an item fails.
        validator: checks each call's inputs against the annotations (an object with
            ``run_inputs(inputs)`` and ``map_inputs(inputs, map_over)``); None: no checks.
        plain: no cache and no checks: with no callbacks either, the engines' fast paths
            may take the call (unless an enclosing call observes it or passes a cache down).
    """

    __slots__ = ("cache", "callbacks", "id", "name", "on_error", "plain", "validator")

    def __init__(
        self,
        name: str | None,
        id: str,
        callbacks: Sequence[Any],
        cache: Any,
        on_error: str,
        validator: Any,
    ) -> None:
        self.name = name
        self.id = id
        self.callbacks = callbacks
        self.cache = cache
        self.on_error = on_error
        self.validator = validator
        self.plain = cache is None and validator is None

    def __repr__(self) -> str:
        return (
            f"CallOptions(id={self.id!r}, callbacks={len(self.callbacks)}, cache={self.cache!r}, "
            f"on_error={self.on_error!r}, validated={self.validator is not None})"
        )


class HasPlans(Protocol):
    """What an engine reads of a pipeline: its plans and its call options."""

    plans: PlanCache
    options: CallOptions


class Items:
    """The items of a map (or a slice of them): where each item's mapped values come from.

    Item ``i`` (``lo <= i < hi``, in the numbering of ``columns``) puts, into slot
    ``map_slots[j]``, element ``i`` of ``columns[j]`` (zip), or the ``j``-th digit of
    ``i`` in the mixed radix of the column lengths (product, last column fastest, as
    ``itertools.product``). ``base + i`` is the item's index in the whole map: a
    slice shipped to a worker process carries only its rows of zip columns, numbered
    from 0, with ``base`` where they started.
    """

    __slots__ = ("_made", "base", "hi", "lengths", "lo", "map_slots", "product", "sources")

    def __init__(
        self,
        map_slots: tuple[int, ...],
        columns: tuple[Column, ...],
        product: bool,
        lo: int,
        hi: int,
        base: int = 0,
    ) -> None:
        self.map_slots = map_slots
        self.sources = columns  # as given: tuples, or LazyColumns whose items are made on first use
        self.lengths = tuple(len(c) for c in columns)
        self.product = product
        self.lo = lo
        self.hi = hi
        self.base = base
        # the columns of items, shared by the slices cut from these items (made once per process)
        self._made: list[tuple[tuple[Any, ...], ...] | None] = [
            None if any(type(c) is not tuple for c in columns) else columns  # type: ignore[list-item]
        ]

    @property
    def columns(self) -> tuple[tuple[Any, ...], ...]:
        """The mapped columns' items (a :class:`~hypernodes._columns.LazyColumn`'s made here, once)."""
        made = self._made[0]
        if made is None:
            made = self._made[0] = tuple(items_of(c) for c in self.sources)
        return made

    def __len__(self) -> int:
        return self.hi - self.lo

    def __repr__(self) -> str:
        mode = "product" if self.product else "zip"
        return f"<Items {mode} [{self.lo}, {self.hi}) base {self.base}, {len(self.sources)} columns>"

    def __getstate__(self) -> tuple[Any, ...]:
        # the sources: a LazyColumn travels as its buffer and arrives as a tuple of items
        return (self.map_slots, self.sources, self.product, self.lo, self.hi, self.base)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def between(self, lo: int, hi: int) -> Items:
        """Items ``lo..hi-1`` of these (same numbering, same columns)."""
        part = Items(self.map_slots, self.sources, self.product, lo, hi, self.base)
        part._made = self._made  # one set of items per process, whichever slice makes it
        return part

    def split(self, n_workers: int, tasks_per_worker: int = 1) -> list[Items]:
        """Contiguous slices for executors, sized by ``core.plan_batches``."""
        slices = _core.plan_batches(len(self), n_workers, tasks_per_worker)
        return [self.between(self.lo + lo, self.lo + hi) for lo, hi in slices]

    def detached(self) -> Items:
        """These items as a self-contained slice to send elsewhere.

        Zip columns are cut to the slice's rows (renumbered from 0, ``base`` moved
        along; a LazyColumn's rows stay a buffer), so a worker receives its share
        only; product columns travel whole (they are short; their product is long).
        """
        if self.product or (self.lo == 0 and all(n == self.hi for n in self.lengths)):
            return self
        lo, hi = self.lo, self.hi
        return Items(self.map_slots, tuple(c[lo:hi] for c in self.sources), False, 0, hi - lo, self.base + lo)

    def fill(self, values: list[Any], i: int) -> None:
        """Put item ``i``'s mapped values into their slots of ``values``."""
        if not self.product:
            for slot, column in zip(self.map_slots, self.columns):
                values[slot] = column[i]
            return
        for j in range(len(self.columns) - 1, -1, -1):  # last column fastest, as itertools.product
            i, idx = divmod(i, self.lengths[j])
            values[self.map_slots[j]] = self.columns[j][idx]


class RunCall:
    """A validated ``run()``: the plan and the call's slots with the inputs filled in."""

    __slots__ = ("lookup", "observer", "plan", "values")

    keep_going = False  # a run() raises a node's error (read by the node runner, as a MapCall's)

    def __init__(self, plan: Plan, values: list[Any], observer: Observer | None, lookup: Lookup | None) -> None:
        self.plan = plan
        self.values = values
        self.observer = observer
        self.lookup = lookup

    def results(self) -> dict[str, Any]:
        """``{output name: value}`` once the nodes have run."""
        values = self.values
        return {name: values[slot] for name, slot in self.plan.result_pairs}


class MapCall:
    """A validated ``map()``: the plan, the broadcast inputs filled in once, and the items.

    ``values`` is the slot template every item starts from (mapped slots empty, so
    the mapped lists never travel inside it); ``items`` is the whole map. ``keep_going``
    is ``on_error == "continue"``: the drivers then run the loops that store a failing
    item's error markers and go on (``failures.py``).

    The record travels whole, down to the loops: a slice of the map is the same call
    on fewer items (:meth:`slice`, :meth:`on`), and worker processes receive its
    :meth:`remote` form, pickled once per call, each task adding its own items.
    """

    __slots__ = ("items", "keep_going", "lookup", "mapped", "observer", "plan", "relabel", "values")

    def __init__(
        self,
        plan: Plan,
        values: list[Any],
        items: Items,
        observer: Observer | None,
        lookup: Lookup | None,
        keep_going: bool = False,
        mapped: tuple[str, ...] = (),
    ) -> None:
        self.plan = plan
        self.values = values
        self.items = items
        self.observer = observer
        self.lookup = lookup
        self.keep_going = keep_going
        self.mapped = mapped  # the mapped inputs' names, in the order of items.columns
        self.relabel = False  # a Failure given as an input: markers are renumbered to their items

    def on(self, items: Items) -> MapCall:
        """This call on ``items`` (a slice of its own, or a slice a worker received) instead of its own."""
        part = MapCall(self.plan, self.values, items, self.observer, self.lookup, self.keep_going, self.mapped)
        part.relabel = self.relabel
        return part

    def slice(self, lo: int, hi: int) -> MapCall:
        """This call on its items ``lo..hi-1`` (same numbering, same columns)."""
        return self.on(self.items.between(lo, hi))

    def remote(self) -> MapCall:
        """This call as worker processes receive it: its observer is the recording twin that
        sends the events back (``Observer.remote``). It pickles without its items: each task
        carries its own slice, given to :meth:`on` where it runs."""
        observer = self.observer
        return MapCall(
            self.plan,
            self.values,
            self.items,
            None if observer is None else observer.remote(),
            self.lookup,
            self.keep_going,
        )

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.plan, self.values, self.observer, self.lookup, self.keep_going)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        plan, values, observer, lookup, keep_going = state
        self.__init__(plan, values, _NO_ITEMS, observer, lookup, keep_going)  # type: ignore[misc]

    def results(self, columns: list[list[Any]]) -> MapResult:
        """``{output name: [value per item]}`` from one column per requested output, as a
        :class:`~hypernodes.failures.MapResult` (listing the failures when the call keeps going)."""
        items = self.items
        failures: tuple[Failure, ...] = ()
        if self.keep_going:
            if self.relabel:
                columns = _renumbered(columns)
            failures = unique(_core.find_failures(columns))
        return MapResult(zip(self.plan.result_names, columns), failures, (self.mapped, items.sources, items.product))


_NO_ITEMS = Items((), (), False, 0, 0)
"""The items of a call that arrived in a worker process, until a task's slice is given (``MapCall.on``)."""


def _renumbered(columns: list[list[Any]]) -> list[list[Any]]:
    """``columns`` with each marker that came in as an input made the failure of the item it is in now."""
    made: dict[tuple[int, int], Failure] = {}
    for column in columns:
        for i, value in enumerate(column):
            if type(value) is Failure and value.item != i:
                key = (id(value), i)
                found = made.get(key)
                if found is None:
                    found = made[key] = value.at(i)
                column[i] = found
    return columns


def fast_key(names: Any) -> Any:
    """``output_name`` or ``map_over`` as part of a :class:`PlanCache` fast-path key: a
    string or None as it is, a list or tuple as a tuple (TypeError: unhashable)."""
    return names if names is None or type(names) is str else tuple(names)


def _check_inputs(inputs: Any, verb: str) -> Mapping[str, Any]:
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise ArgumentTypeError(
            f"{verb} takes inputs as a dict of name -> value, got {type(inputs).__name__}: inputs={inputs!r:.80}"
        )
    return inputs


def _outputs_key(output_name: Any) -> tuple[str, ...] | None:
    if output_name is None:
        return None
    if isinstance(output_name, str):
        return (output_name,)
    if isinstance(output_name, (list, tuple)) and all(isinstance(o, str) for o in output_name):
        if not output_name:
            raise ArgumentTypeError("output_name=[] asks for nothing; pass None for every output, or names.")
        return tuple(output_name)
    raise ArgumentTypeError(
        f"output_name must be None, a name, or a list of names; got {type(output_name).__name__} {output_name!r}."
    )


def prepare_run(
    plans: PlanCache,
    inputs: Any,
    output_name: Any,
    observer: Observer | None = None,
    lookup: Lookup | None = None,
) -> RunCall:
    """Check a ``run()`` call and build its record (see :meth:`Pipeline.run` for the arguments).

    Raises:
        ArgumentTypeError, UnknownOutputError, InputError, MissingInputError: before any node runs.
    """
    inputs = _check_inputs(inputs, "run()")
    given = frozenset(inputs)
    plan = plans.get(_outputs_key(output_name), given, "run()")
    values = list(plan.template)
    for name, slot in plan.input_pairs:
        values[slot] = inputs[name]
    if LIVE[0]:  # a Failure exists in this process: it may be one of the inputs
        for name, _ in plan.input_pairs:
            _refuse_failures_in(name, inputs[name], "run()")
    plans.remember_run(output_name, given, plan)
    return RunCall(plan, values, observer, lookup)


def _mapped_names(map_over: Any) -> tuple[str, ...]:
    if isinstance(map_over, str):
        return (map_over,)
    if isinstance(map_over, (list, tuple)) and map_over and all(isinstance(m, str) for m in map_over):
        return tuple(map_over)
    raise ArgumentTypeError(
        f"map() needs map_over: an input name or a non-empty list of input names; got {map_over!r}."
    )


def prepare_map(
    plans: PlanCache,
    inputs: Any,
    map_over: Any,
    map_mode: Any,
    output_name: Any,
    observer: Observer | None = None,
    lookup: Lookup | None = None,
    on_error: Any = "raise",
) -> MapCall:
    """Check a ``map()`` call and build its record (see :meth:`Pipeline.map` for the arguments).

    The mapped columns are snapshotted (as tuples of their items, see ``_columns``):
    the user's columns may change while the map runs without affecting it.

    Raises:
        ArgumentTypeError, MapSpecError, and the errors of :func:`prepare_run`: before any node runs.
    """
    inputs = _check_inputs(inputs, "map()")
    keep_going = on_error != "raise" and check_on_error(on_error, "map()") == "continue"
    mapped = _mapped_names(map_over)
    repeated = sorted({m for m in mapped if mapped.count(m) > 1})
    if repeated:
        raise MapSpecError(f"map_over names {ticks(repeated)} more than once.")
    if map_mode not in MAP_MODES:
        raise MapSpecError(map_mode_message(map_mode))
    absent = [m for m in mapped if m not in inputs]
    if absent:
        raise MapSpecError(
            f"map_over names {ticks(absent)}, which {'is' if len(absent) == 1 else 'are'} not in inputs. "
            f"Inputs given: {ticks(list(inputs))}."
        )
    found: list[Column] = []
    for m in mapped:
        value = inputs[m]
        column = as_column(value)
        if column is None:
            raise column_error(value, f"map_over input `{m}`")
        found.append(column)
    lengths = [len(c) for c in found]
    product = map_mode == "product"
    if not product and len(set(lengths)) > 1:
        shown = ", ".join(f"`{m}`: {n}" for m, n in zip(mapped, lengths))
        raise MapSpecError(
            f"map_mode='zip' needs lists of equal length, got {shown}. Use map_mode='product' for every combination."
        )
    given = frozenset(inputs)
    plan = plans.get(_outputs_key(output_name), given, "map()")
    # One extra scratch slot receives mapped inputs that the (pruned) plan never
    # reads, so the item numbering still spans every mapped list.
    values = [*plan.template, None]
    slot_of = dict(plan.input_pairs)
    for name, slot in plan.input_pairs:
        if name not in mapped:  # a mapped slot is filled per item (and its list must not travel to workers)
            value = values[slot] = inputs[name]
            if isinstance(value, Iterator):
                raise ArgumentTypeError(
                    f"Shared input `{name}` is a one-shot iterator ({type(value).__name__}): every item reads "
                    "a shared input, and the first item would use it up. Pass a list (list(...) of it), or "
                    f"map over it with map_over={[*mapped, name]!r}."
                )
    map_slots = tuple(slot_of.get(m, plan.n_slots) for m in mapped)  # n_slots: the scratch slot
    n_items = 1
    for n in lengths:
        n_items = n_items * n if product else n
    if n_items > sys.maxsize:
        raise MapSpecError(f"map_mode='product' of lists of lengths {lengths} is {n_items} items; too many to run.")
    columns = tuple(found)
    relabel = False
    if LIVE[0]:  # a Failure exists in this process: it may be among the inputs
        relabel = _failed_inputs(plan, inputs, mapped, columns, product, keep_going)
        if relabel and not product:
            columns = tuple(
                tuple(v.at(i) if type(v) is Failure else v for i, v in enumerate(c))
                if type(c) is tuple and Failure in map(type, c)
                else c
                for c in columns
            )
    if not product:
        shared = tuple((name, slot) for name, slot in plan.input_pairs if name not in mapped)
        plans.remember_map(output_name, map_over, given, (plan, mapped, map_slots, shared))
    call = MapCall(plan, values, Items(map_slots, columns, product, 0, n_items), observer, lookup, keep_going, mapped)
    call.relabel = relabel
    return call


def _failure_message(failure: Failure, where: str) -> str:
    return (
        f"{where} is a Failure, not a value: node `{failure.node}` failed for item {failure.item} of an earlier "
        f"map with {failure.type_name}: {failure.message:.300}. Pass only the good items on (MapResult.good(), "
        "good_items), or map with on_error='continue' to carry the failure on as that item's failure."
    )


def _refuse_failures_in(name: str, value: Any, verb: str) -> None:
    """Raise if ``value`` (a call's input) is a Failure or a list or tuple holding one."""
    if type(value) is Failure:
        raise InputError(_failure_message(value, f"{verb} input `{name}`")) from value.error
    if type(value) in (list, tuple) and Failure in map(type, value):
        i, found = next((i, v) for i, v in enumerate(value) if type(v) is Failure)
        raise InputError(_failure_message(found, f"Element {i} of {verb} input `{name}`")) from found.error


def _failed_inputs(
    plan: Plan,
    inputs: Mapping[str, Any],
    mapped: tuple[str, ...],
    columns: tuple[Column, ...],
    product: bool,
    keep_going: bool,
) -> bool:
    """Whether a Failure is among the inputs the plan reads (then the map's markers are renumbered).

    A Failure among the mapped values or as a shared input is its item's failure under
    ``on_error="continue"`` (the loops pass a marker on); under "raise", and inside a
    shared list, it is refused.

    Raises:
        InputError: a Failure given where it cannot be carried on as an item's failure.
    """
    read = {name for name, _ in plan.input_pairs}
    found = False
    for name in read:
        if name in mapped:
            column = columns[mapped.index(name)]
            if type(column) is tuple and Failure in map(type, column):  # a LazyColumn holds no Failure (no objects)
                if not keep_going:
                    i, failure = next((i, v) for i, v in enumerate(column) if type(v) is Failure)
                    where = f"Element {i} of map() input `{name}`" if product else f"map() input `{name}`, item {i},"
                    raise InputError(_failure_message(failure, where)) from failure.error
                found = True
        elif type(inputs[name]) is Failure and keep_going:
            found = True
        else:
            _refuse_failures_in(name, inputs[name], "map()")
    return found
