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
tracker removes it if the caller dies first. A Dask cluster whose workers all listen on
loopback addresses (DaskEngine's own LocalCluster, say) gets the file too, instead of the
payload's bytes travelling through its scheduler to one worker and on to the others.

An array that already lives in a file (a ``numpy.memmap`` opened ``"r"``, ``"r+"`` or
``"w+"``, or a contiguous view of one: the file holds exactly its values) is not
copied at all: it travels as the file's name and the place of its values, and each
worker maps that place itself, copy-on-write, as it maps a payload file. A memmap
opened ``"c"`` (its writes private to the caller) is pickled as any array.
"""

from __future__ import annotations

import contextlib
import functools
import io
import mmap
import os
import pickle
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from ..executors import _loky
from .payload import ALIGN, Spilled, _pickler, dumps

MAPPED_BYTES = 1 << 16
"""A memmap at least this large travels as its file's name and place (a smaller one is copied)."""

__all__ = ["SPILL_BYTES", "payload_for"]

SPILL_BYTES = 1 << 20
"""A payload at least this large goes through a file (when the workers run on this machine)."""

_SHM = "/dev/shm"


def _local(executor: Executor) -> bool:
    # Worker processes certainly on this machine: our pools, loky's, the stdlib's, and an
    # executor that says its workers all run here (DaskEngine's, on loopback addresses).
    # Another (a Dask cluster elsewhere, any executor) may run elsewhere: its tasks carry the bytes.
    # The stdlib's pool is looked up, not imported (importing concurrent.futures.process
    # costs ~9 ms of `import hypernodes`): an executor can be one only once it is loaded.
    stdlib = sys.modules.get("concurrent.futures.process")
    here = getattr(executor, "on_this_machine", None)
    return (
        _loky.is_ours(executor)
        or (stdlib is not None and isinstance(executor, stdlib.ProcessPoolExecutor))
        or type(executor).__module__.startswith("loky.")
        or (callable(here) and here() is True)
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
    head = _pickled(obj, buffers.append)
    raws = [b.raw() for b in buffers]
    if len(head) + sum(r.nbytes for r in raws) < SPILL_BYTES:
        # small: the buffers go back in band
        yield uuid.uuid4().hex, _pickled(obj, None) if raws else head
        return
    where = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
    try:
        fd, path = tempfile.mkstemp(prefix="hypernodes-payload-", dir=where)
    except OSError:
        yield uuid.uuid4().hex, _pickled(obj, None)
        return
    tracked = _track(path)
    try:
        try:
            parts = _write(fd, [*raws, memoryview(head)])
        except OSError:  # no room: the bytes travel with each task
            yield uuid.uuid4().hex, _pickled(obj, None)
        else:
            yield uuid.uuid4().hex, Spilled(path, parts)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if tracked:
            _untrack(path)


def _pickled(obj: Any, buffer_callback: Any) -> bytes:
    """``obj`` pickled for workers on this machine: memmaps of files by their place (:func:`_in_file`)."""
    buffer = io.BytesIO()
    _local_pickler()(buffer, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=buffer_callback).dump(obj)
    return buffer.getvalue()


@functools.cache
def _local_pickler() -> type:
    class LocalPickler(_pickler()):  # type: ignore[misc]
        """Our pickler, plus: a memmap of a file travels as the file's name and the place of its values."""

        def reducer_override(self, obj: Any) -> Any:
            if type(obj).__name__ == "memmap":  # a cheap test first: this runs for every object
                found = _in_file(obj)
                if found is not None:
                    return found
            return super().reducer_override(obj)

    return LocalPickler


def _in_file(arr: Any) -> tuple[Any, ...] | None:
    """``(mapped, args)`` that maps ``arr``'s values from its file; None unless the file holds exactly them.

    A C-contiguous ``numpy.memmap`` (or view of one) of at least :data:`MAPPED_BYTES`,
    opened ``"r"``, ``"r+"`` or ``"w+"`` (the file's pages are the array's: ``"c"`` keeps
    the caller's writes private), whose file is still that long.
    """
    numpy = sys.modules.get("numpy")
    if numpy is None or not isinstance(arr, numpy.memmap) or arr.mode not in ("r", "r+", "w+"):
        return None
    mm, filename = getattr(arr, "_mmap", None), arr.filename
    if mm is None or filename is None or arr.nbytes < MAPPED_BYTES or not arr.flags.c_contiguous:
        return None
    try:
        filename = os.fspath(filename)  # a str, or a Path when the memmap was opened with one
        # numpy maps the file from `start` (its offset rounded down to the granularity)
        start = arr.offset - arr.offset % mmap.ALLOCATIONGRANULARITY
        first = numpy.frombuffer(mm, numpy.uint8, count=1).__array_interface__["data"][0]
        at = start + arr.__array_interface__["data"][0] - first
        if not (start <= at and at + arr.nbytes <= os.stat(filename).st_size and _same(arr, filename, at)):
            return None
    except Exception:  # a closed mapping, a file gone, an odd dtype: copied as any array
        return None
    return _mapped, (filename, at, arr.dtype, arr.shape)


def _same(arr: Any, filename: str, at: int) -> bool:
    """Whether the file holds ``arr``'s first and last bytes at ``at``: a check of the place found."""
    data = arr.reshape(-1).view("u1")  # C-contiguous: a view, whatever the dtype
    n = min(len(data), 64)
    with open(filename, "rb") as f:
        head, tail = os.pread(f.fileno(), n, at), os.pread(f.fileno(), n, at + len(data) - n)
    return bool(head == data[:n].tobytes() and tail == data[-n:].tobytes())


def _mapped(filename: str, at: int, dtype: Any, shape: tuple[int, ...]) -> Any:
    """Worker side of :func:`_in_file`: the values mapped copy-on-write (writable, a worker's writes its own)."""
    import numpy

    return numpy.memmap(filename, dtype=dtype, mode="c", offset=at, shape=shape)


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
