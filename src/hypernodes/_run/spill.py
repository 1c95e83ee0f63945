"""A large payload sent once per worker: written to a file the workers of this machine read.

A process map's payload (plan, nodes, shared inputs) used to travel inside every
task: each task's arguments are pickled into the pool's call queue, so a 200 MB
shared array crossed the pipe once per slice (eight times for eight items), although
a worker unpickles each token only once. For a pool of worker processes on this
machine, a payload of at least :data:`SPILL_BYTES` is instead written once per call
to a file (in ``/dev/shm``, memory, where it exists), and each task carries a
:class:`Spilled` reference: every worker maps the file once per call
(:func:`~.payload.load` keeps it by token while the call runs), its arrays used in
place, and each task carries only its slice. The file is removed when the call ends; loky's resource
tracker removes it if the caller dies first.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from ..executors import _loky
from .payload import ALIGN, Spilled, dumps, pickled

__all__ = ["SPILL_BYTES", "payload_for"]

SPILL_BYTES = 1 << 20
"""A payload at least this large goes through a file (when the workers run on this machine)."""

_SHM = "/dev/shm"


def _local(executor: Executor) -> bool:
    # Worker processes certainly on this machine: our pools, loky's, the stdlib's.
    # A Dask cluster (or any other executor) may run elsewhere: its tasks carry the bytes.
    # The stdlib's pool is looked up, not imported (importing concurrent.futures.process
    # costs ~9 ms of `import hypernodes`): an executor can be one only once it is loaded.
    stdlib = sys.modules.get("concurrent.futures.process")
    return (
        _loky.is_ours(executor)
        or (stdlib is not None and isinstance(executor, stdlib.ProcessPoolExecutor))
        or type(executor).__module__.startswith("loky.")
    )


@contextlib.contextmanager
def payload_for(executor: Executor, obj: Any) -> Iterator[tuple[str, bytes | Spilled]]:
    """``(token, payload)`` for the tasks of one call: ``obj`` pickled, in the tasks or in a file.

    For worker processes on this machine a payload of at least :data:`SPILL_BYTES`
    is written once to a file that exists while the block runs; smaller ones, other
    executors, and a file that cannot be written (a full disk) travel as bytes in
    every task. Raises what pickling ``obj`` raises.
    """
    if not _local(executor):
        yield dumps(obj)
        return
    buffers: list[pickle.PickleBuffer] = []
    head = pickled(obj, buffers.append)
    raws = [b.raw() for b in buffers]
    if len(head) + sum(r.nbytes for r in raws) < SPILL_BYTES:
        yield dumps(obj) if raws else (uuid.uuid4().hex, head)  # small: the buffers go back in band
        return
    where = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
    try:
        fd, path = tempfile.mkstemp(prefix="hypernodes-payload-", dir=where)
    except OSError:
        yield dumps(obj)
        return
    tracked = _track(path)
    try:
        try:
            parts = _write(fd, [*raws, memoryview(head)])
        except OSError:  # no room: the bytes travel with each task
            yield dumps(obj)
        else:
            yield uuid.uuid4().hex, Spilled(path, parts)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if tracked:
            _untrack(path)


def _write(fd: int, chunks: list[memoryview]) -> tuple[tuple[int, int], ...]:
    parts = []
    at = 0
    with os.fdopen(fd, "wb") as f:
        for chunk in chunks:
            pad = -at % ALIGN
            f.write(b"\0" * pad)
            at += pad
            f.write(chunk)
            parts.append((at, chunk.nbytes))
            at += chunk.nbytes
    return tuple(parts)


def _tracker() -> Any:
    from loky.backend import resource_tracker

    return resource_tracker


def _track(path: str) -> bool:
    try:
        _tracker().register(path, "file")
    except Exception:  # no tracker (a platform without one): removed by us only
        return False
    return True


def _untrack(path: str) -> None:
    with contextlib.suppress(Exception):
        _tracker().unregister(path, "file")
