"""Type stubs for the compiled core; the contract is ``_sched_py`` (same names, same behaviour)."""

from collections.abc import Callable, Sequence
from typing import Any, Final

from ._events import Lookup, Observer
from .failures import Failure, MapResult

__all__ = [
    "API_VERSION",
    "IMPLEMENTATION",
    "ReadyQueue",
    "find_failures",
    "map_zip",
    "pack_column",
    "plan_batches",
    "run_batch",
    "run_batch_continue",
    "run_dict",
    "run_one",
    "unpack_column",
]

IMPLEMENTATION: Final[str]
API_VERSION: Final[int]

def run_one(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    observer: Observer | None = None,
    lookup: Lookup | None = None,
) -> None: ...
def run_batch(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    items: Any,
    observer: Observer | None = None,
    lookup: Lookup | None = None,
) -> list[list[Any]]: ...
def run_dict(plan: Any, funcs: Sequence[Callable[..., Any]], inputs: dict[str, Any]) -> dict[str, Any]: ...
def map_zip(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    inputs: dict[str, Any],
    mapped: tuple[str, ...],
    map_slots: tuple[int, ...],
    shared: tuple[tuple[str, int], ...],
) -> MapResult | None: ...
def run_batch_continue(
    plan: Any,
    funcs: Sequence[Callable[..., Any]],
    values: list[Any],
    items: Any,
    observer: Observer | None = None,
    lookup: Lookup | None = None,
) -> list[list[Any]]: ...
def find_failures(columns: Sequence[Sequence[Any]]) -> list[Failure]: ...
def plan_batches(
    n_items: int, n_workers: int, tasks_per_worker: int = 1, min_batch: int = 1
) -> list[tuple[int, int]]: ...
def pack_column(column: Any) -> tuple[str, bytes] | None: ...
def unpack_column(code: str, data: Any, out: list[Any], at: int) -> None: ...

class ReadyQueue:
    def __init__(self, plan: Any) -> None: ...
    def get_ready(self) -> tuple[int, ...]: ...
    def done(self, *ids: int) -> None: ...
    def is_active(self) -> bool: ...
    @property
    def n_done(self) -> int: ...
