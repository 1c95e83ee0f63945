"""The public surface, pinned: each public module's ``__all__``, name by name.

A module is public when no part of its dotted name starts with an underscore. Adding,
removing or renaming a public name is a decision: make it here, in the same change,
and say it in the CHANGELOG. Helpers the package's own modules share live in private
modules (``_errors``, ``_observe``, ...), never in a public ``__all__``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import hypernodes

PUBLIC: dict[str, tuple[str, ...]] = {
    "hypernodes": (
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
    ),
    "hypernodes.cache": (
        "Cache",
        "CacheWarning",
        "DiskCache",
        "MemoryCache",
        "Unhashable",
        "compute_signature",
        "explain",
        "hash_code",
        "hash_inputs",
        "hash_value",
        "register_hasher",
    ),
    "hypernodes.cache.hashing": (
        "Unhashable",
        "compute_signature",
        "hash_code",
        "hash_inputs",
        "hash_value",
        "register_hasher",
    ),
    "hypernodes.cache.lookup": ("INHERITED", "CacheLookup", "Inheriting"),
    "hypernodes.cache.storage": ("Cache", "CacheWarning", "DiskCache", "MemoryCache"),
    "hypernodes.callbacks": ("CallbackContext", "PipelineCallback"),
    "hypernodes.engine": ("Engine", "HypernodesEngine", "default_engine"),
    "hypernodes.engines": (
        "DEFAULT_WORKERS",
        "AsyncExecutor",
        "DaskEngine",
        "Engine",
        "HypernodesEngine",
        "SequentialExecutor",
    ),
    "hypernodes.engines.dask": ("DaskBackend", "DaskEngine", "DaskExecutor"),
    "hypernodes.errors": (
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
    ),
    "hypernodes.executors": ("DEFAULT_WORKERS", "EXECUTOR_NAMES", "AsyncExecutor", "SequentialExecutor"),
    "hypernodes.executors.backends": (
        "PROCESS_TASKS_PER_WORKER",
        "THREAD_TASKS_PER_WORKER",
        "Async",
        "Backend",
        "Given",
        "Processes",
        "Sequential",
        "Threads",
        "backend_for",
        "in_process",
        "worker_count",
    ),
    "hypernodes.failures": ("Failure", "MapResult"),
    "hypernodes.node": ("Node", "is_async_callable", "node"),
    "hypernodes.pipeline": ("Pipeline", "PipelineNode"),
    "hypernodes.telemetry": ("NodeTiming", "ProgressCallback", "SpanRecord", "TelemetryCallback", "TimingCallback"),
    "hypernodes.telemetry.progress": ("ProgressCallback",),
    "hypernodes.telemetry.records": ("CACHED", "FAILED", "RAN", "RETRIED", "STATUSES", "UNFINISHED", "SpanRecord"),
    "hypernodes.telemetry.timing": ("NodeTiming", "TimingCallback"),
    "hypernodes.telemetry.tracing": ("TelemetryCallback",),
    "hypernodes.telemetry.waterfall": ("COLORS", "waterfall_figure", "write_figure"),
    "hypernodes.viz": (
        "DESIGN_STYLES",
        "Diagram",
        "GraphvizNotFoundError",
        "GraphvizStyle",
        "IgnoredArgumentWarning",
        "VizCluster",
        "VizEdge",
        "VizGraph",
        "VizNode",
        "VizPort",
        "VizSpecError",
        "build_graph",
        "to_dot",
        "visualize",
    ),
}
"""Each public module and the names its ``__all__`` holds."""


def _public_modules() -> list[str]:
    root = Path(hypernodes.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not any(p.startswith("_") for p in parts):
            found.append(".".join(parts))
    return found


def test_every_public_module_is_pinned() -> None:
    """Every module without an underscore in its name is listed here, so none is public by accident."""
    assert sorted(_public_modules()) == sorted(PUBLIC)


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module: str) -> None:
    """A public module's ``__all__`` holds exactly the pinned names, each of which it has."""
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(PUBLIC[module])
    for name in imported.__all__:
        assert getattr(imported, name) is not None, f"{module}.{name}"


MOVED = {
    "hypernodes.callbacks": ("CallObserver", "CallHooks", "SCOPE", "check_callbacks", "map_observed", "run_observed"),
    "hypernodes.errors": ("FROM_CALLBACK", "add_note", "check_bool", "coroutine_returned", "note_node", "unpack_row"),
    "hypernodes.cache": ("INHERITED", "CacheLookup"),
    "hypernodes.executors": ("check_max_workers",),
}
"""Helpers that public modules used to hold, now in private ones (``_observe``, ``_errors``,
``cache.lookup``, ``executors._spec``)."""


@pytest.mark.parametrize("module", sorted(MOVED))
def test_helpers_are_not_in_public_modules(module: str) -> None:
    """The helpers moved out are gone from the public module, not merely left out of ``__all__``."""
    imported = importlib.import_module(module)
    assert [name for name in MOVED[module] if hasattr(imported, name)] == []
