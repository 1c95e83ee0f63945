"""DaskEngine: pipelines on a Dask cluster, and the backend that sends them there.

The map level goes through the drivers' process path (``_run/remote.py``) like
any remote executor: the plan, the nodes and the broadcast inputs are pickled
once per call into a payload, each task carries one slice of the items. This
module only adds what a cluster does better than a generic executor:

* the payload goes to the cluster **once per call**, as one keyed task
  (``hypernodes-<token>-payload``) that every slice depends on: each worker
  fetches it once (from a peer when another has it), instead of each task
  carrying its bytes. Not ``client.scatter``: scattered data dies with the
  workers that hold it (the scheduler cannot recompute it, so a killed worker
  would cancel the call), while a task's result is recomputed when lost;
* tasks get **explicit keys** (``hypernodes-<token>-<first item>``): Dask never
  hashes the arguments of a task;
* slices are sized from the cluster's **total threads**, so every worker thread
  gets ``tasks_per_worker`` slices;
* a worker that dies is the scheduler's business (it reruns the task elsewhere,
  up to its ``allowed-failures``); when those run out, the ``KilledWorker``
  error names the slice's items, or the node (``node_tasks=True``): the drivers'
  tasks are named records (``_run/tasks.py``), read here by type. ``retries=``
  reruns tasks that raise.

``distributed`` is imported on first use: ``import hypernodes`` (and this module)
never load it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from types import ModuleType
from typing import Any

from .._errors import add_note, check_bool
from .._run import Runtime
from .._run.payload import Spilled
from .._run.tasks import Task
from ..engine import HypernodesEngine
from ..errors import ExecutorSpecError
from ..executors._spec import check_max_workers
from ..executors.backends import PROCESS_TASKS_PER_WORKER, Backend, Sequential

__all__ = ["DaskBackend", "DaskEngine", "DaskExecutor"]

_INSTALL = "pip install 'hypernodes[dask]'"
_WORKER_SETUP = "hypernodes.engines._dask_worker"


def _distributed() -> ModuleType:
    """``distributed``, or an ImportError saying what to install."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"DaskEngine needs Dask's distributed scheduler: {_INSTALL}") from exc
    return distributed


def _loopback(host: str) -> bool:
    """Whether ``host`` (an address's host part) is this machine's loopback."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _check_address(address: str) -> None:
    """Raise ExecutorSpecError unless Dask can connect to ``address`` as written."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)  # a port is required
    except (ValueError, TypeError) as exc:
        raise ExecutorSpecError(
            f"DaskEngine({address!r}): not a scheduler address Dask can use ({exc}); expected "
            "'tcp://host:port', e.g. 'tcp://10.0.0.5:8786' (the address the scheduler prints)."
        ) from None


def _payload(data: bytes) -> bytes:
    """The task that holds a call's payload on the cluster."""
    return data


def _run_task(fn: Callable[[Task], Any], task: Task, payload: bytes) -> Any:
    """On a worker: ``fn`` on ``task`` with its call's payload, which Dask delivered apart
    (a keyed task's result: Dask resolves futures among a task's arguments, not inside a record)."""
    return fn(task.carrying(payload))


