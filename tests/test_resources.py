"""Resources: built once per scope where the nodes run, reused, torn down, keyed by their recipe."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hypernodes import Failure, HypernodesEngine, MemoryCache, Pipeline, Resource, node
from hypernodes.cache.hashing import hash_value

IN_PROCESS = ("sequential", "threaded", "async")


class Model:
    """A stand-in for a loaded model: knows where it was built, refuses to be pickled."""

    def __init__(self, name: str, log: str) -> None:
        self.name = name
        self.pid = os.getpid()
        self.thread = threading.get_ident()
        self.log = log
        with open(log, "a") as f:  # a file counts builds across processes
            f.write(f"build {name} {self.pid}\n")

    def __reduce__(self) -> Any:
        raise TypeError("a Model must never be pickled")


def load(name: str, log: str) -> Model:
    """The factory: a Model, logged."""
    return Model(name, log)


def close(model: Model) -> None:
    """The teardown: logged."""
    with open(model.log, "a") as f:
        f.write(f"close {model.name} {os.getpid()}\n")


def other(name: str, log: str) -> Model:
    """Another factory (other code) with the same arguments."""
    return Model(name.upper(), log)


def lines(log: Path, kind: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(kind)] if log.exists() else []


@node(output_name="seen")
def use(x: int, model: Model) -> tuple[int, str, int, int]:
    return (x, model.name, model.pid, model.thread)


def test_get_builds_once_per_process_and_close_tears_down(tmp_path: Path) -> None:
    """get() builds on first use and returns that instance after; close() tears it down once; get() rebuilds."""
    log = tmp_path / "log"
    torn: list[Model] = []
    r = Resource(load, "m", str(log), teardown=torn.append)
    assert lines(log, "build") == []  # lazy
    first = r.get()
    assert r.get() is first
    assert len(lines(log, "build")) == 1
    r.close()
    assert torn == [first]
    r.close()
    assert torn == [first]  # once per instance
    assert r.get() is not first
    assert len(lines(log, "build")) == 2
    r.close()


def test_thread_scope_builds_one_per_thread(tmp_path: Path) -> None:
    """scope="thread": each thread gets its own instance; close() tears down every thread's."""
    log = tmp_path / "log"
    torn: list[Model] = []
    r = Resource(load, "m", str(log), scope="thread", teardown=torn.append)
    got: list[Model] = []
    threads = [threading.Thread(target=lambda: got.extend([r.get(), r.get()])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 3
    assert len(lines(log, "build")) == 3
    r.close()
    assert len(torn) == 3


def test_process_scope_builds_once_when_threads_race(tmp_path: Path) -> None:
    """Threads asking for a process-scope resource at once wait for one build (a lock)."""
    calls = []

    def slow() -> object:
        calls.append(1)
        time.sleep(0.05)
        return object()

    r = Resource(slow)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(r.get())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({id(g) for g in got}) == 1
    r.close()


def test_bad_arguments_are_refused() -> None:
    """A factory that is not callable or an unknown scope is refused at construction, naming what is allowed."""
    with pytest.raises(TypeError, match="callable factory"):
        Resource("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'process', 'thread'"):
        Resource(load, scope="worker")


@pytest.mark.parametrize("executor", IN_PROCESS)
def test_in_process_executors_build_once_across_calls(executor: str, tmp_path: Path) -> None:
    """On in-process executors a process-scope resource is built once, in the caller's process, for
    every map and run on the engine; the node receives the built object (never pickled)."""
    log = tmp_path / "log"
    r = Resource(load, "m", str(log))
    with HypernodesEngine(map_executor=executor, max_workers=2) as engine:
        p = Pipeline([use], engine=engine)
        first = p.map({"x": list(range(8)), "model": r}, "x")["seen"]
        second = p.map({"x": list(range(8)), "model": r}, "x")["seen"]
        one = p.run({"x": 1, "model": r})["seen"]
    assert [s[0] for s in first] == list(range(8))
    assert {s[2] for s in first + second} == {os.getpid()}
    assert one[1] == "m"
    assert len(lines(log, "build")) == 1
    r.close()


def test_thread_scope_on_threads_builds_one_per_worker_thread(tmp_path: Path) -> None:
    """scope="thread" on a threaded map: one instance per thread that ran items, at most max_workers."""
    log = tmp_path / "log"
    r = Resource(load, "m", str(log), scope="thread")
    with HypernodesEngine(map_executor="threaded", max_workers=2) as engine:
        seen = Pipeline([use], engine=engine).map({"x": list(range(40)), "model": r}, "x")["seen"]
    threads = {s[3] for s in seen}
    assert len(lines(log, "build")) == len(threads) <= 2
    r.close()


def test_processes_build_once_per_worker_reuse_and_tear_down(tmp_path: Path) -> None:
    """On "parallel" each worker process builds the resource once, reuses it on the next call, never
    pickles it, and tears it down when the engine shuts its pool down."""
    log = tmp_path / "log"
    r = Resource(load, "m", str(log), teardown=close)
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        p = Pipeline([use], engine=engine)
        first = p.map({"x": list(range(20)), "model": r}, "x")["seen"]
        builds = lines(log, "build")
        second = p.map({"x": list(range(20)), "model": r}, "x")["seen"]
        assert lines(log, "build") == builds  # the same pool: no new builds
    pids = {s[2] for s in first + second}
    assert os.getpid() not in pids
    assert len(builds) == len({b.split()[2] for b in builds}) <= 2
    assert {b.split()[2] for b in builds} >= {str(p) for p in {s[2] for s in first}}
    deadline = time.monotonic() + 10
    while len(lines(log, "close")) < len(builds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(c.split()[2] for c in lines(log, "close")) == sorted(b.split()[2] for b in builds)


def test_node_level_processes_resolve_in_the_worker(tmp_path: Path) -> None:
    """node_executor="parallel": the node's worker builds the resource (the built object is never pickled)."""
    log = tmp_path / "log"
    r = Resource(load, "m", str(log))
    with HypernodesEngine(node_executor="parallel", max_workers=1) as engine:
        seen = Pipeline([use], engine=engine).run({"x": 3, "model": r})["seen"]
    assert seen[:2] == (3, "m")
    assert seen[2] != os.getpid()


def test_cache_keys_by_factory_and_arguments(tmp_path: Path) -> None:
    """The cache keys a resource by its factory and arguments, never by the built object: the same
    recipe (another Resource object) hits, other arguments miss."""
    log = str(tmp_path / "log")
    assert hash_value(Resource(load, "a", log)) == hash_value(Resource(load, "a", log))
    assert hash_value(Resource(load, "a", log)) != hash_value(Resource(load, "b", log))
    assert hash_value(Resource(load, "a", log)) != hash_value(Resource(other, "a", log))
    r = Resource(load, "a", log)
    assert hash_value(r.get()) == hash_value(r)  # the built object stands for its recipe
    r.close()
    calls = str(tmp_path / "calls")  # a file: a list the node appends to would change its own code key

    @node(output_name="name")
    def named(x: int, model: Model) -> str:
        with open(calls, "a") as f:
            f.write(f"{x}\n")
        return f"{model.name}{x}"

    p = Pipeline([named], cache=MemoryCache())
    for name in ("a", "a", "b"):
        res = Resource(load, name, log)
        assert p.map({"x": [1, 2], "model": res}, "x")["name"] == [f"{name}1", f"{name}2"]
        res.close()
    assert Path(calls).read_text().split() == ["1", "2", "1", "2"]  # the second "a" map hit, "b" missed


def failing(log: str) -> object:
    """A factory that fails on its first call (in this process) and works after."""
    path = Path(log)
    if not path.exists():
        path.write_text("failed once")
        raise ConnectionError("model server down")
    return object()


def broken() -> object:
    """A factory that always fails."""
    raise ConnectionError("model server down")


@node(output_name="y")
def needs(x: int, model: object) -> int:
    return x


@node(output_name="z")
def free(x: int) -> int:
    return -x


@pytest.mark.parametrize("executor", ["sequential", "threaded", "parallel"])
def test_a_raising_factory_fails_the_items_that_need_it(executor: str) -> None:
    """Under "continue" each item needing a resource whose factory raises is that item's Failure (with the
    factory's error, numbered with its item); outputs that do not need it are kept."""
    with HypernodesEngine(map_executor=executor, max_workers=2) as engine:
        out = Pipeline([needs, free], engine=engine).map(
            {"x": [1, 2, 3], "model": Resource(broken)}, "x", on_error="continue"
        )
    assert out["z"] == [-1, -2, -3]
    assert [type(v) for v in out["y"]] == [Failure] * 3
    assert [f.item for f in out["y"]] == [0, 1, 2]
    assert all("ConnectionError" in f.type_name for f in out["y"])


def test_a_raising_factory_raises_and_is_retried_by_the_next_call(tmp_path: Path) -> None:
    """Under "raise" the factory's own error propagates, noted with the resource's name; a failed
    build is not remembered: the next call builds it."""
    r = Resource(failing, str(tmp_path / "flag"))
    p = Pipeline([needs])
    with pytest.raises(ConnectionError) as info:
        p.map({"x": [1, 2], "model": r}, "x")
    assert "resource `failing`" in "".join(getattr(info.value, "__notes__", []))
    assert p.map({"x": [1, 2], "model": r}, "x")["y"] == [1, 2]
    r.close()


def test_dask_builds_once_per_worker(dask_client: Any, tmp_path: Path) -> None:
    """On Dask each worker process builds the resource at most once for two maps."""
    from hypernodes import DaskEngine

    log = tmp_path / "log"
    r = Resource(load, "m", str(log))
    with DaskEngine(dask_client) as engine:
        p = Pipeline([use], engine=engine)
        seen = p.map({"x": list(range(10)), "model": r}, "x")["seen"]
        seen += p.map({"x": list(range(10)), "model": r}, "x")["seen"]
    builds = [b.split()[2] for b in lines(log, "build")]
    assert len(builds) == len(set(builds))
    assert {str(s[2]) for s in seen} <= set(builds)


class _LockedFactory:
    """A factory that cannot pickle (it holds a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self) -> int:
        return 1


def test_an_unpicklable_factory_is_named_before_work_on_processes() -> None:
    """On "parallel" a Resource whose factory cannot pickle is refused before any node runs, named as
    a Resource input."""
    with (
        HypernodesEngine(map_executor="parallel", max_workers=2) as engine,
        pytest.raises(TypeError) as info,
    ):
        Pipeline([needs], engine=engine).map({"x": [1, 2], "model": Resource(_LockedFactory())}, "x")
    assert "input `model` (a Resource: its factory or arguments) cannot be pickled" in "".join(
        getattr(info.value, "__notes__", [])
    )


@node(output_name="seen")
async def ause(x: int, model: Model) -> tuple[int, str, int, int]:
    return (x, model.name, model.pid, model.thread)


def test_async_nodes_on_the_async_executor_get_the_instance(tmp_path: Path) -> None:
    """An ``async def`` node mapped on "async" (one coroutine per slice) receives the built object, built once."""
    log = tmp_path / "log"
    r = Resource(load, "m", str(log))
    with HypernodesEngine(map_executor="async", max_workers=4) as engine:
        seen = Pipeline([ause], engine=engine).map({"x": list(range(10)), "model": r}, "x")["seen"]
    assert [s[:2] for s in seen] == [(x, "m") for x in range(10)]
    assert len(lines(log, "build")) == 1
    r.close()
