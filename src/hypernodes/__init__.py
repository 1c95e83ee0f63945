"""hypernodes: function-DAG pipelines on a compiled scheduling core.

Write plain functions for one item, wire them by parameter name into a
:class:`Pipeline`, and ``run`` them once or ``map`` them over many items.
"""

from __future__ import annotations

from .engine import HypernodesEngine
from .errors import (
    ArgumentTypeError,
    CycleError,
    DuplicateOutputError,
    ExecutorSpecError,
    HypernodesError,
    InputError,
    MapSpecError,
    MissingInputError,
    NodeDefinitionError,
    OutputArityError,
    UnknownOutputError,
)
from .node import Node, node
from .pipeline import Pipeline, PipelineNode

__version__ = "0.1.0"

__all__ = [
    "ArgumentTypeError",
    "CycleError",
    "DuplicateOutputError",
    "ExecutorSpecError",
    "HypernodesEngine",
    "HypernodesError",
    "InputError",
    "MapSpecError",
    "MissingInputError",
    "Node",
    "NodeDefinitionError",
    "OutputArityError",
    "Pipeline",
    "PipelineNode",
    "UnknownOutputError",
    "__version__",
    "node",
]
