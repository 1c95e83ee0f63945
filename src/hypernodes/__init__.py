"""hypernodes: function-DAG pipelines on a compiled scheduling core.

Write plain functions for one item, wire them by parameter name into a
:class:`Pipeline`, and ``run`` them once or ``map`` them over many items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._graph import UnusedInputWarning
from ._resources import Resource
from ._typecheck import TypeMismatchWarning
from .cache import DiskCache, MemoryCache
from .callbacks import CallbackContext, PipelineCallback
from .engine import Engine, HypernodesEngine
from .errors import (
    ArgumentTypeError,
    CycleError,
    DependencyError,
    DuplicateOutputError,
    ExecutionError,
    ExecutorSpecError,
    HyperNodesError,
    HypernodesError,
    InputError,
    InputTypeError,
    MapSpecError,
    MissingInputError,
    NodeDefinitionError,
    OutputArityError,
    RemoteError,
    TypeMismatchError,
    UnknownOutputError,
    WiringError,
    WorkerDied,
)
from .failures import Failure, MapResult
from .node import Node, node
from .pipeline import Pipeline, PipelineNode

if TYPE_CHECKING:  # for type checkers only; at run time __getattr__ loads them
    from .engines.dask import DaskEngine
    from .viz import DESIGN_STYLES, GraphvizStyle, build_graph, visualize

__version__ = "0.5.0"

# Loaded on first use, not here: pictures and Dask are optional, and `import hypernodes`
# must not pay for viz.py or import graphviz or distributed.
_LAZY_VIZ = ("DESIGN_STYLES", "GraphvizStyle", "build_graph", "visualize")


def __getattr__(name: str) -> Any:
    if name == "DaskEngine":
        from .engines.dask import DaskEngine

        return DaskEngine
    if name in _LAZY_VIZ:
        from . import viz

        return getattr(viz, name)
    raise AttributeError(f"module 'hypernodes' has no attribute {name!r}")


__all__ = [
    "DESIGN_STYLES",
    "ArgumentTypeError",
    "CallbackContext",
    "CycleError",
    "DaskEngine",
    "DependencyError",
    "DiskCache",
    "DuplicateOutputError",
    "Engine",
    "ExecutionError",
    "ExecutorSpecError",
    "Failure",
    "GraphvizStyle",
    "HyperNodesError",
    "HypernodesEngine",
    "HypernodesError",
    "InputError",
    "InputTypeError",
    "MapResult",
    "MapSpecError",
    "MemoryCache",
    "MissingInputError",
    "Node",
    "NodeDefinitionError",
    "OutputArityError",
    "Pipeline",
    "PipelineCallback",
    "PipelineNode",
    "RemoteError",
    "Resource",
    "TypeMismatchError",
    "TypeMismatchWarning",
    "UnknownOutputError",
    "UnusedInputWarning",
    "WiringError",
    "WorkerDied",
    "__version__",
    "build_graph",
    "node",
    "visualize",
]
