"""Resources: heavy objects (a model, a client, a connection) built once where nodes run.

A :class:`Resource` is given as a shared input. It travels to workers as its recipe
(the factory and its arguments, pickled), never as the object it builds; the drivers
swap it for the built object where the items run (:func:`resolved`, once per slice,
never per item), and the node receives the object.

Where instances live, by ``scope``:

* ``"process"``: one per process: the caller's for in-process executors (sequential,
  threaded, async), one per worker process (loky, Dask), kept across calls on the
  same pool. Two threads that need it at once build it once (a lock per resource).
* ``"thread"``: one per thread that runs items (for objects that are not thread-safe).

Teardown is called once per built instance: by :meth:`Resource.close`, or when the
process ends (a worker process when its pool shuts down, the caller's at interpreter
exit). A factory that raises is not remembered: the next slice (or call) that needs
the resource tries again.

The cache keys a resource by its factory's code and its arguments, never by the built
object: the resource and each object it built are registered with the hashing module as
standing for the same recipe (``cache._values.KEYED_AS``).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from ._errors import add_note
from .cache._code import hash_code
from .cache._values import KEYED_AS
from .failures import Failure

__all__ = ["MADE", "SCOPES", "Resource", "has_resources", "resolved"]

T = TypeVar("T")

SCOPES = ("process", "thread")
"""Where a resource's instances live: one per process, or one per thread that runs items."""

MADE = [0]
"""How many Resources exist in this process: while none does, the drivers skip looking for one
(and the engine's fast paths, which never do, stay open)."""

_lock = threading.Lock()  # guards the tables below (never held while a factory runs)
_counter = itertools.count()
_build_locks: dict[str, threading.Lock] = {}  # process scope: one build at a time per resource
_process: dict[str, Any] = {}  # token -> the process-scope instance
_threads = threading.local()  # .built: token -> this thread's _Built (thread scope)
_teardowns: list[_Built] = []  # every instance built in this process, in order


class _Built:
    """One built instance; ``live`` turns False when it is torn down (a thread's table then rebuilds)."""

    __slots__ = ("live", "teardown", "token", "value")

    def __init__(self, token: str, value: Any, teardown: Callable[[Any], Any] | None) -> None:
        self.token = token
        self.value = value
        self.teardown = teardown
        self.live = True


_exit_hook = [False]