class DaskExecutor(Executor):
    """A ``concurrent.futures`` executor over a ``distributed.Client``, for the drivers' tasks.

    The drivers submit ``fn(task)``, ``task`` a :class:`~hypernodes._run.tasks.SliceTask`
    (a map slice) or ``NodeTask`` (one node), read here by type. The payload is sent
    once per token (a keyed task every task of that token depends on) and released
    when that token's last task is done; every key is explicit. Other calls are
    submitted as they are.
    """

    def __init__(self, client: Any, retries: int) -> None:
        self._client = client  # also what backends.worker_count reads
        self.retries = retries
        self._lock = threading.Lock()
        self._scattered: dict[str, list[Any]] = {}  # token -> [payload future, tasks not done, next place]
        self._places: list[str] = []  # one worker address per worker thread, refreshed per call

    def _scatter(self, token: str, payload: bytes) -> Any:
        with self._lock:
            entry = self._scattered.get(token)
            if entry is not None:
                entry[1] += 1
                return entry[0]
        data = self._client.submit(_payload, payload, key=f"hypernodes-{token}-payload", pure=False)
        places = sorted(a for a, n in self._client.nthreads().items() for _ in range(max(1, n)))
        with self._lock:
            self._places = places
            entry = self._scattered.setdefault(token, [data, 0, 0])
            entry[1] += 1
            return entry[0]

    def _place(self, token: str) -> list[str] | None:
        """The worker the next task of ``token`` should go to: the worker threads in turn.

        Every task depends on the payload, which lives on one worker at first; left to
        itself the scheduler puts most tasks where their data is, and one worker ran up
        to 88% of a map. Each task names its worker as a hint (``allow_other_workers``):
        a worker that dies or leaves does not strand its tasks.
        """
        with self._lock:
            entry = self._scattered.get(token)
            if entry is None or not self._places:
                return None
            place = self._places[entry[2] % len(self._places)]
            entry[2] += 1
            return [place]

    def _release(self, token: str) -> None:
        with self._lock:
            entry = self._scattered.get(token)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._scattered[token]  # the last reference: Dask forgets the payload

    def worker_died(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the workers running a task died (the scheduler gave up on it).

        The drivers then run the task's items again in smaller pieces to find the
        ones that kill their worker (``_run/crashes.py``).
        """
        return type(exc).__name__ == "KilledWorker"

    def on_this_machine(self) -> bool:
        """Whether every worker of the cluster listens on a loopback address (runs on this machine).

        A large payload then goes through a file they all map (``_run/spill.py``) rather
        than through the scheduler and the network.
        """
        from distributed.comm.addressing import get_address_host

        workers = list(self._client.nthreads())
        try:
            return bool(workers) and all(_loopback(get_address_host(a)) for a in workers)
        except (ValueError, TypeError):  # an address of a kind we do not know: not ours to say
            return False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Submit ``fn(*args, **kwargs)`` to the cluster; a ``concurrent.futures.Future`` of its result."""
        task = args[0] if len(args) == 1 and not kwargs else None
        if not isinstance(task, Task) or not isinstance(task.payload, (bytes, Spilled)):
            return self._bridge(self._client.submit(fn, *args, pure=False, **kwargs), None, None)
        token = task.token
        key = f"hypernodes-{token}-{task.key}"
        if isinstance(task.payload, Spilled):  # a file the workers of this machine map: nothing to send once
            future = self._client.submit(fn, task, key=key, pure=False, retries=self.retries)
            return self._bridge(future, None, task)
        data = self._scatter(token, task.payload)
        try:
            place = self._place(token)
            where: dict[str, Any] = {} if place is None else {"workers": place, "allow_other_workers": True}
            bare = task.carrying(None)  # the payload travels as the keyed task's result, once per worker
            future = self._client.submit(_run_task, fn, bare, data, key=key, pure=False, retries=self.retries, **where)
        except BaseException:
            self._release(token)
            raise
        return self._bridge(future, token, task)

    def _bridge(self, future: Any, token: str | None, task: Task | None) -> Future[Any]:
        out: Future[Any] = Future()
        what = "a task" if task is None else task.what()  # map items 3..5, node `embed`

        def relay(done: Any) -> None:  # on distributed's callback thread
            if not out.set_running_or_notify_cancel():  # cancelled by the caller meanwhile
                return
            try:
                result = done.result()
            except BaseException as exc:
                if type(exc).__name__ == "KilledWorker":
                    add_note(
                        exc,
                        f"hypernodes: the Dask workers running {what} died each time the scheduler tried it "
                        "(its `distributed.scheduler.allowed-failures` are used up). Likely causes: a "
                        "crash in native code, os._exit() in a node, or the worker running out of memory.",
                    )
                out.set_exception(exc)
            else:
                out.set_result(result)

        def forward(f: Future[Any]) -> None:
            if token is not None:
                self._release(token)
            if f.cancelled():
                future.cancel()

        out.add_done_callback(forward)
        future.add_done_callback(relay)
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing of its own to release: the client belongs to the backend (or the user)."""


class DaskBackend(Backend):
    """A Dask cluster as an engine level: the user's client, one made from an address, or a LocalCluster of ours.

    Only the client and cluster it made itself are closed by :meth:`shutdown`; a
    client the user passed is never closed. Starts nothing until first used.
    """

    name = "dask"
    in_process = False
    portable = False  # a worker cannot make the cluster from a name

    def __init__(
        self, client: Any, n_workers: int | None, retries: int, tasks_per_worker: int, connect_timeout: float = 5.0
    ) -> None:
        super().__init__("dask")
        self.given = client
        self.connect_timeout = connect_timeout
        self.n_workers = n_workers
        self.retries = retries
        self.tasks_per_worker = tasks_per_worker
        self._lock = threading.Lock()
        self._client: Any = None
        self._cluster: Any = None
        self._executor: DaskExecutor | None = None

    def __repr__(self) -> str:
        return f"DaskBackend({self.given!r})" if self.given is not None else "DaskBackend(LocalCluster)"

    def client(self) -> Any:
        """The ``distributed.Client`` (connected, or a LocalCluster started, on first use)."""
        with self._lock:
            if self._client is not None and _is_closed(self._client):
                raise _closed(self._client)
            if self._client is None:
                distributed = _distributed()
                if self.given is None:
                    _refuse_unguarded_script()
                    self._cluster = distributed.LocalCluster(
                        n_workers=self.n_workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",  # scheduler, workers and nannies on loopback only
                        dashboard_address="127.0.0.1:0",
                        preload=[_WORKER_SETUP],  # its workers leave the script's Ctrl-C to the script
                    )
                    self._client = distributed.Client(self._cluster, set_as_default=False)
                elif isinstance(self.given, str):
                    try:
                        _probe(self.given, self.connect_timeout)  # a failed Client leaves its IO thread running
                        self._client = distributed.Client(
                            self.given, set_as_default=False, timeout=self.connect_timeout
                        )
                    except (OSError, TimeoutError) as exc:
                        raise ConnectionError(
                            f"DaskEngine: no Dask scheduler answered at {self.given} within {self.connect_timeout:g} s "
                            f"(connect_timeout=). Is the scheduler running and reachable from here? ({exc})"
                        ) from exc
                else:
                    self._client = self.given
                if _is_closed(self._client):
                    closed, self._client = self._client, None
                    raise _closed(closed)
                self._executor = DaskExecutor(self._client, self.retries)
            return self._client

    @property
    def cluster(self) -> Any:
        """The LocalCluster this backend started, or None."""
        return self._cluster

    def executor(self) -> DaskExecutor:
        self.client()
        assert self._executor is not None
        return self._executor

    def workers(self, executor: Executor) -> int:
        """The cluster's total worker threads (at least 1)."""
        threads: int = sum(self.client().nthreads().values())
        return max(1, threads)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = self._executor = None
        if client is not None and client is not self.given:
            client.close()
        if cluster is not None:
            cluster.close()


def _probe(address: str, timeout: float) -> None:
    """Raise OSError unless something accepts a TCP connection at ``address`` within ``timeout`` seconds."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme in ("tcp", "tls"):
        host, port = parse_host_port(location)
        socket.create_connection((host, port), timeout=timeout).close()


def _is_closed(client: Any) -> bool:
    return getattr(client, "status", "running") in ("closing", "closed")


def _closed(client: Any) -> RuntimeError:
    return RuntimeError(
        f"DaskEngine: its distributed.Client {client!r} is closed (client.close() was called, or its cluster "
        "went away), so nothing can be sent to the cluster. Pass an open client, or an address or nothing "
        "to let the engine make its own."
    )


def _refuse_unguarded_script() -> None:
    """Raise when a LocalCluster would start while a worker process imports the user's main module.

    Dask starts its worker processes with ``spawn``: each imports the script's main module
    (as ``__mp_main__``). A script without ``if __name__ == "__main__":`` then starts
    another cluster in every worker, which fail to start by the hundreds of log lines.

    Raises:
        RuntimeError: called while ``multiprocessing`` imports the main module in a child.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_fixup_main_from_path":  # multiprocessing.spawn, importing __main__
            raise RuntimeError(
                "DaskEngine() started a LocalCluster while a worker process was importing your script: "
                "Dask's workers import the main module, so the code that runs pipelines must sit under "
                '`if __name__ == "__main__":` (see the README\'s DaskEngine section).'
            )
        frame = frame.f_back  # type: ignore[assignment]


class DaskEngine(HypernodesEngine):
    """Runs pipelines on a Dask cluster: ``Pipeline(..., backend=DaskEngine(client))``.

    ``map()`` sends batches, not items: the plan, nodes and broadcast inputs are
    scattered to the workers once per call, and each task runs a slice of the
    items through the compiled batch loop on a worker (``tasks_per_worker``
    slices per worker thread). Results come back in input order.

    ``run()`` follows one rule, chosen by ``node_tasks``: by default (nodes are
    small) the pipeline runs in the calling process on ``node_executor`` (no
    round trip at all: cheaper than one task on a worker, whose result would
    come back here anyway); with ``node_tasks=True`` every node is a Dask task,
    submitted as soon as its inputs are ready (independent slow nodes then run on
    different workers at once; each node costs a round trip of a few ms and its
    arguments travel through this process).
    """

    def __init__(
        self,
        client: Any = None,
        *,
        n_workers: int | None = None,
        retries: int = 0,
        tasks_per_worker: int = PROCESS_TASKS_PER_WORKER,
        node_executor: Any = "sequential",
        node_tasks: bool = False,
        connect_timeout: float = 5.0,
    ) -> None:
        """Args:
            client: None (start a ``LocalCluster`` of worker processes on 127.0.0.1
                on first use; closed by :meth:`shutdown`), a ``distributed.Client``
                (never closed here), or a scheduler address ``"tcp://host:port"``
                (a client of ours is connected to it and closed by shutdown).
            n_workers: worker processes of the LocalCluster we start (None: Dask's default).
            retries: how many times Dask reruns a task that raised (workers that die
                are retried by the scheduler, up to its ``allowed-failures``).
            tasks_per_worker: map slices per worker thread.
            node_executor: runs the nodes of one item inside each worker:
                "sequential", "threaded" or "async" (made in each worker); also
                ``run()``'s node executor unless ``node_tasks``.
            node_tasks: run each node of ``run()`` as its own Dask task.
            connect_timeout: seconds to wait for the scheduler at an address before a
                ``ConnectionError`` naming it.

        Raises:
            ImportError: ``distributed`` is not installed (says what to install).
            ExecutorSpecError: a ``client`` that is not a Client or an address (or an
                address Dask cannot parse), or bad ``n_workers``, ``retries``,
                ``tasks_per_worker``, ``node_executor`` or ``connect_timeout``.
        """
        _distributed()
        if isinstance(client, str):
            _check_address(client)
        if (
            isinstance(connect_timeout, bool)
            or not isinstance(connect_timeout, (int, float))
            or not connect_timeout > 0
        ):
            raise ExecutorSpecError(f"DaskEngine(connect_timeout=) takes seconds > 0, got {connect_timeout!r}.")
        if not (client is None or isinstance(client, str)) and not all(
            callable(getattr(client, m, None)) for m in ("submit", "nthreads")
        ):
            raise ExecutorSpecError(
                f"DaskEngine(client=...) takes a distributed.Client, a scheduler address such as "
                f"'tcp://127.0.0.1:8786', or None; got {type(client).__name__} {client!r:.60}."
            )
        check_max_workers(n_workers, "n_workers", allow_none=True)
        check_max_workers(tasks_per_worker, "tasks_per_worker", allow_none=False)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ExecutorSpecError(f"retries must be a non-negative int, got {retries!r}.")
        self.dask = DaskBackend(client, n_workers, retries, tasks_per_worker, float(connect_timeout))
        super().__init__(node_executor=node_executor, map_executor=self.dask)
        self.client_spec = client
        self.node_tasks = check_bool(node_tasks, "node_tasks", "DaskEngine()")
        base = self._runtime
        self._run_runtime = Runtime(self.dask, Sequential("sequential"), base.funcs, None) if self.node_tasks else base

    def __repr__(self) -> str:
        return f"DaskEngine({self.dask!r}, node_executor={self._runtime.nodes!r}, node_tasks={self.node_tasks})"

    def __enter__(self) -> DaskEngine:
        return self

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this engine uses (connecting or starting a cluster on first use)."""
        return self.dask.client()
