"""DaskEngine: results equal the sequential engine's; batches, scatter, keys; lifetime and faults.

Most tests share the session's two-process loopback cluster (``dask_client``). The
ones that start their own cluster or kill workers run under one core only: they
test the engine's plumbing, which does not depend on the core.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from hypernodes import HypernodesEngine, Pipeline, PipelineCallback, node
from hypernodes._run.tasks import SliceTask
from hypernodes.engines import DaskEngine, Engine
from hypernodes.errors import WorkerDied
from hypernodes.failures import Failure

distributed = pytest.importorskip("distributed")

ONE_CORE = pytest.mark.parametrize("core", ["python"], indirect=True)


@node(output_name="y")
def inc(x: int) -> int:
    return x + 1


@node(output_name=("s", "d"))
def sum_diff(y: int, k: int = 3) -> tuple[int, int]:
    return y + k, y - k


@node(output_name="w")
async def slow_double(s: int) -> int:
    await asyncio.sleep(0)
    return 2 * s


PIPELINE = Pipeline([inc, sum_diff, slow_double], name="inner")


@node(output_name="total")
def total(ws: list[int]) -> int:
    return sum(ws)


NESTED = Pipeline(
    [PIPELINE.as_node(input_mapping={"xs": "x"}, output_mapping={"w": "ws"}, map_over="xs", name="per_x"), total],
    name="outer",
)


class Recording:
    """A client stand-in that forwards to the real client and records what the engine asks of it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.keys: list[str] = []
        self.payloads = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        key = kwargs.get("key", "")
        if key.endswith("-payload"):
            self.payloads += 1
        else:
            self.keys.append(key)
        return self.client.submit(*args, **kwargs)

    def scatter(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.scatter(*args, **kwargs)

    def nthreads(self) -> Any:
        return self.client.nthreads()


@pytest.fixture
def engine(dask_client: Any) -> Any:
    with DaskEngine(dask_client) as e:
        yield e


def _same(pipeline: Pipeline, engine: Engine, how: str, **kwargs: Any) -> None:
    expected = getattr(Pipeline(list(pipeline.nodes), name=pipeline.name), how)(**kwargs)
    got = getattr(Pipeline(list(pipeline.nodes), backend=engine, name=pipeline.name), how)(**kwargs)
    assert got == expected


def test_map_zip_and_product_equal_the_sequential_engine(engine: DaskEngine) -> None:
    """zip and product maps (with a broadcast input, tuple outputs and an async node) equal the sequential result."""
    _same(PIPELINE, engine, "map", inputs={"x": list(range(37)), "k": 5}, map_over="x")
    _same(PIPELINE, engine, "map", inputs={"x": [1, 2, 3], "k": [0, 10]}, map_over=["x", "k"], map_mode="product")
    _same(PIPELINE, engine, "map", inputs={"x": list(range(9))}, map_over="x", output_name="d")
    assert Pipeline([inc], backend=engine).map(inputs={"x": []}, map_over="x") == {"y": []}


def test_run_and_nested_equal_the_sequential_engine(engine: DaskEngine) -> None:
    """run(), pipeline(**inputs) and a nested mapped pipeline equal the sequential result."""
    _same(PIPELINE, engine, "run", inputs={"x": 4})
    _same(NESTED, engine, "run", inputs={"xs": [1, 2, 3]})
    _same(NESTED, engine, "map", inputs={"xs": [[1], [2, 3], []]}, map_over="xs")
    assert Pipeline([inc], backend=engine)(x=1) == {"y": 2}


def test_node_tasks_run_each_node_on_the_cluster(dask_client: Any) -> None:
    """With node_tasks=True, run() submits one keyed Dask task per node and returns the sequential result."""
    recording = Recording(dask_client)
    with DaskEngine(recording, node_tasks=True) as engine:
        _same(PIPELINE, engine, "run", inputs={"x": 4})
    assert len(recording.keys) == 3
    assert all(k.startswith("hypernodes-") and "-node-" in k for k in recording.keys)


def test_map_sends_keyed_batches_and_scatters_once(dask_client: Any) -> None:
    """A map sends its payload once and submits total-threads x tasks_per_worker slices with explicit keys."""
    recording = Recording(dask_client)
    with DaskEngine(recording, tasks_per_worker=3) as engine:
        out = Pipeline([inc], backend=engine).map(inputs={"x": list(range(100))}, map_over="x")
        threads = sum(dask_client.nthreads().values())
    assert out == {"y": list(range(1, 101))}
    assert recording.payloads == 1
    assert len(recording.keys) == threads * 3
    token = recording.keys[0].split("-")[1]
    starts = sorted(int(k.rsplit("-", 1)[1]) for k in recording.keys)
    assert all(k.startswith(f"hypernodes-{token}-") for k in recording.keys)
    assert starts[0] == 0
    assert len(set(starts)) == len(starts)


def blob_size(x: int, blob: bytes) -> int:
    """The item plus the shared blob's length."""
    return x + len(blob)


class Carried(Recording):
    """Records the payload each slice task carries too."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.carried: list[Any] = []

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("key", "").startswith("hypernodes-"):
            self.carried += [a.payload for a in args if isinstance(a, SliceTask)]
        return super().submit(*args, **kwargs)


def test_a_large_payload_goes_to_workers_on_this_machine_through_a_file(dask_client: Any) -> None:
    """A 4 MB shared input on a cluster whose workers run on loopback: no payload task, each slice
    carries a reference to a file the workers map (a few hundred bytes), and the file is gone after."""
    from hypernodes._run.payload import Spilled

    recording = Carried(dask_client)
    blob = b"x" * (4 << 20)
    with DaskEngine(recording) as engine:
        out = Pipeline([node(blob_size, output_name="n")], backend=engine).map({"x": list(range(8)), "blob": blob}, "x")
    assert out == {"n": [len(blob) + x for x in range(8)]}
    assert recording.payloads == 0
    assert recording.carried
    assert all(isinstance(p, Spilled) for p in recording.carried)
    assert not os.path.exists(recording.carried[0].path)


class Counting(PipelineCallback):
    """Counts the hooks a map fires."""

    def __init__(self) -> None:
        self.items = 0
        self.nodes = 0
        self.batches = 0

    def on_map_item_end(self, idx: int, duration: float, ctx: Any) -> None:
        self.items += 1

    def on_node_end(self, node_id: str, outputs: Any, duration: float, ctx: Any) -> None:
        self.nodes += 1

    def on_map_items_done(self, count: int, ctx: Any) -> None:
        self.batches += 1


def test_callbacks_hear_the_workers_events(engine: DaskEngine) -> None:
    """Callbacks get every item's and node's events from the workers, and progress once per batch."""
    counting = Counting()
    pipeline = Pipeline([inc, sum_diff], backend=engine, callbacks=[counting])
    assert pipeline.map(inputs={"x": list(range(20))}, map_over="x")["s"] == [x + 4 for x in range(20)]
    assert (counting.items, counting.nodes) == (20, 40)
    assert 1 <= counting.batches <= 20


def test_node_errors_keep_their_type_and_retries_rerun_them(engine: DaskEngine, tmp_path: Path) -> None:
    """A node's error reaches the caller with its type and note; retries= reruns a task that raised."""

    @node(output_name="y")
    def fails_on_3(x: int) -> int:
        if x == 3:
            raise ZeroDivisionError("three")
        return x

    with pytest.raises(ZeroDivisionError, match="three") as info:
        Pipeline([fails_on_3], backend=engine).map(inputs={"x": list(range(6))}, map_over="x")
    assert any("map item 3" in n for n in getattr(info.value, "__notes__", []))

    marker = str(tmp_path / "failed-once")

    @node(output_name="y")
    def fails_once(x: int) -> int:
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first try")
        return x

    with DaskEngine(engine.client, retries=1) as retrying:
        assert Pipeline([fails_once], backend=retrying).map(inputs={"x": [1, 2]}, map_over="x") == {"y": [1, 2]}


def test_unpicklable_input_fails_before_anything_is_sent(dask_client: Any) -> None:
    """An unpicklable broadcast input raises pickle's error naming it, and no task is submitted."""
    import threading

    recording = Recording(dask_client)

    @node(output_name="y")
    def uses(x: int, lock: Any) -> int:
        return x

    with DaskEngine(recording) as engine, pytest.raises(TypeError) as info:
        Pipeline([uses], backend=engine).map(inputs={"x": [1, 2], "lock": threading.Lock()}, map_over="x")
    assert any("input `lock`" in n for n in getattr(info.value, "__notes__", []))
    assert recording.keys == []
    assert recording.payloads == 0


def test_a_users_client_is_never_closed(dask_client: Any) -> None:
    """shutdown() of an engine on the user's client leaves the client running."""
    engine = DaskEngine(dask_client)
    Pipeline([inc], backend=engine).map(inputs={"x": [1]}, map_over="x")
    engine.shutdown()
    with Pipeline([inc], backend=DaskEngine(dask_client)) as pipeline:
        pipeline.run(inputs={"x": 1})
    assert dask_client.status == "running"
    assert dask_client.submit(int, "7").result() == 7


def test_engine_options_are_checked() -> None:
    """A client that is no client, or bad sizes, fail at construction naming what is allowed."""
    with pytest.raises(TypeError, match=r"takes a distributed\.Client"):
        DaskEngine(42)
    with pytest.raises(ValueError, match="retries"):
        DaskEngine(retries=-1)
    with pytest.raises(ValueError, match="tasks_per_worker"):
        DaskEngine(tasks_per_worker=0)
    with pytest.raises(ValueError, match="cannot run inside the worker processes"):
        DaskEngine(node_executor="parallel")


def test_missing_distributed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without distributed, DaskEngine() raises an ImportError naming the extra to install."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'hypernodes\[dask\]'"):
        DaskEngine()


