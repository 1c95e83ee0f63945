"""The drivers: how a validated call (``_call``) runs on a runtime's backends.

They never import the engine or the pipeline; the engine hands each call record
down with its :class:`~hypernodes._run.runtime.Runtime`.

* :func:`run_one`: the nodes of one ``run()``: the cores' node loop, or a
  node runner (``nodes.py``) on the node backend.
* :func:`run_map`: the items of one ``map()`` (``maps.py`` chooses how).
"""

from __future__ import annotations

from .._call import RunCall
from .._resources import MADE, resolved
from .maps import run_map
from .nodes import node_runner
from .runtime import FuncTable, Runtime

__all__ = ["FuncTable", "Runtime", "run_map", "run_one"]


def run_one(runtime: Runtime, call: RunCall) -> None:
    """Run the nodes of ``call`` once, filling ``call.values``."""
    plan = call.plan
    # the table is plan.funcs without async nodes or an observer (which retrying nodes report to)
    funcs = runtime.funcs(plan, call.observer) if plan.has_async or call.observer is not None else plan.funcs
    runner = None if runtime.nodes.inline else node_runner(runtime.nodes, call, funcs, runtime.core)
    if MADE[0] and (runner is None or runner.payload is None):  # out-of-process nodes resolve it there
        call.values = list(resolved(call.values))
    if runner is None:
        runtime.core.run_one(plan, funcs, call.values, call.observer, call.lookup)
    else:
        runner.run(call.values)
