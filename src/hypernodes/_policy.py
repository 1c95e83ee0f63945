"""Retries and timeouts of one node call: a wrapper around the node's function.

``@node(retries=N, retry_on=(...), backoff=..., timeout=...)`` makes the node's
callable (``Node._call``, what a plan's ``funcs`` hold) a :class:`Policy` (or an
:class:`AsyncPolicy` for an ``async def`` node). The loops, the node runner and the
worker processes call it like any function: they never check for retries, so a
pipeline without them pays nothing. The wrapper reruns a failing call where it
ran (the same thread or worker process), never the nodes upstream of it, whose
values are its arguments.

Retries: a call that raises one of ``retry_on`` is made again, up to ``retries``
more times, after a delay of ``backoff * 2 ** (attempt - 1)`` seconds times a
random factor in [0.5, 1] (exponential backoff with jitter; capped at
:data:`MAX_DELAY`), or ``backoff(attempt)`` when ``backoff`` is a function. The
exception that ends the call records the number of calls made
(``failures.ATTEMPTS_ATTR``, and a note). A sync node sleeps on its worker thread;
an async node awaits ``asyncio.sleep`` on the loop, so other items run meanwhile.

Timeouts (per call; a retry gets a fresh one):

* an ``async def`` node's coroutine runs as a task that is cancelled when the
  timeout passes (``CancelledError`` is thrown into it at its current ``await``);
  the task is not waited for after that.
* a sync node's call runs on a helper (daemon) thread while the calling thread
  waits up to the timeout. When it passes, the call is *abandoned*: a Python
  thread cannot be stopped, so it runs on until the function returns, and its
  result (or exception) is discarded. On threads and in the calling thread that
  helper lives in this process; under process executors it lives in the worker
  process and ends at the latest when that worker exits (the engine's shutdown,
  or the pool's). Being a daemon thread, it never keeps an interpreter from exiting.

Either way the node fails with a ``TimeoutError`` naming the node and the timeout
(the loops add the item in a note), like any exception the node raised.

Callbacks see each retried attempt: a copy of the wrapper bound to the call's
observer (:func:`bind`) reports ``node_retry`` before each delay. The wrapper does
not know which map item it serves, so the item is reported as -1. A node task in a
worker process binds it to a ``RetryLog`` instead (``_run/node_task.py``), whose attempts
the caller reports with the item once the task ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._errors import add_note
from .errors import NodeDefinitionError
from .failures import ATTEMPTS_ATTR

__all__ = ["MAX_DELAY", "STOP", "AsyncPolicy", "Policy", "bind", "check_policy", "policy_for"]

STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("hypernodes_stop", default=None)
"""Set by a thread slice of a map (``_run/items.py``) to its call's stop flag: a backoff sleep
waits on it, so a retrying item wakes and gives up as soon as the call has failed (a pool's
shutdown then waits for no backoff)."""

MAX_DELAY = 60.0
"""The longest delay between two attempts, in seconds, whatever ``backoff`` computes."""


def check_policy(
    where: str, retries: Any, retry_on: Any, backoff: Any, timeout: Any, retry_given: bool
) -> tuple[int, tuple[type[BaseException], ...], Any, float | None]:
    """The node options, checked; ``retry_given``: ``retry_on`` or ``backoff`` was passed.

    Raises:
        NodeDefinitionError: a value of the wrong kind, or ``retry_on``/``backoff``
            given without ``retries`` (they would do nothing).
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise NodeDefinitionError(
            f"{where}: retries must be an int >= 0 (the extra calls after a failure), got {retries!r}."
        )
    kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not kinds or not all(isinstance(k, type) and issubclass(k, Exception) for k in kinds):
        raise NodeDefinitionError(
            f"{where}: retry_on must be an Exception subclass or a tuple of them (ConnectionError, TimeoutError, ...), "
            f"got {retry_on!r}."
        )
    if not callable(backoff) and (
        isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not backoff >= 0
    ):
        raise NodeDefinitionError(
            f"{where}: backoff must be a number of seconds >= 0 (the first delay, doubled each retry) or a function "
            f"of the attempt number returning seconds, got {backoff!r}."
        )
    if retry_given and retries == 0:
        raise NodeDefinitionError(
            f"{where}: retry_on= and backoff= only apply with retries=N (N >= 1), and no retries were given."
        )
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise NodeDefinitionError(f"{where}: timeout must be a positive number of seconds or None, got {timeout!r}.")
    return retries, kinds, backoff, None if timeout is None else float(timeout)