def _listening(pids: list[int]) -> set[str]:
    ips = set()
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                ips.add(conn.laddr.ip)
    return ips


@ONE_CORE
def test_own_cluster_binds_loopback_and_shutdown_closes_it() -> None:
    """Without a client, the engine's LocalCluster listens on 127.0.0.1 only, and shutdown() leaves no process."""
    engine = DaskEngine(n_workers=1)
    with engine:
        assert Pipeline([inc], backend=engine).map(inputs={"x": [1, 2, 3]}, map_over="x") == {"y": [2, 3, 4]}
        cluster = engine.dask.cluster
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        me = psutil.Process()
        assert _listening([me.pid, *(c.pid for c in me.children(recursive=True))]) == {"127.0.0.1"}
    assert cluster.status.name == "closed"
    assert engine.dask.cluster is None
    # The engine stays usable: a later call starts a fresh cluster, closed again by shutdown.
    with engine:
        assert Pipeline([inc], backend=engine).run(inputs={"x": 1}) == {"y": 2}
        assert Pipeline([inc], backend=engine).map(inputs={"x": [5]}, map_over="x") == {"y": [6]}


@ONE_CORE
@pytest.mark.timeout(90)
def test_a_killed_worker_is_retried_then_fails_clearly(tmp_path: Path) -> None:
    """A worker killed once is retried; a map item whose workers die every time raises WorkerDied naming
    it (found by running the slice's items again in pieces), its cause Dask's KilledWorker; a node task
    whose workers die raises KilledWorker naming the node."""
    marker = str(tmp_path / "killed-once")

    @node(output_name="y")
    def dies_once(x: int) -> int:
        if x == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return x

    @node(output_name="y")
    def always_dies(x: int) -> int:
        os._exit(1)

    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), DaskEngine(n_workers=1) as engine:
        assert Pipeline([dies_once], backend=engine).map(inputs={"x": [0, 1, 2]}, map_over="x") == {"y": [0, 1, 2]}
        with pytest.raises(WorkerDied) as info:
            Pipeline([always_dies], backend=engine, name="doomed").map(inputs={"x": [7, 8]}, map_over="x")
        assert info.value.item in (0, 1)
        assert isinstance(info.value.__cause__, distributed.KilledWorker)
        assert Pipeline([inc], backend=engine).map(inputs={"x": [1]}, map_over="x") == {"y": [2]}
        nodes_on_dask = DaskEngine(engine.client, node_tasks=True)  # the same cluster (its client stays open)
        with nodes_on_dask, pytest.raises(distributed.KilledWorker) as info:
            Pipeline([always_dies], backend=nodes_on_dask).run(inputs={"x": 1})
        notes = " ".join(getattr(info.value, "__notes__", []))
        assert "the Dask workers running node `always_dies` died" in notes  # the node, not "a task"


