"""Nodes: plain functions with named outputs.

A :class:`Node` reads its inputs from its function's signature (one input per named
parameter, wired by name) and declares the name(s) its return value is stored
under. Nodes stay ordinary callables: ``node(x=1)`` calls the function.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
from collections.abc import Callable
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar, overload

from ._errors import check_bool
from ._policy import check_policy, policy_for
from .errors import NodeDefinitionError, WiringError

__all__ = ["Node", "is_async_callable", "node"]

P = ParamSpec("P")
R = TypeVar("R")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _KeywordAdapter:
    """Calls a function whose trailing parameters are keyword-only, positionally.

    The scheduler passes every argument positionally (one vectorcall, no dict).
    Only functions with keyword-only parameters pay for this adapter; it is a
    class rather than a closure so the standard pickle can ship it to processes.
    """

    __slots__ = ("func", "kwnames", "n_positional")

    def __init__(self, func: Callable[..., Any], n_positional: int, kwnames: tuple[str, ...]) -> None:
        self.func = func
        self.n_positional = n_positional
        self.kwnames = kwnames

    def __call__(self, *args: Any) -> Any:
        k = self.n_positional
        return self.func(*args[:k], **dict(zip(self.kwnames, args[k:])))


def is_async_callable(func: Any) -> bool:
    """Whether calling ``func`` returns an awaitable: ``async def`` functions, partials of
    them, objects with ``async def __call__``, async nodes, and decorators that wrap an
    ``async def`` (``functools.wraps``) without being one themselves."""
    if isinstance(func, Node):
        return func.is_async
    if inspect.iscoroutinefunction(func):
        return True
    if not inspect.isfunction(func) and inspect.iscoroutinefunction(type(func).__call__):
        return True
    try:
        unwrapped = inspect.unwrap(func)
    except ValueError:  # a __wrapped__ cycle
        return False
    return unwrapped is not func and inspect.iscoroutinefunction(unwrapped)


def _normalize_output_name(output_name: Any, where: str) -> str | tuple[str, ...]:
    if isinstance(output_name, str):
        if not output_name:
            raise NodeDefinitionError(f"{where}: output_name must be a non-empty string.")
        return output_name
    if isinstance(output_name, (tuple, list)):
        names = tuple(output_name)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise NodeDefinitionError(
                f"{where}: a tuple output_name must hold one or more non-empty strings, got {output_name!r}."
            )
        seen = {n for n in names if names.count(n) > 1}
        if seen:
            dup = ", ".join(f"`{n}`" for n in sorted(seen))
            raise NodeDefinitionError(f"{where}: output_name {names!r} repeats {dup}.")
        return names
    raise NodeDefinitionError(
        f"{where}: output_name must be a string or a tuple of strings, "
        f"got {type(output_name).__name__} {output_name!r}."
    )


class Node(Generic[P, R]):
    """One function in a pipeline.

    Generic in the function's parameters ``P`` and return type ``R``, so type checkers
    see ``@node``-decorated functions with their own signature: calling the node calls
    the function (``Node[P, R].__call__(*args: P.args, **kwargs: P.kwargs) -> R``).

    Attributes:
        func: the wrapped function, unchanged.
        name: the node's name (the function's name unless given).
        output_name: a string, or a tuple of strings when the function returns a
            tuple that is unpacked into several outputs.
        outputs: ``output_name`` as a tuple (one element for a plain name).
        parameters: the function's named parameters, in order; each is an input
            wired by name. ``*args``/``**kwargs`` are not wired.
        defaults: parameter name -> default value, used when nothing provides it.
        is_async: whether calling ``func`` returns an awaitable (``async def``).
        cache: whether a pipeline's cache may store and reuse this node's results.
        version: a code version (str or int) mixed into the node's cache key, or None.
        retries, retry_on, backoff, timeout: how a failing or hung call is retried
            and bounded (see ``@node``; 0 and None: not at all).
        nested: whether the node is a nested pipeline (a ``PipelineNode``, made by
            ``Pipeline.as_node``); the one place that question is answered.
    """

    __slots__ = (
        "_call",
        "backoff",
        "cache",
        "defaults",
        "func",
        "is_async",
        "name",
        "output_name",
        "outputs",
        "parameters",
        "retries",
        "retry_on",
        "timeout",
        "version",
    )

    func: Callable[P, R]
    name: str
    nested: ClassVar[bool] = False

    def __init__(
        self,
        func: Callable[P, R],
        output_name: str | tuple[str, ...] | None = None,
        *,
        name: str | None = None,
        cache: bool = True,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        backoff: float | Callable[[int], float] | None = None,
        timeout: float | None = None,
        version: str | int | None = None,
    ) -> None:
        """Wrap ``func``.

        Args:
            func: any callable with an inspectable signature.
            output_name: where the return value is stored; a tuple unpacks a
                returned tuple. Defaults to the function's name.
            name: the node's name in errors and reprs; defaults to the function's.
            cache: False: never cached, even in a pipeline with a cache (for
                non-deterministic functions).
            retries: how many more times a call that raises one of ``retry_on`` is
                made (on the same worker; the upstream nodes are not rerun).
            retry_on: the exception types retried (one or a tuple; default ``Exception``).
            backoff: seconds before the first retry (default 0.1), doubled for each
                next one, times a random factor in [0.5, 1]; or a function of the
                attempt number (1, 2, ...) returning the seconds to wait.
            timeout: seconds one call may take; then the node fails with a
                ``TimeoutError`` (an async call is cancelled, a sync one abandoned:
                see the README's "Failures, retries and timeouts").
            version: a code version (a str or int, like Dagster's ``code_version``) that is
                part of the node's cache key: change it to recompute what the cache holds
                when something the key cannot see changed (a model file, a remote API).

        Raises:
            NodeDefinitionError: ``func`` is not callable, has no inspectable
                signature, no usable output name can be derived, or a retry or
                timeout option is malformed (or ``retry_on``/``backoff`` is given
                without ``retries``), or ``version`` is neither a str nor an int.
        """
        if not callable(func):
            raise NodeDefinitionError(
                f"A node wraps a callable; got {type(func).__name__} {func!r}. "
                "Decorate a function with @node(output_name=...)."
            )
        if isinstance(func, Node):  # node(existing_node, output_name=...): re-wrap its function
            existing: Node[P, R] = func
            if existing.nested:
                raise NodeDefinitionError(
                    f"node() got the nested pipeline `{existing.name}`; rename its outputs with "
                    "pipeline.as_node(output_mapping={...}, name=...) instead."
                )
            func = existing.func
        if name is not None and not isinstance(name, str):
            raise NodeDefinitionError(f"A node's name must be a string, got {type(name).__name__} {name!r:.60}.")
        func_name = getattr(func, "__name__", None) or type(func).__name__
        where = f"Node `{name or func_name}`"
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            raise NodeDefinitionError(
                f"{where}: cannot read the signature of {func!r} ({exc}); wrap it in a def with named parameters."
            ) from None
        if output_name is None:
            if not func_name.isidentifier():
                raise NodeDefinitionError(
                    f"{where}: cannot derive an output name from {func_name!r}; "
                    "pass output_name=... (required for lambdas and callables without a plain name)."
                )
            output_name = func_name
        self.output_name = _normalize_output_name(output_name, where)
        self.outputs: tuple[str, ...] = (self.output_name,) if isinstance(self.output_name, str) else self.output_name
        self.func = func
        self.name = name if name is not None else (func_name if func_name.isidentifier() else self.outputs[0])
        params = [
            p
            for p in signature.parameters.values()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        self.parameters: tuple[str, ...] = tuple(p.name for p in params)
        self.defaults: dict[str, Any] = {p.name: p.default for p in params if p.default is not p.empty}
        clash = set(self.parameters) & set(self.outputs)
        if clash:
            raise WiringError(
                f"{where}: `{sorted(clash)[0]}` is both a parameter and an output of the same node (a self-loop)."
            )
        n_positional = sum(1 for p in params if p.kind in _POSITIONAL)
        if n_positional == len(params):
            self._call: Callable[..., Any] = func
        else:
            self._call = _KeywordAdapter(func, n_positional, self.parameters[n_positional:])
        self.is_async = is_async_callable(func)
        self.cache = check_bool(cache, "cache", where, NodeDefinitionError)
        if version is not None and (type(version) is bool or not isinstance(version, (str, int))):
            raise NodeDefinitionError(
                f"{where}: version must be a str or int (a code version, part of the cache key), "
                f"got {type(version).__name__} {version!r:.60}."
            )
        self.version = version
        self.retries, self.retry_on, self.backoff, self.timeout = check_policy(
            where,
            retries,
            Exception if retry_on is None else retry_on,
            0.1 if backoff is None else backoff,
            timeout,
            retry_on is not None or backoff is not None,
        )
        # The loops call _call and never look for retries: a node without them pays nothing.
        self._call = policy_for(
            self._call, self.name, self.is_async, self.retries, self.retry_on, self.backoff, self.timeout
        )

    def restricted(self, outputs: tuple[str, ...]) -> Node[P, R]:
        """This node computing only ``outputs`` (a subset of its outputs).

        A function cannot skip part of its work, so a plain node returns itself;
        a nested pipeline returns a node that runs only what those outputs need.
        """
        return self

    def __reduce__(self) -> str | tuple[Any, ...]:
        # `@node` rebinds the function's module-level name to this Node, so the
        # standard pickle cannot find the function by name any more. Pickle such a
        # node as that name instead; any other node pickles field by field.
        module, qualname = getattr(self.func, "__module__", None), getattr(self.func, "__qualname__", "")
        if module and "<" not in qualname and _lookup(module, qualname) is self:
            return (_load_node, (module, qualname))
        return self._reduce_by_value()

    def _reduce_by_value(self) -> tuple[Any, ...]:
        """Pickle field by field (the function itself, not its name)."""
        return (_rebuild, (type(self), {k: getattr(self, k) for k in _slots(type(self))}))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the wrapped function; returns exactly what it returns."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        params = ", ".join(self.parameters)
        return f"Node({self.name}({params}) -> {self.output_name!r})"


def _lookup(module: str, qualname: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def _load_node(module: str, qualname: str) -> Node[..., Any]:
    found = _lookup(module, qualname)
    if not isinstance(found, Node):
        raise pickle.UnpicklingError(
            f"cannot unpickle node {module}.{qualname}: that name is {type(found).__name__} here, not a node "
            "(is the same code importable where it is unpickled?)"
        )
    return found


def _slots(cls: type) -> list[str]:
    return [s for c in cls.__mro__ for s in getattr(c, "__slots__", ()) if not s.startswith("__")]


def _rebuild(cls: type[Node[..., Any]], state: dict[str, Any]) -> Node[..., Any]:
    obj = cls.__new__(cls)
    for k, v in state.items():
        object.__setattr__(obj, k, v)
    return obj


@overload
def node(
    func: Callable[P, R],
    /,
    *,
    output_name: str | tuple[str, ...] | None = ...,
    name: str | None = ...,
    cache: bool = ...,
    retries: int = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = ...,
    backoff: float | Callable[[int], float] | None = ...,
    timeout: float | None = ...,
    version: str | int | None = ...,
) -> Node[P, R]: ...
@overload
def node(
    output_name: str | tuple[str, ...] | None = ...,
    /,
    *,
    name: str | None = ...,
    cache: bool = ...,
    retries: int = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = ...,
    backoff: float | Callable[[int], float] | None = ...,
    timeout: float | None = ...,
    version: str | int | None = ...,
) -> Callable[[Callable[P, R]], Node[P, R]]: ...
@overload
def node(
    *,
    output_name: str | tuple[str, ...] | None = ...,
    name: str | None = ...,
    cache: bool = ...,
    retries: int = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = ...,
    backoff: float | Callable[[int], float] | None = ...,
    timeout: float | None = ...,
    version: str | int | None = ...,
) -> Callable[[Callable[P, R]], Node[P, R]]: ...


def node(
    func: Any = None,
    /,
    *,
    output_name: str | tuple[str, ...] | None = None,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    backoff: float | Callable[[int], float] | None = None,
    timeout: float | None = None,
    version: str | int | None = None,
) -> Node[..., Any] | Callable[[Callable[..., Any]], Node[..., Any]]:
    """Turn a function into a :class:`Node`.

    Usable as ``@node``, ``@node(output_name="y")``, ``@node("y")`` or
    ``node(func, output_name="y")``.

    Args:
        func: the function (when used without parentheses or called directly),
            or the output name when given positionally to the decorator factory.
        output_name: where the return value goes; a tuple unpacks a returned tuple.
        name: the node's name; defaults to the function's name.
        cache: False keeps the node out of the pipeline's cache (it always runs).
        retries, retry_on, backoff, timeout: retry a failing call, bound a slow one
            (see :class:`Node`).
        version: a code version (str or int) in the node's cache key: change it to
            recompute cached results (see :class:`Node`).

    Returns:
        A :class:`Node`, or a decorator that makes one.

    Raises:
        NodeDefinitionError: see :class:`Node`.
    """
    if isinstance(func, (str, tuple, list)):
        if output_name is not None:
            raise NodeDefinitionError("node(): output_name given both positionally and by keyword.")
        output_name, func = tuple(func) if isinstance(func, list) else func, None  # @node("y")
    options: dict[str, Any] = {
        "name": name,
        "cache": cache,
        "retries": retries,
        "retry_on": retry_on,
        "backoff": backoff,
        "timeout": timeout,
        "version": version,
    }
    if func is None:

        def decorate(f: Callable[..., Any]) -> Node[..., Any]:
            return Node(f, output_name, **options)

        return decorate
    return Node(func, output_name, **options)
