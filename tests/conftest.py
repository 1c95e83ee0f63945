"""Shared fixtures.

Every test runs once per scheduling core: the ``core`` fixture (autouse) points
``hypernodes._core`` -- the one switch the package reads -- at the compiled
core or at its pure-Python twin. With ``HYPERNODES_NO_EXTENSIONS=1`` only the
twin is used (and the compiled core is never imported).

After each test no thread, child process or event loop started by the test may
still be alive (or open): engines and executors must clean up after themselves.
(multiprocessing's and loky's resource trackers are per-process singletons that
live as long as the interpreter, so they do not count.)
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import psutil
import pytest
from hypothesis import settings

import hypernodes._core
from hypernodes import engine as engine_module

# "ci" (default) keeps the suite quick; "thorough" is for local runs before a release.
settings.register_profile("ci", max_examples=150)
settings.register_profile("thorough", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NO_EXTENSIONS = os.environ.get("HYPERNODES_NO_EXTENSIONS", "") not in ("", "0")
CORE_NAMES = ("python",) if NO_EXTENSIONS else ("cython", "python")


def load_core(name: str) -> ModuleType:
    """The core module called ``name`` ("cython" or "python")."""
    return importlib.import_module("hypernodes._sched" if name == "cython" else "hypernodes._sched_py")


@pytest.fixture(params=CORE_NAMES, autouse=True)
def core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The core under test, installed behind ``hypernodes._core``."""
    module = load_core(request.param)
    for name in hypernodes._core.__all__:
        monkeypatch.setattr(hypernodes._core, name, getattr(module, name))
    return module


def _ours(thread: threading.Thread) -> bool:
    # Process-wide singletons that live as long as the interpreter: the shared default
    # engine's loop thread, and distributed's offload and future-callback threads (started
    # by a Dask client and by the first Future.add_done_callback).
    default = engine_module._default
    if default is not None and thread is default._loop.thread:
        return False
    return not thread.name.startswith(("Dask-Offload", "Dask-Callback-Thread"))


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A Dask cluster of two worker processes on loopback, shared by the session (skipped without distributed)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt during the test, however the suite was started.

    A shell starts background jobs (``cmd &``, ``nohup``) with SIGINT ignored, and Python then
    keeps it ignored: a test that sends SIGINT installs Python's default handler itself.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def make_executor(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Any]]:
    """Builds executors by kind (see tests/kinds.py); user-owned ones are shut down after the test."""
    from . import kinds

    made: list[Any] = []

    def make(kind: str) -> Any:
        executor = request.getfixturevalue("dask_client").get_executor() if kind == "dask" else kinds.make(kind)
        if not isinstance(executor, str):
            made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(wait=True)


def _start_session_services(request: pytest.FixtureRequest) -> None:
    # A test parametrized with "dask" uses the session's cluster: start it before the
    # leak checks take their snapshot, so its threads and processes are not the test's.
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and any(v == "dask" for v in callspec.params.values() if isinstance(v, str)):
        request.getfixturevalue("dask_client")


@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread of its own running."""
    _start_session_services(request)
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        gc.collect()
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and _ours(t)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


# Every event loop made in this process, whoever makes it (asyncio.run, new_event_loop,
# a library): the leak check below needs to see loops it holds no reference to.
_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_loop_init = asyncio.BaseEventLoop.__init__


def _tracked_loop_init(self: asyncio.BaseEventLoop, *args: Any, **kwargs: Any) -> None:
    _loop_init(self, *args, **kwargs)
    _LOOPS.add(self)


asyncio.BaseEventLoop.__init__ = _tracked_loop_init  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def no_leaked_event_loops(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an event loop of its own open (running or not).

    A loop dropped unclosed is caught too: its ResourceWarning is an error here.
    """
    _start_session_services(request)
    before = weakref.WeakSet(_LOOPS)
    yield
    deadline = time.monotonic() + 5.0
    while True:
        default = engine_module._default  # the shared default engine's loop lives as long as the process
        forever = default._loop._loop if default is not None else None
        leaked = [loop for loop in list(_LOOPS) if loop not in before and not loop.is_closed() and loop is not forever]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"event loops left open: {leaked}"


def _children() -> dict[int, str]:
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:  # exited meanwhile
            continue
        if "resource_tracker" not in cmdline:
            out[child.pid] = cmdline
    return out


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a child process of its own running (loky workers included)."""
    _start_session_services(request)
    before = set(_children())
    yield
    deadline = time.monotonic() + 10.0
    while True:
        leaked = {pid: cmd for pid, cmd in _children().items() if pid not in before}
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"child processes left running: {leaked}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the reliability figures recorded by the tests that ran (see tests/figures.py)."""
    from .figures import FIGURES

    lines = FIGURES.lines()
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