@node(output_name="y")
def dies_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)
    return 10 * x


@ONE_CORE
def test_an_item_that_kills_its_dask_worker_is_its_failure_under_continue() -> None:
    """on_error="continue" on Dask: the item whose worker dies every time becomes its own Failure
    (a WorkerDied naming it), found by running the dead slice's items in pieces; every other item
    keeps its result."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), DaskEngine(n_workers=2) as engine:
        pipeline = Pipeline([dies_on_three], backend=engine, on_error="continue")
        result = pipeline.map(inputs={"x": list(range(8))}, map_over="x")
    ys = result["y"]
    assert [y for i, y in enumerate(ys) if i != 3] == [10 * x for x in range(8) if x != 3]
    assert isinstance(ys[3], Failure)
    assert isinstance(ys[3].error, WorkerDied)
    assert ys[3].error.item == 3


def test_dask_engine_is_an_engine() -> None:
    """DaskEngine implements Engine (through HypernodesEngine), so Pipeline accepts it as backend."""
    assert issubclass(DaskEngine, HypernodesEngine)
    assert issubclass(DaskEngine, Engine)


@node(output_name="y")
def inc_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x + 1


def test_on_error_continue_keeps_going_on_the_cluster(engine: DaskEngine) -> None:
    """A DaskEngine map with on_error="continue" returns every item; the failure travels back as a marker."""
    pipeline = Pipeline([inc_or_fail, sum_diff], backend=engine)
    result = pipeline.map(inputs={"x": list(range(6))}, map_over="x", on_error="continue")
    assert result.failed_items == [3]
    (failure,) = result.failures
    assert isinstance(failure.error, ValueError)
    assert failure.node == "inc_or_fail"
    assert "map item 3" in failure.traceback
    assert result["s"][:3] == [4, 5, 6]
    assert result["s"][4:] == [8, 9]
    assert result["s"][3] is failure


def test_a_malformed_address_is_refused_at_construction() -> None:
    """An address Dask cannot parse fails when the engine is made, naming the form expected."""
    with pytest.raises(ValueError, match=r"scheduler address.*tcp://host:port"):
        DaskEngine("localhost")  # no port
    with pytest.raises(ValueError, match=r"scheduler address"):
        DaskEngine("tcp://127.0.0.1:notaport")


@ONE_CORE
def test_nothing_listening_fails_quickly_and_clearly() -> None:
    """An address where no scheduler listens: a ConnectionError naming it, after connect_timeout."""
    import socket

    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answered = rf"no Dask scheduler answered at tcp://127.0.0.1:{port}"
    with (
        DaskEngine(f"tcp://127.0.0.1:{port}", connect_timeout=0.5) as engine,
        pytest.raises(ConnectionError, match=answered),
    ):
        Pipeline([inc], backend=engine).map({"x": [1]}, map_over="x")
    with pytest.raises(ValueError, match="connect_timeout"):
        DaskEngine(connect_timeout=0)


@ONE_CORE
def test_a_client_the_user_closed_gets_a_clear_message(dask_client: Any) -> None:
    """A client closed by its owner: the call fails naming that, not 'cancelled for reason: unknown'."""
    closed = distributed.Client(dask_client.cluster.scheduler_address, set_as_default=False)
    closed.close()
    with DaskEngine(closed) as engine, pytest.raises(RuntimeError, match=r"Client .*is closed"):
        Pipeline([inc], backend=engine).map({"x": [1, 2]}, map_over="x")


@node(output_name="where")
def worker_of(x: int) -> str:
    return str(distributed.get_worker().address)


def test_a_map_spreads_its_slices_evenly_over_the_workers(engine: DaskEngine, dask_client: Any) -> None:
    """Each worker gets its share of the slices (not all on the worker holding the payload)."""
    workers = sorted(dask_client.nthreads())
    result = Pipeline([worker_of], backend=engine).map({"x": list(range(64))}, map_over="x")
    counts = [result["where"].count(w) for w in workers]
    assert counts == [64 // len(workers)] * len(workers)


@node(output_name="a")
def where_a(x: int) -> str:
    return str(distributed.get_worker().address)


@node(output_name="b")
def where_b(x: int) -> str:
    return str(distributed.get_worker().address)


def test_node_tasks_place_independent_nodes_on_different_workers(dask_client: Any) -> None:
    """node_tasks=True: two independent nodes go to two workers, so they can run at once."""
    with DaskEngine(dask_client, node_tasks=True) as engine:
        out = Pipeline([where_a, where_b], backend=engine).run({"x": 1})
    assert out["a"] != out["b"]


def test_a_cluster_started_while_a_worker_imports_the_script_is_refused() -> None:
    """A LocalCluster started during multiprocessing's import of the main module (a script without
    `if __name__ == "__main__":`, run again in each worker) fails with one clear error, starting nothing."""
    from hypernodes.engines.dask import DaskBackend

    backend = DaskBackend(None, 1, 0, 1)

    def _fixup_main_from_path() -> None:  # the name multiprocessing.spawn imports __main__ under
        backend.client()

    with pytest.raises(RuntimeError, match=r'if __name__ == "__main__":'):
        _fixup_main_from_path()
    assert backend.cluster is None


INTERRUPTED_DASK_MAP = """
import signal, sys, time
from hypernodes import Pipeline, node
from hypernodes.engines import DaskEngine

