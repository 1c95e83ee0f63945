"""Executors and executor specs.

An executor spec is one of the names in :data:`EXECUTOR_NAMES` or any object with
the ``concurrent.futures.Executor`` interface (a callable ``submit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ExecutorSpecError

if TYPE_CHECKING:
    from ._async import AsyncExecutor

__all__ = ["EXECUTOR_NAMES", "AsyncExecutor", "check_max_workers", "resolve_spec"]

EXECUTOR_NAMES = ("sequential", "threaded", "async", "parallel")
_ALLOWED = ", ".join(repr(n) for n in EXECUTOR_NAMES)


def check_max_workers(max_workers: Any, where: str, *, allow_none: bool) -> None:
    """Raise ExecutorSpecError unless ``max_workers`` is a positive int (or None, if allowed)."""
    if max_workers is None and allow_none:
        return
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        expected = "a positive int or None" if allow_none else "a positive int"
        raise ExecutorSpecError(f"{where} must be {expected}, got {max_workers!r}.")


def resolve_spec(spec: Any, role: str) -> str | Any:
    """Validate an executor spec; returns the name or the executor object unchanged.

    Args:
        spec: a name from :data:`EXECUTOR_NAMES` or an object with a callable ``submit``.
        role: the argument's name, for the error message.

    Raises:
        ExecutorSpecError: an unknown name, or an object without ``submit``.
    """
    if isinstance(spec, str):
        if spec not in EXECUTOR_NAMES:
            raise ExecutorSpecError(
                f"Unknown {role} {spec!r}. Allowed: {_ALLOWED}, or an executor object with a submit() method "
                "(e.g. ThreadPoolExecutor, AsyncExecutor, a loky or Dask executor)."
            )
        return spec
    if isinstance(spec, type):
        raise ExecutorSpecError(
            f"{role} got the class {spec.__name__}; pass an instance, e.g. {spec.__name__}(max_workers=8)."
        )
    if callable(getattr(spec, "submit", None)):
        return spec
    raise ExecutorSpecError(
        f"{role} must be one of {_ALLOWED} or an object with the "
        f"concurrent.futures.Executor interface (a submit() method); got {type(spec).__name__} {spec!r}."
    )


def __getattr__(name: str) -> Any:
    # AsyncExecutor pulls in asyncio (~60 ms); import it when first asked for.
    if name == "AsyncExecutor":
        from ._async import AsyncExecutor

        return AsyncExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