class Policy:
    """A sync node's callable with retries and a timeout (see the module docstring)."""

    __slots__ = ("backoff", "func", "index", "name", "observer", "retries", "retry_on", "timeout")

    def __init__(
        self,
        func: Callable[..., Any],
        name: str,
        retries: int,
        retry_on: tuple[type[BaseException], ...],
        backoff: Any,
        timeout: float | None,
    ) -> None:
        self.func = func
        self.name = name
        self.retries = retries
        self.retry_on = retry_on
        self.backoff = backoff
        self.timeout = timeout
        self.observer: Any = None  # set on a bound copy (bind)
        self.index = -1

    def __getstate__(self) -> tuple[Any, ...]:
        # An observer is per call and per process: a copy sent elsewhere is unbound.
        return (self.func, self.name, self.retries, self.retry_on, self.backoff, self.timeout)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def bound(self, observer: Any, index: int) -> Policy:
        """A copy that reports retries to ``observer`` as node ``index``."""
        twin = type(self)(self.func, self.name, self.retries, self.retry_on, self.backoff, self.timeout)
        twin.observer = observer
        twin.index = index
        return twin

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed call ``attempt`` (1-based) before the next one."""
        if callable(self.backoff):
            seconds = float(self.backoff(attempt))
        else:
            import random  # on the first retry only: `import hypernodes` does not pay for it (~1 ms)

            seconds = self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
        return min(max(seconds, 0.0), MAX_DELAY)

    def _retry(self, exc: Exception, attempt: int) -> float:
        """The delay before the next attempt after ``exc``, or raise ``exc`` if there is none."""
        if not isinstance(exc, self.retry_on) or attempt > self.retries:
            _record(exc, attempt, self)
            raise exc
        delay = self.delay(attempt)
        if self.observer is not None:
            self.observer.node_retry(self.index, -1, exc, attempt, delay)
        return delay

    def __call__(self, *args: Any) -> Any:
        attempt = 1
        while True:
            try:
                if self.timeout is None:
                    return self.func(*args)
                return _call_with_timeout(self.func, args, self.timeout, self.name)
            except Exception as exc:
                delay = self._retry(exc, attempt)
                if delay:
                    stop = STOP.get()
                    if stop is None:
                        time.sleep(delay)
                    elif stop.wait(delay):  # the call failed elsewhere: its result is unwanted
                        add_note(exc, f"hypernodes: not retried: the call stopped after attempt {attempt}")
                        raise
            attempt += 1

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of node `{self.name}`: retries={self.retries}, timeout={self.timeout}>"


class AsyncPolicy(Policy):
    """An ``async def`` node's callable with retries and a timeout; awaited on the loop."""

    __slots__ = ()

    async def __call__(self, *args: Any) -> Any:
        import asyncio  # running on a loop: loaded already

        attempt = 1
        while True:
            try:
                if self.timeout is None:
                    return await self.func(*args)
                return await _await_with_timeout(asyncio, self.func(*args), self.timeout, self.name)
            except Exception as exc:
                delay = self._retry(exc, attempt)
            attempt += 1
            await asyncio.sleep(delay)


def _record(exc: BaseException, attempts: int, policy: Policy) -> None:
    """Note on the exception that ends a call how many calls were made (and why no more)."""
    with contextlib.suppress(Exception):  # an exception that takes no attributes keeps the note only
        setattr(exc, ATTEMPTS_ATTR, attempts)
    if policy.retries == 0:
        return
    if not isinstance(exc, policy.retry_on):
        names = ", ".join(k.__name__ for k in policy.retry_on)
        add_note(
            exc, f"hypernodes: not retried ({type(exc).__name__} is not in retry_on=({names})), attempt {attempts}"
        )
    else:
        add_note(exc, f"hypernodes: failed after {attempts} attempts (retries={policy.retries})")


def _timed_out(name: str, timeout: float, what: str) -> TimeoutError:
    return TimeoutError(f"node `{name}` did not finish within its timeout of {timeout:g} s; {what}")


def _call_with_timeout(func: Callable[..., Any], args: tuple[Any, ...], timeout: float, name: str) -> Any:
    outcome: list[tuple[bool, Any]] = []
    finished = threading.Event()

    def target() -> None:
        try:
            outcome.append((True, func(*args)))
        except BaseException as exc:  # delivered to the waiting caller (if it still waits)
            outcome.append((False, exc))
        finally:
            finished.set()

    helper = threading.Thread(target=target, name=f"hypernodes-timeout-{name}", daemon=True)
    helper.start()
    if not finished.wait(timeout):
        raise _timed_out(
            name,
            timeout,
            "the call was abandoned: it runs on in a daemon thread until it returns (a thread cannot be stopped), "
            "and its result will be discarded.",
        )
    ok, value = outcome[0]
    if ok:
        return value
    raise value


async def _await_with_timeout(asyncio: Any, coro: Any, timeout: float, name: str) -> Any:
    # Not asyncio.wait_for: a TimeoutError the node raises itself must stay the node's.
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    except BaseException:  # this call is cancelled itself: so is the node's task
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        raise _timed_out(name, timeout, "its coroutine was cancelled.")
    return task.result()


def _consume(task: Any) -> None:
    # The abandoned task's outcome is discarded; reading it keeps asyncio from logging it.
    if not task.cancelled():
        task.exception()


def policy_for(
    func: Callable[..., Any],
    name: str,
    is_async: bool,
    retries: int,
    retry_on: tuple[type[BaseException], ...],
    backoff: Any,
    timeout: float | None,
) -> Callable[..., Any]:
    """``func`` itself without retries or a timeout; else its :class:`Policy` (async: :class:`AsyncPolicy`)."""
    if retries == 0 and timeout is None:
        return func
    return (AsyncPolicy if is_async else Policy)(func, name, retries, retry_on, backoff, timeout)


def bind(funcs: Sequence[Callable[..., Any]], observer: Any) -> tuple[Callable[..., Any], ...]:
    """``funcs`` with each policy bound to ``observer`` (which hears their retries); ``funcs`` if none is one."""
    funcs = tuple(funcs)
    if observer is None or not any(isinstance(f, Policy) for f in funcs):
        return funcs
    return tuple(f.bound(observer, k) if isinstance(f, Policy) else f for k, f in enumerate(funcs))
