"""The tasks the drivers send to worker processes, as named records.

A remote executor (loky, a process pool, Dask) runs one of two functions on one of
these: :func:`~.slices.remote_batch` on a :class:`SliceTask` (a slice of a map's
items through the whole pipeline) or :func:`~.node_task.remote_node` on a
:class:`NodeTask` (one node of one item). Both carry their call's *payload* (the
pickled plan or nodes and broadcast inputs, the same for every task of a call)
under a token, so a worker unpickles it once per call (``payload.load``).

A backend that treats tasks specially reads them by type, never by the shape of
their arguments: Dask sends the payload once per call as a keyed task that every
task depends on (:meth:`~Task.carrying` puts it back on the worker), keys each
task (:attr:`~Task.key`) and names it in its messages (:meth:`~Task.what`).

A slice's zip columns travel as its rows, and a column of plain numbers as one
buffer (:class:`ShippedItems`), cut from the whole column packed once per call.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._call import Items
from .._columns import unpack_items

if TYPE_CHECKING:
    from .payload import Spilled

__all__ = ["NodeTask", "ShippedItems", "SliceTask", "Task"]


class Task:
    """What the tasks of one call share: the payload and its token."""

    __slots__ = ("payload", "token")

    def __init__(self, token: str, payload: Any) -> None:
        self.token = token  # one per call: a worker unpickles each token's payload once
        self.payload = payload  # bytes, a Spilled file, or (on a Dask worker) what its payload task returned

    @property
    def key(self) -> str:
        """This task's part of a cluster's task key (unique within its call)."""
        raise NotImplementedError

    def what(self) -> str:
        """The work this task does, as messages name it: ``map items 3..5``, ``node `embed```."""
        raise NotImplementedError

    def carrying(self, payload: Any) -> Task:
        """This task with ``payload`` in place of its own (a cluster delivers it apart)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.what()}>"


class SliceTask(Task):
    """A slice of a process map's items: run by ``remote_batch`` through the whole pipeline."""

    __slots__ = ("items",)

    def __init__(self, token: str, payload: bytes | Spilled, items: Items | ShippedItems) -> None:
        super().__init__(token, payload)
        self.items = items  # numbered from 0 with ``base`` where the slice starts in the map

    @property
    def key(self) -> str:
        return str(self.items.base + self.items.lo)

    def what(self) -> str:
        items = self.items
        return f"map items {items.base + items.lo}..{items.base + items.hi - 1}"

    def carrying(self, payload: Any) -> SliceTask:
        return SliceTask(self.token, payload, self.items)

    def __getstate__(self) -> tuple[Any, ...]:
        return self.token, self.payload, self.items

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.token, self.payload, self.items = state


class ShippedItems:
    """A slice of a zip map's items on its way to a worker: columns of plain numbers as one buffer each.

    The caller packs each mapped list once per call (``core.pack_column``) and
    cuts every slice's rows out of its buffer; the worker reads them back
    (:meth:`items`). Other columns travel as the slice's rows, as
    :meth:`~hypernodes._call.Items.detached` cuts them.
    """

    __slots__ = ("base", "codes", "columns", "hi", "lo", "map_slots", "order")

    def __init__(self, items: Items, packed: Sequence[tuple[str, bytes] | None]) -> None:
        lo, hi = items.lo, items.hi
        self.map_slots = items.map_slots
        # numbered as a detached slice: rows 0..hi-1, the first being map item `base`
        self.base, self.lo, self.hi = items.base + lo, 0, hi - lo
        self.order = sys.byteorder
        self.codes = tuple("" if p is None else p[0] for p in packed)  # "": the column's own rows
        self.columns: tuple[Any, ...] = tuple(  # the rows (a tuple), or their buffer (bytes)
            column[lo:hi] if p is None else p[1][lo * _SIZES[p[0]] : hi * _SIZES[p[0]]]
            for column, p in zip(items.sources, packed)  # sources: a LazyColumn's rows travel as its buffer
        )

    def items(self) -> Items:
        """The slice, as the worker runs it (numbered from 0, ``base`` where it starts in the map)."""
        columns: tuple[tuple[Any, ...], ...] = tuple(
            unpack_items(code, column, self.order) if code else column for code, column in zip(self.codes, self.columns)
        )
        return Items(self.map_slots, columns, False, 0, self.hi, self.base)


_SIZES = {code: array(code).itemsize for code in "bhiqd"}  # bytes per value of each packed typecode


class NodeTask(Task):
    """One node of one item: run by ``remote_node`` on the pickled nodes."""

    __slots__ = ("args", "item", "name", "node", "retries")

    def __init__(
        self, token: str, payload: Any, node: int, name: str, item: int, args: tuple[Any, ...], retries: bool
    ) -> None:
        super().__init__(token, payload)
        self.node = node  # its index in the pickled nodes (the plan's order)
        self.name = name
        self.item = item  # the map item (-1 in a run()), for messages
        self.args = args
        self.retries = retries  # the caller observes the call: the node's retried attempts come back too

    @property
    def key(self) -> str:
        return f"node-{self.node}" if self.item < 0 else f"node-{self.node}-{self.item}"

    def what(self) -> str:
        return f"node `{self.name}`" + (f", map item {self.item}" if self.item >= 0 else "")

    def carrying(self, payload: Any) -> NodeTask:
        return NodeTask(self.token, payload, self.node, self.name, self.item, self.args, self.retries)

    def __getstate__(self) -> tuple[Any, ...]:
        return self.token, self.payload, self.node, self.name, self.item, self.args, self.retries

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.token, self.payload, self.node, self.name, self.item, self.args, self.retries = state
