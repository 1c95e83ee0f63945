"""Engines: what runs a pipeline's calls, in one place.

``Engine`` is the abstract engine; ``HypernodesEngine`` runs on this machine's
threads, event loop and processes; ``DaskEngine`` (``engines/dask.py``, loaded on
first use, and only then importing ``distributed``) runs on a Dask cluster. The
executor names re-exported here are the notebook-era version's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine import Engine, HypernodesEngine
from ..executors import DEFAULT_WORKERS, AsyncExecutor, SequentialExecutor

if TYPE_CHECKING:
    from .dask import DaskEngine

__all__ = ["DEFAULT_WORKERS", "AsyncExecutor", "DaskEngine", "Engine", "HypernodesEngine", "SequentialExecutor"]


def __getattr__(name: str) -> Any:
    if name == "DaskEngine":
        from .dask import DaskEngine

        return DaskEngine
    raise AttributeError(f"module 'hypernodes.engines' has no attribute {name!r}")
