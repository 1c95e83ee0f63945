"""The cache as the event seam's ``Lookup`` (:class:`CacheLookup`), and the inherited cache.

The cores ask a lookup before each node and tell it each result; the drivers call
:meth:`CacheLookup.prefetch` before a slice of items and :meth:`CacheLookup.flush`
after it. A lookup (with its cache) is pickled into process workers, so a
:class:`~.storage.DiskCache` is shared by every worker; a
:class:`~.storage.MemoryCache` is per process. What the keys are made of is
:mod:`._keys`; why they hit or miss, :mod:`._explain`.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import pickle
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from .._events import Lookup
from ._keys import DEFER, CallKeys
from ._values import _DIGEST
from .storage import _MAGIC, HEAD, Cache, CacheWarning, _dumps, _loads

__all__ = ["INHERITED", "CacheLookup", "Inheriting"]

INHERITED: contextvars.ContextVar[Cache | None] = contextvars.ContextVar("hypernodes_cache", default=None)
"""The cache of the pipeline call running on this thread: a nested pipeline without its own uses it."""

_CHUNKS: contextvars.ContextVar[tuple[tuple[Any, range], ...]] = contextvars.ContextVar(
    "hypernodes_cache_chunks", default=()
)
"""Per slice (a thread's or an async task's context), the items of the chunk each lookup last
prefetched for it: once the slice moves on, what is left of their state (items whose nodes
failed under on_error="continue", so never all resolved) is dropped."""

_WHOLE = b"HNI"  # an item entry: tag, CRC-32 of the payloads, their lengths, the payloads
# Buffered writes are flushed (one transaction for a DiskCache, whose commit costs about 1.5 ms
# whatever its size) at this many entries or bytes, ...
_FLUSH_EVERY = 4096
_FLUSH_BYTES = 8 << 20
_FLUSH_AFTER_S = 1.0  # ... or when the oldest has waited this long, and after every slice
_NO_BLOBS: dict[str, bytes] = {}
# How a pickle names a Failure (its __reduce__ rebuilds it with failures._rebuild): a result
# whose pickle holds both strings holds a Failure somewhere, at any depth. A user's value that
# merely contains both strings is left uncached too: a miss, never a stored failure.
_FAILURE_MARKS = (b"hypernodes.failures", b"_rebuild")


class Inheriting:
    """A nested pipeline's node function, called with its outer call's cache inherited.

    ``INHERITED`` is a context variable: the outer call sets it on its own thread,
    but a thread pool, an event loop's executor or a worker process runs the nested
    node elsewhere. This wrapper (picklable, with its cache) sets it wherever the
    node runs, for the node's call only.
    """

    __slots__ = ("cache", "func", "is_async")

    def __init__(self, func: Any, cache: Cache) -> None:
        self.func = func
        self.cache = cache
        self.is_async = inspect.iscoroutinefunction(func)

    def __call__(self, *args: Any) -> Any:
        if self.is_async:  # set while the coroutine runs (in its task's context), not while it is made
            return _inheriting(self.cache, self.func(*args))
        token = INHERITED.set(self.cache)
        try:
            return self.func(*args)
        finally:
            INHERITED.reset(token)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Inheriting, (self.func, self.cache))


async def _inheriting(cache: Cache, coroutine: Any) -> Any:
    token = INHERITED.set(cache)
    try:
        return await coroutine
    finally:
        INHERITED.reset(token)


class _Item:
    """One item's state in a call: its keys (or its whole entry's results), and what it resolved."""

    __slots__ = ("blobs", "item_key", "keys", "parts", "resolved", "results")

    def __init__(self, keys: list[str | None] | None, blobs: dict[str, bytes], item_key: str | None) -> None:
        self.keys = keys
        self.blobs = blobs
        self.item_key = item_key
        self.resolved = 0
        self.results: list[Any] | None = None  # from the item's whole entry
        self.parts: list[bytes | None] | None = None  # per node, the pickled result, toward a whole entry


class CacheLookup(CallKeys, Lookup):
    """The cache as the event seam's ``Lookup`` for one call: keys per item, one query per slice.

    Built by the pipeline for each call with a cache. Nodes come in topological
    order per item; items may interleave across threads, so the state is per item,
    dropped when its last node is resolved.
    """

    def __init__(
        self,
        cache: Cache,
        plan: Any,
        values: Sequence[Any],
        map_slots: Iterable[int] | None,
        signatures: bool = True,
    ) -> None:
        """Args:
        cache: where entries live.
        plan: the call's plan.
        values: its slot template (the inputs of ``run()``, or a map's broadcast inputs).
        map_slots: a map's mapped slots (hashed per item); None for ``run()``.
        signatures: whether anyone reads :meth:`last_signature` (callbacks); False saves its bookkeeping.
        """
        super().__init__(plan, values, map_slots)
        self.cache = cache
        self.signatures = signatures
        self._init_local()
        self._meta_done: set[int] = set()
        if not self.is_map:
            self._fetch([(-1, self.keys(values), None)])

    def inherit(self, func: Any) -> Any:
        """``func`` wrapped so that a nested pipeline called inside it, on any thread or process,
        uses this call's cache (:class:`Inheriting`); ``func`` itself when the plan has none."""
        return Inheriting(func, self.cache) if self.nested else func

    def _init_local(self) -> None:
        self._head = struct.Struct(f"<I{self.n_nodes}I")  # an item entry's checksum and payload lengths
        self._init_hashers()
        self._item_h0 = None if self._item_seed is None else hashlib.blake2b(self._item_seed, digest_size=_DIGEST)
        self._items: dict[int, _Item] = {}
        self._local = threading.local()
        self._pending: list[tuple[str, bytes, str]] = []
        self._pending_since = 0.0
        self._pending_bytes = 0
        self._check_at = 64  # when the buffer's age is next checked (its length)
        self._pending_lock = threading.Lock()
        self._reading = self._writing = True  # off after a storage fault, for the rest of the call (per process)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in (
            "_head",
            "_h0",
            "_item_h0",
            "_items",
            "_local",
            "_pending",
            "_pending_since",
            "_pending_bytes",
            "_check_at",
            "_pending_lock",
            "_reading",
            "_writing",
        ):
            del state[name]
        state["_meta_done"] = set()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_local()

    def _fetch(self, states: list[tuple[int, list[str | None], str | None]]) -> None:
        wanted = [key for _, keys, _ in states for key in keys if key is not None and key is not DEFER]
        blobs = self._read(wanted) if wanted else {}
        for item, keys, item_key in states:
            st = self._items[item] = _Item(keys, blobs, item_key)
            if item_key is not None:
                st.parts = [None] * self.n_nodes

    def prefetch(self, template: Sequence[Any], items: Any) -> None:
        """Compute the keys of map items ``items`` (an ``_call.Items`` slice) and fetch them in one query.

        Items whose whole entry is found have their results ready; the others get their
        per-node keys, fetched in a second query.
        """
        # No flush here: the buffer is written at _FLUSH_EVERY entries, _FLUSH_BYTES or
        # _FLUSH_AFTER_S, and after the slice (a DiskCache's commit per chunk cost more than the
        # chunk's inserts). A later chunk's item equal to an earlier one's may then miss: a miss.
        self._drop_chunk()
        if not self._reading:  # a storage fault earlier in the call: its items run uncached
            return
        _CHUNKS.set((*_CHUNKS.get(), (self, range(items.base + items.lo, items.base + items.hi))))
        values = list(template)
        lo, hi, base = items.lo, items.hi, items.base
        one = self.one
        if self._item_h0 is None and not one:
            states: list[tuple[int, list[str | None], str | None]] = []
            for i in range(lo, hi):
                items.fill(values, i)
                states.append((base + i, self.keys(values), None))
            self._fetch(states)
            return
        item_key = self.one_key if one else self.item_key
        keys: list[str | None] = []
        column: Sequence[Any] | None = None
        if not items.product and len(items.columns) == 1:  # the commonest map: one list, no per-item fill()
            slot = items.map_slots[0]
            column = items.columns[0][lo:hi]
            for v in column:
                values[slot] = v
                keys.append(item_key(values))
        else:
            for i in range(lo, hi):
                items.fill(values, i)
                keys.append(item_key(values))
        found = self._read([k for k in keys if k is not None])
        if one:
            self._settle_one(keys, found, base + lo)
            return
        misses = []
        n_nodes = self.n_nodes
        for i, key in zip(range(lo, hi), keys):
            blob = found.get(key) if key is not None else None
            results = None if blob is None or key is None else self._unpack_whole(blob, key)
            if results is None:
                if column is None:
                    items.fill(values, i)
                else:
                    values[slot] = column[i - lo]
                misses.append((base + i, self.keys(values), key))
                continue
            st = _Item(None, _NO_BLOBS, key)  # never written: a hit item has no per-node keys
            st.results = results
            if n_nodes:
                self._items[base + i] = st
        if misses:
            self._fetch(misses)

    def _settle_one(self, keys: list[str | None], found: dict[str, bytes], first: int) -> None:
        """A single-node map's items ``first``, ``first + 1``, ... (their keys, the entries found):
        a hit's result unpickled now, ready for get(); a miss left to run."""
        states = self._items
        for item, key in enumerate(keys, first):
            if key is not None:
                blob = found.get(key)
                if blob is not None:
                    try:
                        value = _loads(blob)
                    except Exception:
                        warnings.warn(
                            f"hypernodes: the cache entry of node `{self.names[0]}` ({key}) is unreadable; "
                            "running the node and overwriting it.",
                            CacheWarning,
                            stacklevel=3,
                        )
                        del found[key]
                    else:
                        st = _Item(None, _NO_BLOBS, key)  # never written: a hit has nothing to store
                        st.results = [value]
                        states[item] = st
                        continue
            states[item] = _Item([key], found, None)

    def _unpack_whole(self, blob: bytes, key: str) -> list[Any] | None:
        """The node results stored in an item's whole entry; None (with a warning) when it is unreadable."""
        try:
            if blob[:3] != _WHOLE:
                raise ValueError("not an item entry")
            crc, *sizes = self._head.unpack_from(blob, 3)
            view = blob if len(blob) < 65536 else memoryview(blob)  # slices: small copies beat views
            at = 3 + self._head.size
            if zlib.crc32(view[at:]) != crc:
                raise ValueError("checksum mismatch")
            results = []
            loads = pickle.loads
            for size in sizes:
                results.append(loads(view[at : at + size]))
                at += size
            return results
        except Exception:
            warnings.warn(
                f"hypernodes: the cache entry of a map item ({key}) is unreadable; running its nodes "
                "(their own entries are used where they are readable) and overwriting it.",
                CacheWarning,
                stacklevel=3,
            )
            return None

    def _resolved(self, item: int, st: _Item) -> None:
        st.resolved += 1
        if st.resolved >= self.n_nodes:
            self._items.pop(item, None)
            whole = self._whole(st)
            if whole is not None:
                self._write_all((whole,))

    def _whole(self, st: _Item) -> tuple[str, bytes, str] | None:
        """The item's whole entry, once every node of it is resolved; None when a node's result is missing."""
        parts = st.parts
        if parts is None or st.item_key is None or None in parts:
            return None
        body = b"".join(parts)  # type: ignore[arg-type]
        head = self._head.pack(zlib.crc32(body), *(len(p) for p in parts))  # type: ignore[arg-type]
        return (st.item_key, _WHOLE + head + body, self.item_tag)

    def _write(self, key: str, blob: bytes, tag: str) -> None:
        self._write_all(((key, blob, tag),))

    def _write_all(self, entries: tuple[tuple[str, bytes, str], ...]) -> None:
        if not self._writing:
            return
        with self._pending_lock:
            pending = self._pending
            if not pending:
                self._pending_since = time.monotonic()
                self._pending_bytes = 0
                self._check_at = 64
            pending.extend(entries)
            for entry in entries:
                self._pending_bytes += len(entry[1])
            n = len(pending)
            due = n >= _FLUSH_EVERY or self._pending_bytes >= _FLUSH_BYTES
            if not due and n >= self._check_at:  # the clock read every 64 entries, not per entry
                self._check_at = n + 64
                due = time.monotonic() - self._pending_since > _FLUSH_AFTER_S
        if due:
            self._flush()

    def flush(self) -> None:
        """Write the buffered entries (one transaction for a ``DiskCache``), and drop what is left
        of the state of the slice's items. The drivers call it after each slice, in the process
        that ran it, and the pipeline after the call."""
        self._flush()
        self._drop_chunk()

    def _drop_chunk(self) -> None:
        # The state of items this slice prefetched and never finished: under on_error="continue"
        # a failed node is never put and the nodes below it never asked, so without this, each
        # failed item's keys and blobs would stay until the call ends.
        held = _CHUNKS.get()
        if not held:
            return
        mine = [chunk for lookup, chunk in held if lookup is self]
        if not mine:
            return
        _CHUNKS.set(tuple(entry for entry in held if entry[0] is not self))
        items = self._items
        if items:
            for chunk in mine:
                for item in chunk:
                    items.pop(item, None)

    def _flush(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if pending and self._writing:
            try:
                self.cache.put_tagged(pending)
            except Exception as exc:  # a full disk, a read-only or corrupt database: results stay, caching goes
                self._fault(exc, "written")

    def _read(self, keys: list[str]) -> dict[str, bytes]:
        """``cache.get_blobs(keys)``; after a storage fault, nothing (the call runs uncached, warned once)."""
        if not self._reading:
            return {}  # a fresh dict: an item's state adds the blobs it writes to it
        try:
            return self.cache.get_blobs(keys)
        except Exception as exc:
            self._fault(exc, "read")
            return {}

    def _fault(self, exc: Exception, what: str) -> None:
        """The cache could not be read or written: it is off (reads and writes, or only writes) for
        the rest of this call, with one CacheWarning naming its place."""
        with self._pending_lock:
            first = self._writing and self._reading  # one warning per call, whatever faults next
            self._writing = False
            self._pending = []
            if what == "read":
                self._reading = False
        if first:
            where = getattr(self.cache, "path", None)
            place = repr(self.cache) if where is None else repr(str(where))
            warnings.warn(
                f"hypernodes: the cache at {place} could not be "
                f"{what} ({type(exc).__name__}: {exc}); this call returns its results but stores "
                + ("nothing and reads nothing more from the cache." if what == "read" else "nothing more."),
                CacheWarning,
                stacklevel=3,
            )

    # -- the _events.Lookup interface ---------------------------------------------------

    def get(self, node: int, item: int, args: tuple[Any, ...]) -> tuple[Any] | None:
        """``(result,)`` stored for node ``node`` of ``item``; None to call it."""
        st = self._items.get(item)
        if st is None:
            return None
        results = st.results
        if results is not None:  # the item's whole entry: each result unpickled afresh at prefetch
            if self.signatures:
                self._local.signature = st.item_key
            st.resolved += 1
            if st.resolved >= self.n_nodes:
                del self._items[item]
            return (results[node],)
        keys = st.keys
        assert keys is not None
        key = keys[node]
        if key is DEFER:  # never part of the batch: asked for on its own
            key = keys[node] = self.deferred(node, keys, args)
            if key is None:
                return None
            blob = self._read([key]).get(key)
        elif key is None:
            return None
        else:
            blob = st.blobs.get(key)
        if blob is None:
            return None
        try:
            value = _loads(blob)
        except Exception:
            warnings.warn(
                f"hypernodes: the cache entry of node `{self.names[node]}` ({key}) is unreadable; "
                "running the node and overwriting it.",
                CacheWarning,
                stacklevel=2,
            )
            return None
        if st.parts is not None and blob[:3] == _MAGIC:  # an older format's entry: no whole entry from it
            st.parts[node] = blob[HEAD:]
        if self.signatures:
            self._local.signature = key
        self._resolved(item, st)
        return (value,)

    def put(self, node: int, item: int, args: tuple[Any, ...], result: Any) -> None:
        """Store node ``node``'s ``result`` for ``item``."""
        st = self._items.get(item)
        if st is None:
            return
        keys = st.keys
        key = None if keys is None else keys[node]
        if key is DEFER:
            assert keys is not None  # a DEFER came from them
            key = keys[node] = self.deferred(node, keys, args)
        if key is not None and not (
            self.unpack[node] and not (isinstance(result, (tuple, list)) and len(result) == self.n_outs[node])
        ):
            blob = _dumps(result)
            if blob is not None and _FAILURE_MARKS[0] in blob and _FAILURE_MARKS[1] in blob:
                # A nested pipeline's failed items (on_error="continue"): an outage must not be
                # served after it ends. Neither this result nor anything computed from it is stored.
                blob = None
                self._taint(node, st)
            if blob is not None:
                st.blobs[key] = blob
                parts = st.parts
                if parts is not None:
                    parts[node] = blob[HEAD:]
                if node not in self._meta_done:
                    self._meta_done.add(node)
                    self._store_meta(node, st, key)
                st.resolved += 1
                if st.resolved < self.n_nodes:
                    self._write(key, blob, self.tags[node])
                    return
                # The item's last node: its own entry and the item's whole entry, buffered together.
                self._items.pop(item, None)
                entry = (key, blob, self.tags[node])
                whole = None if st.parts is None else self._whole(st)
                self._write_all((entry,) if whole is None else (entry, whole))
                return
        self._resolved(item, st)

    def _taint(self, node: int, st: _Item) -> None:
        """``node``'s result for this item holds a failure: it and every node below it go unstored."""
        keys = st.keys
        assert keys is not None
        keys[node] = None
        for below in self.below(node):
            keys[below] = None

    # -- what the callbacks read --------------------------------------------------------

    def last_signature(self) -> str:
        """The key of the latest hit on this thread (read right after it: ``on_node_cached``): the node's
        own entry, or the item's whole entry it came from."""
        return getattr(self._local, "signature", "")

    def whole(self, item: int) -> str | None:
        """A signature for ``item`` when every one of its nodes will come from the cache, else None."""
        st = self._items.get(item)
        if st is None:
            return None
        if st.results is not None:
            return st.item_key
        keys = st.keys
        if keys is None or any(k is None or k is DEFER or k not in st.blobs for k in keys):
            return None
        return hashlib.blake2b("".join(keys).encode(), digest_size=_DIGEST).hexdigest()  # type: ignore[arg-type]

    def _store_meta(self, node: int, st: _Item, key: str) -> None:
        """What ``node``'s key is made of, stored once per call beside its entries (what explain() compares)."""
        assert st.keys is not None
        meta = self.described(node, st.keys)
        meta["key"] = key
        blob = _dumps(meta)
        if blob is not None:
            self._write(self.meta_key(node), blob, self.tags[node])
