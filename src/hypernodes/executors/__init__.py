"""Executors and executor specs.

An executor spec is one of the names in :data:`EXECUTOR_NAMES` or any object with
the ``concurrent.futures.Executor`` interface (a callable ``submit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ExecutorSpecError

if TYPE_CHECKING:
    from ._async import AsyncExecutor

__all__ = ["EXECUTOR_NAMES", "AsyncExecutor", "resolve_spec"]

EXECUTOR_NAMES = ("sequential", "threaded", "async", "parallel")


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
            allowed = ", ".join(repr(n) for n in EXECUTOR_NAMES)
            raise ExecutorSpecError(
                f"Unknown {role} {spec!r}. Allowed: {allowed}, or an executor object with a submit() method "
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
        f"{role} must be one of {', '.join(repr(n) for n in EXECUTOR_NAMES)} or an object with the "
        f"concurrent.futures.Executor interface (a submit() method); got {type(spec).__name__} {spec!r}."
    )


def __getattr__(name: str) -> Any:
    # AsyncExecutor pulls in asyncio (~60 ms); import it when first asked for.
    if name == "AsyncExecutor":
        from ._async import AsyncExecutor

        return AsyncExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