class Resource(Generic[T]):
    """A heavy object built lazily where nodes run, once per scope, and torn down with it.

    Give it as a shared input: ``inputs={"model": Resource(load_model, "bge-small")}``;
    the node's ``model`` parameter receives ``load_model("bge-small")``.

    Args:
        factory: builds the object: ``factory(*args, **kwargs)``. For process or Dask
            executors it and its arguments must pickle (the object it builds never does).
        *args, **kwargs: the factory's arguments; with the factory's code, the cache key.
        scope: ``"process"`` (default) or ``"thread"`` (see the module docstring).
        teardown: called with each built instance when it goes away; None: nothing.
        name: how errors name it (default: the factory's name).

    Raises:
        TypeError: ``factory`` or ``teardown`` is not callable.
        ValueError: ``scope`` is not one of :data:`SCOPES`.
    """

    __slots__ = ("args", "factory", "kwargs", "name", "recipe", "scope", "teardown", "token")

    def __init__(
        self,
        factory: Callable[..., T],
        *args: Any,
        scope: str = "process",
        teardown: Callable[[T], Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"Resource() needs a callable factory, got {type(factory).__name__} {factory!r:.80}.")
        if teardown is not None and not callable(teardown):
            raise TypeError(f"Resource(teardown=) must be callable or None, got {type(teardown).__name__}.")
        if scope not in SCOPES or not isinstance(scope, str):
            raise ValueError(f"Resource(scope=) must be one of {', '.join(map(repr, SCOPES))}; got {scope!r}.")
        self.factory = factory
        self.args = args
        self.kwargs = kwargs
        self.scope = scope
        self.teardown = teardown
        self.name = name or getattr(factory, "__qualname__", None) or type(factory).__name__
        # the identity of its instances in every process: equal recipes given twice are two resources
        self.token = f"{os.getpid()}-{id(self)}-{next(_counter)}"
        self.recipe = _Recipe(factory, args, kwargs)
        with _lock:
            MADE[0] += 1
            KEYED_AS[id(self)] = self.recipe  # the cache keys it (and what it builds) by the recipe

    def __del__(self) -> None:
        with _lock:
            if KEYED_AS.pop(id(self), None) is not None:  # None: __init__ refused its arguments
                MADE[0] -= 1

    def __repr__(self) -> str:
        return f"<Resource {self.name} scope={self.scope!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.factory, self.args, self.kwargs, self.scope, self.teardown, self.name, self.token))

    def get(self) -> T:
        """The instance for this process (or thread, by scope), built on first use.

        Raises:
            Whatever the factory raises (nothing is remembered: the next get() tries again).
        """
        if self.scope == "thread":
            table: dict[str, _Built] | None = getattr(_threads, "built", None)
            if table is None:
                table = _threads.built = {}
            found = table.get(self.token)
            if found is None or not found.live:  # never built on this thread, or closed since
                found = table[self.token] = self._build()
            return found.value  # type: ignore[no-any-return]
        try:
            return _process[self.token]  # type: ignore[no-any-return]
        except KeyError:
            pass
        with _lock:
            build_lock = _build_locks.setdefault(self.token, threading.Lock())
        with build_lock:  # a second thread waits for the first one's instance instead of building its own
            if self.token not in _process:
                _process[self.token] = self._build().value
            return _process[self.token]  # type: ignore[no-any-return]

    def _build(self) -> _Built:
        built = _Built(self.token, self.factory(*self.args, **self.kwargs), self.teardown)
        with _lock:
            _teardowns.append(built)
            # kept alive by _teardowns, so the id is not reused while it is listed
            KEYED_AS[id(built.value)] = self.recipe
            if not _exit_hook[0]:
                _exit_hook[0] = True
                _on_exit()
        return built

    def close(self) -> None:
        """Tear down every instance of this resource built in this process (each thread's too).

        The next :meth:`get` builds a new one. Teardown errors are raised after every
        instance was torn down (the first one).
        """
        _teardown(self.token)


class _Recipe:
    """What a Resource and each object it built are keyed as (a built object's entry does not keep
    its Resource alive)."""

    __slots__ = ("args", "factory", "kwargs")

    def __init__(self, factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.factory = factory
        self.args = args
        self.kwargs = kwargs

    def __cache_key__(self) -> Any:
        # never the built object: the factory's code (its code key) and the arguments (their values)
        return (hash_code(self.factory), self.args, self.kwargs)


def _rebuild(
    factory: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    scope: str,
    teardown: Callable[[Any], Any] | None,
    name: str,
    token: str,
) -> Resource[Any]:
    resource: Resource[Any] = Resource(factory, *args, scope=scope, teardown=teardown, name=name, **kwargs)
    resource.token = token  # the same resource in every process: a worker's instance serves every call
    return resource


def _teardown(token: str | None) -> None:
    """Tear down the instances of ``token`` (None: all), newest first."""
    with _lock:
        mine = [b for b in _teardowns if token is None or b.token == token]
        _teardowns[:] = [b for b in _teardowns if not (token is None or b.token == token)]
        for built in mine:
            built.live = False
            _process.pop(built.token, None)
            KEYED_AS.pop(id(built.value), None)
    first: BaseException | None = None
    for built in reversed(mine):
        if built.teardown is None:
            continue
        try:
            built.teardown(built.value)
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


def _on_exit() -> None:
    # multiprocessing's exit functions run in the main process at interpreter exit (atexit) and in
    # a worker process when it ends (loky and Dask workers end with os._exit, which skips atexit).
    from multiprocessing import util

    util.Finalize(None, _teardown, (None,), exitpriority=10)


def resolved(values: Sequence[Any], keep_going: bool = False) -> Sequence[Any]:
    """``values`` with each :class:`Resource` replaced by its instance here (``values`` itself if none).

    Args:
        values: a call's slot template (or a node's arguments).
        keep_going: ``on_error="continue"``: a factory that raises puts a :class:`Failure`
            in that slot (each item reading it fails with the factory's error) instead of raising.

    Raises:
        The factory's exception (noted with the resource), unless ``keep_going``.
    """
    out: list[Any] | None = None
    for i, value in enumerate(values):
        if type(value) is Resource:
            if out is None:
                out = list(values)
            try:
                out[i] = value.get()
            except Exception as exc:
                add_note(exc, f"hypernodes: building resource `{value.name}` (scope {value.scope!r}) failed.")
                if not keep_going:
                    raise
                out[i] = Failure(exc, f"resource {value.name}", -1)
    return values if out is None else out


def has_resources(values: Sequence[Any]) -> bool:
    """Whether one of ``values`` is a :class:`Resource`."""
    return MADE[0] > 0 and any(type(v) is Resource for v in values)
