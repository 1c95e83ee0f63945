"""The worker side of a node task: one node of one item, called in a worker process.

A node executor that runs in other processes (``node_executor="parallel"``, or Dask's
``node_tasks=True``) gets each node as a :class:`~.tasks.NodeTask`: the call's pickled
nodes (its payload, unpickled once per call in each worker) and the node's arguments.
The result goes back pickled by the worker (an output that cannot travel is named
here), and with an observing caller the node's retried attempts travel with it.
"""

from __future__ import annotations

import contextlib
from types import CoroutineType
from typing import Any

from .._errors import add_note, coroutine_returned
from .._policy import Policy
from .._resources import MADE, resolved
from ..executors._loop import AwaitOn, WorkerLoop
from ..executors._worker import check_parent
from ..node import Node
from .payload import RESULT_ADVICE, load, pickled, portable, unpicklable_index
from .tasks import NodeTask

__all__ = ["RETRIES_ATTR", "RetryLog", "remote_node"]


RETRIES_ATTR = "__hypernodes_retries__"
"""The attribute under which a node task that failed in a worker attaches its retried attempts."""


class RetryLog:
    """Stands in, in a worker process, for the call's observer of a node's retries.

    A node task's :class:`~hypernodes._policy.Policy` reports each retried attempt
    here; the task sends them back with its result (or on its exception, under
    ``RETRIES_ATTR``), and the caller reports them to its observer with the item.
    """

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts: list[tuple[Exception, int, float]] = []

    def node_retry(self, node: int, item: int, exc: Exception, attempt: int, delay: float) -> None:
        self.attempts.append((exc, attempt, delay))  # a Policy retries only an Exception

    def portable(self) -> list[tuple[Exception, int, float]]:
        """The attempts, each exception as the caller's process can unpickle it (or its stand-in)."""
        return [(portable(exc) or exc, attempt, delay) for exc, attempt, delay in self.attempts]


def remote_node(task: NodeTask) -> bytes | tuple[bytes, list[tuple[Exception, int, float]]]:
    """Worker side of a node task: node ``task.node`` of the pickled nodes, called on ``task.args``;
    its result pickled.

    The caller reads the result with ``pickle.loads``. A result that cannot be pickled
    fails here, noted with the output and node; an exception pickle could not rebuild
    in the caller's process is raised as a :class:`~hypernodes.errors.RemoteError`.
    With ``task.retries`` (the caller observes the call), the node's retried attempts come
    back too: ``(pickled result, attempts)``, or on the exception under ``RETRIES_ATTR``.
    """
    check_parent()  # a task queued before the caller died never starts
    nodes: tuple[Node[..., Any], ...] = load(task.token, task.payload)
    loop = WorkerLoop()  # started only if the node is async
    log = RetryLog() if task.retries else None
    k, args = task.node, task.args
    try:
        node = nodes[k]
        if MADE[0]:  # a Resource among the arguments: this process's instance
            args = tuple(resolved(args))
        call = node._call
        if log is not None and isinstance(call, Policy):
            call = call.bound(log, k)
        result = (AwaitOn(call, loop) if node.is_async else call)(*args)  # async nodes awaited
        if type(result) is CoroutineType:
            raise coroutine_returned(result, node.name)
        try:
            data = pickled(result)
        except Exception as exc:
            outputs = node.outputs
            i = unpicklable_index(result) if len(outputs) > 1 and isinstance(result, (tuple, list)) else -1
            what = f"output `{outputs[i] if 0 <= i < len(outputs) else outputs[0]}`"
            add_note(exc, f"hypernodes: {what} of node `{node.name}` cannot be pickled. {RESULT_ADVICE}")
            raise
        return data if log is None else (data, log.portable())
    except Exception as exc:
        stand_in = portable(exc)
        error = exc if stand_in is None else stand_in
        if log is not None and log.attempts:
            with contextlib.suppress(Exception):  # an exception that takes no attributes loses them, never itself
                setattr(error, RETRIES_ATTR, log.portable())
        if stand_in is None:
            raise
        raise stand_in from exc
    finally:
        loop.close()