# As a terminal's script has it, also when this test runs from a background shell (where
# SIGINT is ignored, and a child inherits that):
signal.signal(signal.SIGINT, signal.default_int_handler)

def item(x):
    time.sleep(0.2)
    return x

if __name__ == "__main__":
    engine = DaskEngine(n_workers=2)  # a script that never shuts it down
    pipeline = Pipeline([node(item, output_name="y")], backend=engine)
    pipeline.map({"x": [0, 1]}, "x")
    print("warm", flush=True)
    started = time.monotonic()
    try:
        pipeline.map({"x": list(range(60))}, "x")
    finally:
        print(f"stopped after {time.monotonic() - started:.2f}", flush=True)
"""

INTERRUPT_AFTER_S = 0.5


@ONE_CORE
@pytest.mark.skipif(sys.platform == "win32", reason="no SIGINT to a process group on Windows")
def test_ctrl_c_in_a_dask_map_stops_at_once_and_prints_only_the_keyboard_interrupt(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the script's process group, as a terminal sends it: the LocalCluster's workers
    get it too) during a map on DaskEngine's own cluster: the map stops at once, and the script prints
    the KeyboardInterrupt traceback and nothing from distributed's workers."""
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_DASK_MAP)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "warm"
        threading.Event().wait(INTERRUPT_AFTER_S)  # the map is under way, slices queued
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0
    stopped = float(out.split()[-1])
    assert stopped < INTERRUPT_AFTER_S + 5.0  # a generous bound: the map itself runs 6 s
    assert "distributed" not in err, err
    assert err.count("Traceback") == 1, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err
