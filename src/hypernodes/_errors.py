"""Helpers the package's modules share about errors: notes on a node's exception, switch
checks, the errors the cores raise for a node's result. Private: ``errors`` holds the classes
users catch, and only them.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from .errors import NodeDefinitionError, OutputArityError

__all__ = ["FROM_CALLBACK", "add_note", "check_bool", "coroutine_returned", "note_node", "unpack_row"]


FROM_CALLBACK = "__hypernodes_from_callback__"
"""The attribute marking an exception a callback's hook raised: it fails the call, never an item."""


if sys.version_info >= (3, 11):

    def add_note(exc: BaseException, note: str) -> None:
        """Attach ``note`` to ``exc`` (PEP 678); never raises, so a note cannot replace the exception."""
        with contextlib.suppress(Exception):  # e.g. a user exception whose __notes__ is not a list
            exc.add_note(note)

else:  # pragma: no cover - exercised on 3.10 only

    def add_note(exc: BaseException, note: str) -> None:
        """Attach ``note`` to ``exc`` (PEP 678 semantics, stored by hand before 3.11); never raises."""
        notes = getattr(exc, "__notes__", None)
        if notes is None:
            notes = []
            try:
                exc.__notes__ = notes  # type: ignore[attr-defined]
            except Exception:
                return
        if isinstance(notes, list):
            notes.append(note)


def check_bool(value: Any, option: str, where: str, error: type[Exception] = TypeError) -> bool:
    """``value`` if it is True or False: an option that is a switch takes a bool, never a truthy value.

    Raises:
        error (a ``TypeError`` subclass): anything else (``cache="no"`` would otherwise switch it on).
    """
    if type(value) is not bool:
        raise error(f"{where}: {option} must be True or False, got {type(value).__name__} {value!r:.60}.")
    return value


def note_node(exc: BaseException, name: str, item: int = -1) -> None:
    """Note on ``exc`` that node ``name`` raised it (in map item ``item`` when >= 0)."""
    where = f"node `{name}`" if item < 0 else f"node `{name}`, map item {item}"
    add_note(exc, f"hypernodes: raised in {where}")


def coroutine_returned(result: Any, name: str) -> NodeDefinitionError:
    """The error for plain (non-async) node ``name`` returning the coroutine ``result``; closes it.

    Awaiting it for the node would hide that the node itself never waits (and would
    not run concurrently, as an ``async def`` node does); storing it would hand
    un-awaited coroutines to the next node. Closing it stops the "never awaited" warning.
    """
    close = getattr(result, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
    return NodeDefinitionError(
        f"Node `{name}` is a plain function but returned a coroutine ({getattr(result, '__qualname__', result)!r}), "
        "which hypernodes does not await for it. Make the node `async def` and await the call inside "
        "(`async def f(x): return await client.get(x)`), or call a synchronous API."
    )


def unpack_row(result: object, n_outputs: int, name: str) -> tuple[object, ...]:
    """The values of a tuple-output node's ``result``, checked against its ``n_outputs`` names.

    Returns a private tuple: the caller stores it into slots, and storing can run
    user code (``__del__`` of the values it replaces) that could change a list.

    Raises:
        OutputArityError: ``result`` is not a tuple or list of ``n_outputs`` values.
    """
    if not isinstance(result, (tuple, list)):
        raise OutputArityError(
            f"Node `{name}` has {n_outputs} output names and must return a tuple (or list) of {n_outputs} "
            f"values, but returned {type(result).__name__}."
        )
    row = tuple(result)
    if len(row) != n_outputs:
        raise OutputArityError(f"Node `{name}` has {n_outputs} output names but returned a tuple of {len(row)}.")
    return row
