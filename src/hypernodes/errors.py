"""Error classes.

Every error hypernodes raises itself derives from :class:`HypernodesError` *and*
from the standard-library type a user would already catch for the same mistake
(``ValueError`` for a malformed pipeline, ``KeyError`` for a missing name,
``TypeError`` for a value of the wrong kind). Exceptions raised *by a node* are
never wrapped: they keep their own type and message and get a PEP 678 note
saying which node (and which map item) raised them.
"""

from __future__ import annotations

from concurrent.futures import BrokenExecutor

__all__ = [
    "ArgumentTypeError",
    "CycleError",
    "DependencyError",
    "DuplicateOutputError",
    "ExecutionError",
    "ExecutorSpecError",
    "HyperNodesError",
    "HypernodesError",
    "InputError",
    "InputTypeError",
    "MapSpecError",
    "MissingInputError",
    "NodeDefinitionError",
    "OutputArityError",
    "RemoteError",
    "TypeMismatchError",
    "UnknownOutputError",
    "WiringError",
    "WorkerDied",
]


class HypernodesError(Exception):
    """Base class of every error raised by hypernodes itself."""


class _PlainMessageKeyError(KeyError):
    # KeyError.__str__ repr()s its argument, which would print our sentences in
    # quotes with escaped backticks; these errors carry a sentence, not a key.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NodeDefinitionError(HypernodesError, TypeError):
    """A node or a pipeline member is malformed (not callable, no usable output name...)."""


class WiringError(NodeDefinitionError, ValueError):
    """A node or nested pipeline wired to names that cannot work: a node reading its own
    output (a self-loop), an ``as_node`` mapping or ``map_over`` naming what the pipeline lacks.

    A ``TypeError`` (as every :class:`NodeDefinitionError`) and a ``ValueError`` (as
    the notebook-era version raised for these).
    """


class TypeMismatchError(NodeDefinitionError):
    """``Pipeline(..., type_check="raise")``: a producer's return annotation does not fit the
    annotation of a parameter it feeds (the message names both nodes, both types and the edge)."""


class DuplicateOutputError(HypernodesError, ValueError):
    """Two nodes (or one node twice) produce the same output name."""


class CycleError(HypernodesError, ValueError):
    """The nodes' wiring contains a cycle; ``.cycle`` lists the node names on it."""

    def __init__(self, message: str, cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.cycle = cycle


class MissingInputError(HypernodesError, _PlainMessageKeyError):
    """A node needs a value that no node produces and the call did not give."""


class UnknownOutputError(HypernodesError, _PlainMessageKeyError, ValueError):
    """``output_name`` asks for a name the pipeline does not produce.

    A ``KeyError`` (a name not found) and a ``ValueError`` (what the notebook-era version raised).
    """


class InputError(HypernodesError, ValueError):
    """The ``inputs`` of a call are malformed (unknown names, outputs given as inputs...)."""


class InputTypeError(HypernodesError, TypeError):
    """``Pipeline(..., validate_inputs=True)``: a value given to ``run()``/``map()`` (or an item of
    a mapped column) does not fit the annotation of a parameter that reads it.

    Attributes: ``input`` (the name), ``nodes`` (the readers it does not fit), ``expected``
    (their annotations, as shown), ``found`` (the value's type) and ``item`` (the index in
    the mapped column, or None).
    """

    input: str
    nodes: tuple[str, ...]
    expected: tuple[str, ...]
    found: type
    item: int | None


class MapSpecError(HypernodesError, ValueError):
    """``map_over`` / ``map_mode`` are malformed or the mapped lists do not fit together."""


class ArgumentTypeError(HypernodesError, TypeError):
    """An argument of a call has the wrong type (``inputs`` not a dict, a mapped value not a list...)."""


class ExecutorSpecError(HypernodesError, ValueError, TypeError):
    """An executor spec is neither a known name nor an object with ``submit``.

    A ``ValueError`` for an unknown name and a ``TypeError`` for an object of the
    wrong kind; catching either works.
    """


class OutputArityError(HypernodesError, ValueError):
    """A node with a tuple ``output_name`` returned something that does not unpack into it."""


class RemoteError(HypernodesError):
    """Stands in for an exception raised in a worker process that cannot be rebuilt here.

    Pickle rebuilds an exception by calling its class with ``exc.args``; an exception
    whose ``__init__`` requires more than that (many HTTP and API client errors do)
    cannot make the trip back, and neither can one holding an unpicklable attribute.
    The worker then sends this instead, with what can travel: the original's type
    name, message, traceback text and notes (which node and item raised it).

    Attributes:
        type_name: the original exception's qualified type name (``module.QualName``).
        message: ``str()`` of the original exception.
        remote_traceback: the original's traceback as formatted in the worker.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return (
            f"{self.type_name}: {self.message} (raised in a worker process; pickle cannot rebuild that exception "
            "here, so this stands in for it; its traceback is in .remote_traceback)"
        )


class WorkerDied(HypernodesError, BrokenExecutor):
    """A worker process died (a segfault, ``os._exit``, the OOM killer) while running map item ``item``.

    Found by re-running, on fresh workers, the items of the slice that was running when
    the worker died, in ever smaller pieces, until one item alone kills its worker.
    A ``BrokenExecutor``, as the pool's own error is, so code catching that still works.

    Attributes:
        item: the map item that kills its worker.
    """

    def __init__(self, item: int, detail: str = "") -> None:
        super().__init__(item, detail)
        self.item = item
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"map item {self.item} kills the worker process running it: run alone on a fresh worker, it died again "
            f"(a crash in native code such as a segfault, os._exit() or sys.exit() in a node, or the OS killing the "
            f"worker for lack of memory).{' ' + self.detail if self.detail else ''}"
        )


# Names of the notebook-era version (``hypernodes.exceptions`` there), kept so its code imports.
HyperNodesError = HypernodesError
"""Alias of :class:`HypernodesError` (the notebook-era spelling)."""

DependencyError = MissingInputError
"""Alias of :class:`MissingInputError`: the notebook-era name for "a dependency cannot be satisfied"."""


class ExecutionError(HypernodesError):
    """Never raised: a node's own exception reaches the caller unchanged, with a note naming
    the node. Kept so ``except ExecutionError`` in notebook-era code still imports (the
    notebook-era version defined it and did not raise it either)."""
