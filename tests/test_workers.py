"""Worker processes fit for ML work: thread caps, no orphans, large inputs sent once, cache hits served first."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import psutil
import pytest

from hypernodes import CallbackContext, DiskCache, HypernodesEngine, Pipeline, PipelineCallback, node
from hypernodes._run.payload import Spilled, pickled
from hypernodes._run.tasks import ShippedItems, SliceTask
from hypernodes.errors import ExecutorSpecError

from .kinds import PicklingExecutor

SCRIPT_TIMEOUT_S = 120


def _script_env(core: ModuleType) -> dict[str, str]:
    return {**os.environ, "HYPERNODES_NO_EXTENSIONS": "1" if core.IMPLEMENTATION == "python" else "0"}


def blas_threads(x: int) -> list[int]:
    """The thread count of every native thread pool loaded in this process (numpy's BLAS)."""
    import numpy
    from threadpoolctl import threadpool_info

    numpy.ones((2, 2)) @ numpy.ones((2, 2))
    return sorted({info["num_threads"] for info in threadpool_info()})


def _threads_in_workers(**engine_options: Any) -> list[int]:
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("numpy")
    with HypernodesEngine(map_executor="parallel", **engine_options) as engine:
        pipeline = Pipeline([node(blas_threads, output_name="threads")], backend=engine)
        found = pipeline.map({"x": [0, 1, 2, 3]}, "x")["threads"]
    return sorted({n for threads in found for n in threads})


def test_parallel_workers_cap_native_threads_at_cores_over_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default each "parallel" worker runs max(1, cpus // workers) BLAS threads, as joblib's do."""
    from loky import cpu_count

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert _threads_in_workers(max_workers=2) == [max(1, cpu_count() // 2)]


def test_inner_threads_sets_the_native_threads_of_each_worker() -> None:
    """inner_threads=N overrides the default cap (one worker would otherwise get every CPU)."""
    assert _threads_in_workers(max_workers=1, inner_threads=1) == [1]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "all", True])
def test_a_bad_inner_threads_is_refused_at_construction(bad: Any) -> None:
    """inner_threads must be "auto", None or a positive int; the message lists what is allowed."""
    with pytest.raises(ExecutorSpecError, match=r"inner_threads must be 'auto'.*positive int.*None"):
        HypernodesEngine(map_executor="parallel", inner_threads=bad)


ORPHANED_MAP = """
import os, sys, time
from hypernodes import HypernodesEngine, Pipeline, node

def item(x, path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.02)
    return x

if __name__ == "__main__":
    engine = HypernodesEngine(map_executor="parallel", max_workers=2)
    Pipeline([node(item, output_name="y")], backend=engine).map({"x": list(range(4000)), "path": sys.argv[1]}, "x")
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_workers_stop_within_two_seconds_of_their_parents_death(core: ModuleType, tmp_path: Path) -> None:
    """A script SIGKILLed in the middle of a "parallel" map: its workers exit within 2 s and run
    no further item (the side-effect file stops growing), queued slices included."""
    script = tmp_path / "orphans.py"
    script.write_text(textwrap.dedent(ORPHANED_MAP))
    log = tmp_path / "calls.txt"
    log.touch()
    proc = subprocess.Popen([sys.executable, str(script), str(log)], env=_script_env(core))
    try:
        deadline = time.monotonic() + SCRIPT_TIMEOUT_S
        while len(set(log.read_text().split())) < 2 and time.monotonic() < deadline:  # both workers busy
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        workers = {int(pid) for pid in log.read_text().split()}
        while not all(_gone(pid) for pid in workers) and time.monotonic() < killed + 5:
            time.sleep(0.05)
        stopped = time.monotonic() - killed
        calls = len(log.read_text().split())
        time.sleep(0.5)
        assert len(log.read_text().split()) == calls, "items still ran after the workers were said gone"
        assert len(workers) == 2
        assert stopped < 2.0, f"the orphaned workers ran on for {stopped:.1f} s"
    finally:
        for pid in {int(p) for p in log.read_text().split()}:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


class CountingPool(ProcessPoolExecutor):
    """A process pool that records how many bytes each task's arguments pickle to."""

    def __init__(self) -> None:
        super().__init__(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
        self.sent: list[int] = []
        self.files: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(len(pickled(args)))
        self.files += [a.payload.path for a in args if isinstance(a, SliceTask) and isinstance(a.payload, Spilled)]
        return super().submit(fn, *args, **kwargs)


def size_of(x: int, blob: bytes) -> int:
    """The item plus the shared blob's length."""
    return x + len(blob)


def test_a_large_shared_input_travels_once_per_call_not_once_per_task() -> None:
    """A 4 MB shared input mapped over 8 items: the 8 tasks together carry less than one copy of it
    (the payload goes through a file each worker reads once), and the file is gone after the call."""
    blob = b"x" * (4 << 20)
    pool = CountingPool()
    try:
        with HypernodesEngine(map_executor=pool) as engine:
            pipeline = Pipeline([node(size_of, output_name="n")], backend=engine)
            assert pipeline.map({"x": list(range(8)), "blob": blob}, "x")["n"] == [len(blob) + i for i in range(8)]
    finally:
        pool.shutdown()
    assert len(pool.sent) == 8
    assert sum(pool.sent) < len(blob), pool.sent
    assert pool.files
    assert not any(os.path.exists(f) for f in pool.files)


def first_and_sum(x: int, arr: Any) -> tuple[float, float]:
    """The shared array's value at ``x`` and its sum."""
    return float(arr[x]), float(arr.sum())


@pytest.mark.parametrize("mode", ["r", "r+"])
def test_an_array_that_lives_in_a_file_travels_as_its_place_not_its_bytes(tmp_path: Path, mode: str) -> None:
    """A 4 MB numpy.memmap (and a view of one) given to a process map is not copied: no payload
    file, the tasks carry a few KB, and each worker maps the same file, writable, its writes its own."""
    numpy = pytest.importorskip("numpy")
    path = tmp_path / "data.f8"
    numpy.arange(1 << 19, dtype="f8").tofile(path)
    arr = numpy.memmap(path, dtype="f8", mode=mode)
    total = float(arr.sum())
    pool = CountingPool()
    try:
        with HypernodesEngine(map_executor=pool) as engine:
            read = Pipeline([node(first_and_sum, output_name="seen")], backend=engine)
            whole = read.map({"x": list(range(8)), "arr": arr}, "x")["seen"]
            view = read.map({"x": [0, 1], "arr": arr[1000:]}, "x")["seen"]
            written = Pipeline([node(scribble, output_name="total")], backend=engine)
            assert len(written.map({"x": [0, 1], "arr": arr}, "x")["total"]) == 2
    finally:
        pool.shutdown()
    assert pool.files == []
    assert max(pool.sent) < 100_000, pool.sent
    assert whole == [(float(x), total) for x in range(8)]
    assert view == [(1000.0 + x, total - sum(range(1000))) for x in range(2)]
    assert float(numpy.fromfile(path, dtype="f8").sum()) == total  # the workers' writes were their own


def test_a_copy_on_write_memmap_travels_with_the_callers_private_writes(tmp_path: Path) -> None:
    """A numpy.memmap opened "c" holds writes its file does not: its values are sent, not its file's."""
    numpy = pytest.importorskip("numpy")
    path = tmp_path / "data.f8"
    numpy.zeros(1 << 19, dtype="f8").tofile(path)
    arr = numpy.memmap(path, dtype="f8", mode="c")
    arr[1] = 7.0
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pipeline = Pipeline([node(first_and_sum, output_name="seen")], backend=engine)
        assert pipeline.map({"x": [1, 2], "arr": arr}, "x")["seen"] == [(7.0, 7.0), (0.0, 7.0)]


def scribble(x: int, arr: Any) -> float:
    """Writes into the shared array, then reads it back."""
    arr[x] = -1.0
    return float(arr.sum())


def test_large_shared_arrays_stay_writable_and_private_to_each_worker() -> None:
    """A large shared numpy input (mapped from a file) arrives writable in the workers, and a
    worker's writes are its own: the caller's array keeps its values."""
    numpy = pytest.importorskip("numpy")
    arr = numpy.zeros(1 << 18)  # 2 MB: sent through a file
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        pipeline = Pipeline([node(scribble, output_name="total")], backend=engine)
        totals = pipeline.map({"x": [0, 1], "arr": arr}, "x")["total"]
    assert max(totals) == -1.0  # the first write in a worker sees only itself
    assert arr.sum() == 0.0


class Dropped:
    """A payload part that notes the thread its last reference is dropped on."""

    dropped_on: ClassVar[list[str]] = []

    def __del__(self) -> None:
        self.dropped_on.append(threading.current_thread().name)


def test_a_worker_lets_go_of_an_ended_calls_payload_on_a_helper_thread(tmp_path: Path) -> None:
    """A worker that reads the next call's large payload drops the ended call's on a helper thread:
    freeing its file's pages (~50 ms per 200 MB) no longer delays the next slice."""
    from hypernodes._run import payload as payloads

    def spilled(name: str, obj: Any) -> Spilled:
        data = pickled(obj)
        (tmp_path / name).write_bytes(data)
        return Spilled(str(tmp_path / name), ((0, len(data)),))

    first = spilled("a", [Dropped()])
    Dropped.dropped_on.clear()  # the pickled instance, dropped here
    payloads.load(uuid.uuid4().hex, first)
    os.unlink(first.path)  # the call ended
    payloads.load(uuid.uuid4().hex, spilled("b", [0]))
    for _ in range(500):
        if Dropped.dropped_on:
            break
        time.sleep(0.01)
    assert Dropped.dropped_on == ["hypernodes-payload-drop"]
    for thread in threading.enumerate():
        if thread.name == "hypernodes-payload-drop":
            thread.join()


def _worker_processes() -> list[int]:
    return [
        child.pid
        for child in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(child.cmdline())
    ]


def tripled(x: int) -> int:
    """Three times ``x``."""
    return 3 * x


class Seen(PipelineCallback):
    """Records the cache hits and the items done that the callbacks hear."""

    def __init__(self) -> None:
        self.cached: list[str] = []
        self.done = 0

    def on_node_cached(self, node_id: str, signature: str, ctx: CallbackContext) -> None:
        self.cached.append(node_id)

    def on_map_items_done(self, count: int, ctx: CallbackContext) -> None:
        self.done += count


def test_a_fully_cached_process_map_starts_no_worker(tmp_path: Path) -> None:
    """A "parallel" map whose every item is in the cache is served in the caller: no worker
    process starts, and the callbacks hear each hit and every item done."""
    cache = DiskCache(tmp_path / "c")
    items = {"x": list(range(6))}
    Pipeline([node(tripled, output_name="y")], cache=cache).map(items, "x")
    seen = Seen()
    # A pool of its own (no other test caps inner threads at 1), so that any task sent to it
    # would start workers; the suite's shared pools may be alive already, and do not count.
    before = set(_worker_processes())
    with HypernodesEngine(map_executor="parallel", max_workers=2, inner_threads=1) as engine:
        pipeline = Pipeline([node(tripled, output_name="y")], backend=engine, cache=cache, callbacks=[seen])
        assert pipeline.map(items, "x") == {"y": [3 * x for x in range(6)]}
        assert set(_worker_processes()) - before == set()
    assert seen.cached == ["tripled"] * 6
    assert seen.done == 6


class SliceCounting(PicklingExecutor):
    """Records how many items each map slice sent to it holds."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.items: list[int] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        part = args[0].items  # a SliceTask
        self.items.append(len(part.items()) if isinstance(part, ShippedItems) else len(part))
        return super().submit(fn, *args, **kwargs)


def test_only_the_items_a_process_map_misses_in_the_cache_travel(tmp_path: Path) -> None:
    """Items 0-9 cached, a map of 0-19 on worker processes: the slices sent hold the 10 new items only,
    and the results come back in order."""
    cache = DiskCache(tmp_path / "c")
    Pipeline([node(tripled, output_name="y")], cache=cache).map({"x": list(range(0, 20, 2))}, "x")
    executor = SliceCounting()
    try:
        with HypernodesEngine(map_executor=executor) as engine:
            pipeline = Pipeline([node(tripled, output_name="y")], backend=engine, cache=cache)
            assert pipeline.map({"x": list(range(20))}, "x") == {"y": [3 * x for x in range(20)]}
    finally:
        executor.shutdown()
    assert sum(executor.items) == 10


def added(x: int, y: int) -> int:
    """``x + 10 * y``."""
    return x + 10 * y


def test_a_fully_cached_product_map_on_processes_starts_no_worker(tmp_path: Path) -> None:
    """A "parallel" product map whose every combination is cached is served in the caller: no worker
    process starts, and the callbacks hear each hit and every item done."""
    cache = DiskCache(tmp_path / "c")
    inputs = {"x": [1, 2, 3], "y": [4, 5]}
    expected = {"z": [x + 10 * y for x in (1, 2, 3) for y in (4, 5)]}
    Pipeline([node(added, output_name="z")], cache=cache).map(inputs, ["x", "y"], map_mode="product")
    seen = Seen()
    before = set(_worker_processes())  # the suite's shared pools and clusters may run already
    with HypernodesEngine(map_executor="parallel", max_workers=2, inner_threads=1) as engine:
        pipeline = Pipeline([node(added, output_name="z")], backend=engine, cache=cache, callbacks=[seen])
        assert pipeline.map(inputs, ["x", "y"], map_mode="product") == expected
        assert set(_worker_processes()) - before == set()
    assert seen.cached == ["added"] * 6
    assert seen.done == 6


def test_only_the_combinations_a_product_map_misses_in_the_cache_travel(tmp_path: Path) -> None:
    """Combinations with x in 0-4 cached, a product map with x in 0-9 on worker processes: the slices
    sent hold the 15 new combinations only, and the results come back in product order."""
    cache = DiskCache(tmp_path / "c")
    ys = [0, 1, 2]
    Pipeline([node(added, output_name="z")], cache=cache).map(
        {"x": list(range(5)), "y": ys}, ["x", "y"], map_mode="product"
    )
    executor = SliceCounting()
    try:
        with HypernodesEngine(map_executor=executor) as engine:
            pipeline = Pipeline([node(added, output_name="z")], backend=engine, cache=cache)
            result = pipeline.map({"x": list(range(10)), "y": ys}, ["x", "y"], map_mode="product")
    finally:
        executor.shutdown()
    assert result == {"z": [x + 10 * y for x in range(10) for y in ys]}
    assert sum(executor.items) == 15


def test_a_worker_traceback_names_the_file_of_a_node_sent_by_value() -> None:
    """A node defined inside a function (cloudpickle sends it by value) that raises in a worker
    process: the traceback names this file and the line that raised, not ``<dynamic-code>``."""

    def fails(x: int) -> int:
        raise ValueError(f"bad item {x}")

    line = fails.__code__.co_firstlineno + 1
    with HypernodesEngine(map_executor="parallel", max_workers=1) as engine:
        pipeline = Pipeline([node(fails, output_name="y")], backend=engine)
        with pytest.raises(ValueError, match="bad item 0") as info:
            pipeline.map({"x": [0]}, "x")
    remote = str(info.value.__cause__)  # loky attaches the worker's formatted traceback
    assert f'File "{__file__}", line {line}, in fails' in remote, remote
    assert "<dynamic-code>" not in remote


UNPICKLED: list[int] = []


def _arrived() -> Tracked:
    UNPICKLED.append(1)
    return Tracked()


class Tracked:
    """A value that counts, in the process that unpickles it, each time it arrives."""

    def __reduce__(self) -> Any:
        return (_arrived, ())


def make_tracked(x: int) -> Tracked:
    """An intermediate value that counts its arrivals."""
    return Tracked()


def drop(t: Tracked) -> int:
    """The requested output: a plain int."""
    return 1


class Durations(PipelineCallback):
    """Reads only names and durations."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        self.seen.append(node_id)


class Outputs(Durations):
    """Reads the outputs."""

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        self.seen.append(f"{node_id}={type(outputs.get('t')).__name__}")


@pytest.mark.parametrize(("callback", "travels"), [(Durations, False), (Outputs, True)])
def test_node_values_travel_back_only_to_callbacks_that_read_them(callback: type[Durations], travels: bool) -> None:
    """A callback whose on_node_end never reads ``outputs`` (node_values left at its default) gets no
    values from worker processes: an intermediate value is not sent back for it. One that reads
    ``outputs`` gets them."""
    UNPICKLED.clear()
    hooks = callback()
    with HypernodesEngine(map_executor="parallel", max_workers=1) as engine:
        nodes = [node(make_tracked, output_name="t"), node(drop, output_name="y")]
        pipeline = Pipeline(nodes, backend=engine, callbacks=[hooks])
        assert pipeline.map({"x": [0, 1]}, "x", output_name="y") == {"y": [1, 1]}
    assert bool(UNPICKLED) is travels
    assert len(hooks.seen) == 4
