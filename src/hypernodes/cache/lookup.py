"""The cache as the event seam's ``Lookup`` (:class:`CacheLookup`), and :func:`explain`.

The cores ask a lookup before each node and tell it each result; the drivers call
:meth:`CacheLookup.prefetch` before a slice of items and :meth:`CacheLookup.flush`
after it. A lookup (with its cache) is pickled into process workers, so a
:class:`~.storage.DiskCache` is shared by every worker; a
:class:`~.storage.MemoryCache` is per process.

Two kinds of entry. Each node's result is stored under the node's own key (its code,
and per parameter the upstream node's key or the input's value), so that changing
one node re-runs only it and what reads it. A map item whose every node is cached
is also stored whole, under one *item key*: a digest of everything the call's
nodes share (their code, the broadcast inputs, the wiring) and of the item's mapped
values. A warm map then costs, per item, one hasher copy fed the item's values and
one entry read (in the slice's one query); only an item whose whole entry misses
pays for the per-node keys and a second query.
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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._call import prepare_map, prepare_run
from ..failures import Failure
from ._code import CodeKey, _differs_on_disk, _functions, _node_code
from ._values import _DIGEST, Unhashable, _digest, _feed
from ._where import _name_of
from .storage import Cache, CacheWarning, _dumps, _loads, tag_of

__all__ = ["INHERITED", "CacheLookup", "Inheriting", "explain"]

INHERITED: contextvars.ContextVar[Cache | None] = contextvars.ContextVar("hypernodes_cache", default=None)
"""The cache of the pipeline call running on this thread: a nested pipeline without its own uses it."""

_CHUNKS: contextvars.ContextVar[tuple[tuple[Any, range], ...]] = contextvars.ContextVar(
    "hypernodes_cache_chunks", default=()
)
"""Per slice (a thread's or an async task's context), the items of the chunk each lookup last
prefetched for it: once the slice moves on, what is left of their state (items whose nodes
failed under on_error="continue", so never all resolved) is dropped."""

_DEFER = "defer"  # a key that depends on an uncached upstream node's value, computed when the node is reached

_WHOLE = b"HNI"  # an item entry: tag, CRC-32 of the payloads, their lengths, the payloads
# Buffered writes are flushed (one transaction for a DiskCache, whose commit costs about 1.5 ms
# whatever its size) at this many entries or bytes, ...
_FLUSH_EVERY = 4096
_FLUSH_BYTES = 8 << 20
_FLUSH_AFTER_S = 1.0  # ... or when the oldest has waited this long, and after every slice
_SCALARS = (int, str, float, bool, bytes, type(None))  # self-delimiting encodings: fed as they are
_NO_BLOBS: dict[str, bytes] = {}
# How a pickle names a Failure (its __reduce__ rebuilds it with failures._rebuild): a result
# whose pickle holds both strings holds a Failure somewhere, at any depth. A user's value that
# merely contains both strings is left uncached too: a miss, never a stored failure.
_FAILURE_MARKS = (b"hypernodes.failures", b"_rebuild")
_NO_CYCLE: set[int] = set()  # _feed's cycle guard, never touched for scalars


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


class CacheLookup:
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
        self.cache = cache
        self.signatures = signatures
        wiring = plan.wiring
        self.names: tuple[str, ...] = tuple(plan.node_names)
        self.n_nodes = plan.n_nodes
        self.unpack = tuple(wiring.unpack)
        self.n_outs = tuple(len(o) for o in wiring.outs)
        producer = {s: (k, j) for k, outs in enumerate(wiring.outs) for j, s in enumerate(outs)}
        self.mapped = frozenset(map_slots or ())
        self._warned = False
        self.code: list[bytes | None] = []
        self.code_parts: list[CodeKey | None] = []
        self._unkeyed: dict[int, str] = {}  # per node whose code cannot be keyed: why (for explain)
        self.sources: list[tuple[tuple[bytes, int, int, int], ...]] = []
        self.const: dict[int, bytes | None] = {}
        for k, node in enumerate(plan.nodes):
            try:
                parts = _node_code(node)
            except Unhashable as exc:
                where = getattr(exc, "where", "a value its code reads")
                self._warn(k, exc.type_name, where)
                self._unkeyed[k] = f"not cached: {where} is a {exc.type_name}, which cannot be hashed"
                parts = None
            self.code_parts.append(parts)
            self.code.append(None if parts is None else hashlib.blake2b(parts[0] + parts[1], digest_size=16).digest())
            srcs = []
            for name, slot in zip(node.parameters, wiring.args[k]):
                up, j = producer.get(slot, (-1, 0))
                srcs.append((name.encode(), slot, up, j))
                if up < 0 and slot not in self.mapped and slot not in self.const:
                    self.const[slot] = self._value(k, values[slot], name.encode())
            self.sources.append(tuple(srcs))
        # Per node, the hasher with everything that is the same for every item of the call
        # fed in (its code, the broadcast inputs), and what varies per item (upstream keys,
        # mapped inputs): an item's key then costs one hasher copy and a few updates.
        self._seeds: list[bytes | None] = []
        self._var: list[tuple[tuple[bytes, int, int], ...]] = []
        for k, code in enumerate(self.code):
            seed = code
            var = []
            for name, slot, up, j in self.sources[k]:
                if up >= 0:
                    var.append((name + b"=u%d:" % j, slot, up))
                elif slot in self.mapped:
                    var.append((name + b"=v", slot, -1))
                elif seed is not None:  # a broadcast input, keyed as a mapped one: run() and map items share entries
                    d = self.const[slot]
                    if d is None:
                        seed = None
                    elif var:  # after a varying part: fed in its place, to keep the parameters' order
                        var.append((name + b"=v" + d, slot, -2))
                    else:
                        seed += name + b"=v" + d
            self._seeds.append(seed)
            self._var.append(tuple(var))
        # A map's item key: every node's seed and wiring, then the item's mapped values.
        # Only when every node is cached (no key waits for an uncached node's value).
        self._mslots: tuple[int, ...] = tuple(sorted({s for var in self._var for _, s, up in var if up == -1}))
        self._item_seed: bytes | None = None
        if map_slots is not None and all(seed is not None for seed in self._seeds):
            seed_h = hashlib.blake2b(b"item:%d:" % self.n_nodes, digest_size=_DIGEST)
            for seed, wired in zip(self._seeds, self._var):
                assert seed is not None
                seed_h.update(b"%d:" % len(seed) + seed + repr(wired).encode() + b";")
            seed_h.update(repr(self._mslots).encode())
            self._item_seed = seed_h.digest()
        self._nested = any(node.nested for node in plan.nodes)
        # What clear(node=...) matches: a node's entries carry its name (and a nested pipeline's,
        # the names of the nodes within); an item's whole entry carries every name of the call.
        within = [_names_within(node, name) for node, name in zip(plan.nodes, self.names)]
        self._tags = tuple(tag_of(names) for names in within)
        self._item_tag = tag_of([name for names in within for name in names])
        self._init_local()
        self._meta_done: set[int] = set()
        self.is_map = map_slots is not None
        if not self.is_map:
            self._fetch([(-1, self._keys(values), None)])

    def inherit(self, func: Any) -> Any:
        """``func`` wrapped so that a nested pipeline called inside it, on any thread or process,
        uses this call's cache (:class:`Inheriting`); ``func`` itself when the plan has none."""
        return Inheriting(func, self.cache) if self._nested else func

    def _init_local(self) -> None:
        self._head = struct.Struct(f"<I{self.n_nodes}I")  # an item entry's checksum and payload lengths
        self._h0 = [None if seed is None else hashlib.blake2b(seed, digest_size=_DIGEST) for seed in self._seeds]
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

    def _warn(self, k: int, type_name: str, what: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"hypernodes: node `{self.names[k]}` is not cached in this call: {what} is (or holds) a "
                f"{type_name}, which cannot be hashed deterministically. Give its class a __cache_key__() "
                "method or a hasher (hypernodes.cache.register_hasher), or pass something else.",
                CacheWarning,
                stacklevel=3,
            )

    def _value(self, k: int, value: Any, name: bytes) -> bytes | None:
        try:
            return _digest(value)
        except Unhashable as exc:
            self._warn(k, exc.type_name, f"input `{name.decode()}`")
        except Exception as exc:  # a __cache_key__ or a registered hasher that raises
            self._warn(k, type(exc).__name__, f"input `{name.decode()}`'s cache key (it raised)")
        return None

    def _keys(self, values: Sequence[Any]) -> list[str | None]:
        keys: list[str | None] = []
        hashed: dict[int, bytes | None] = {}
        for k, h0 in enumerate(self._h0):
            if h0 is None:
                keys.append(None)
                continue
            h = h0.copy()
            key: str | None = None
            for prefix, slot, up in self._var[k]:
                if up == -2:  # a broadcast input's part, fixed for the call
                    h.update(prefix)
                elif up >= 0:
                    upkey = keys[up]
                    if upkey is None or upkey is _DEFER:  # an uncached upstream: its value decides, later
                        key = _DEFER
                        break
                    h.update(prefix + upkey.encode())
                else:
                    d = hashed[slot] if slot in hashed else self._value(k, values[slot], prefix[:-2])
                    hashed[slot] = d
                    if d is None:
                        break
                    h.update(prefix + d)
            else:
                key = h.hexdigest()
            keys.append(key)
        return keys

    def _item_key(self, values: Sequence[Any]) -> str | None:
        """The key of an item's whole entry; None when a mapped value cannot be hashed (the per-node
        keys then say which node, with the warning)."""
        h = self._item_h0.copy()  # type: ignore[union-attr]
        for slot in self._mslots:
            v = values[slot]
            if type(v) is int:  # the commonest, written out: _feed's encoding, with no call
                try:
                    h.update(b"i%d;" % v)
                    continue
                except ValueError:  # over int->str's digit limit: _feed's long form, below
                    pass
            if type(v) in _SCALARS:  # self-delimiting encodings: fed in a row they stay unambiguous
                _feed(h, v, _NO_CYCLE)
                continue
            try:
                h.update(b"#" + _digest(v))  # anything else as its digest: a fixed length, its own tag
            except Exception:
                return None
        return h.hexdigest()

    def _deferred(self, k: int, st: _Item, args: tuple[Any, ...]) -> str | None:
        code = self.code[k]
        assert code is not None
        assert st.keys is not None
        h = hashlib.blake2b(b"deferred:" + code, digest_size=_DIGEST)  # a key space of its own
        for (name, _slot, up, j), arg in zip(self.sources[k], args):
            upkey = st.keys[up] if up >= 0 else None
            if upkey is not None and upkey is not _DEFER and self.code[up] is not None:
                h.update(name + b"=u%d:" % j + upkey.encode())
                continue
            if _holds_failure(arg):  # an uncached node's output from a failure: nothing computed from it is stored
                return None
            d = self._value(k, arg, name)
            if d is None:
                return None
            h.update(name + b"=v" + d)
        return h.hexdigest()

    def _fetch(self, states: list[tuple[int, list[str | None], str | None]]) -> None:
        wanted = [key for _, keys, _ in states for key in keys if key is not None and key is not _DEFER]
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
        if self._item_h0 is None:
            states: list[tuple[int, list[str | None], str | None]] = []
            for i in range(lo, hi):
                items.fill(values, i)
                states.append((base + i, self._keys(values), None))
            self._fetch(states)
            return
        item_key = self._item_key
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
                misses.append((base + i, self._keys(values), key))
                continue
            st = _Item(None, _NO_BLOBS, key)  # never written: a hit item has no per-node keys
            st.results = results
            if n_nodes:
                self._items[base + i] = st
        if misses:
            self._fetch(misses)

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
        return (st.item_key, _WHOLE + head + body, self._item_tag)

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
        if key is _DEFER:  # never part of the batch: asked for on its own
            key = keys[node] = self._deferred(node, st, args)
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
        if st.parts is not None:
            st.parts[node] = blob[11:]
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
        if key is _DEFER:
            key = keys[node] = self._deferred(node, st, args)  # type: ignore[index]
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
                    parts[node] = blob[11:]
                if node not in self._meta_done:
                    self._meta_done.add(node)
                    self._store_meta(node, st, key)
                st.resolved += 1
                if st.resolved < self.n_nodes:
                    self._write(key, blob, self._tags[node])
                    return
                # The item's last node: its own entry and the item's whole entry, buffered together.
                self._items.pop(item, None)
                entry = (key, blob, self._tags[node])
                whole = self._whole(st)
                self._write_all((entry,) if whole is None else (entry, whole))
                return
        self._resolved(item, st)

    def _taint(self, node: int, st: _Item) -> None:
        """``node``'s result for this item holds a failure: it and every node below it go unstored."""
        keys = st.keys
        assert keys is not None
        keys[node] = None
        for below in self._below(node):
            keys[below] = None

    def _below(self, node: int) -> tuple[int, ...]:
        """The nodes that read ``node``'s outputs, directly or not (computed when a failure needs it)."""
        found: set[int] = set()
        frontier = {node}
        while frontier:
            frontier = {k for k, srcs in enumerate(self.sources) for _, _, up, _ in srcs if up in frontier} - found
            found |= frontier
        return tuple(sorted(found))

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
        if keys is None or any(k is None or k is _DEFER or k not in st.blobs for k in keys):
            return None
        return hashlib.blake2b("".join(keys).encode(), digest_size=_DIGEST).hexdigest()  # type: ignore[arg-type]

    # -- explain ------------------------------------------------------------------------

    def _meta_key(self, node: int) -> str:
        return "meta:" + self.names[node]

    def _parts(self, node: int, keys: Sequence[str | None]) -> dict[str, Any]:
        parts = self.code_parts[node]
        assert parts is not None
        inputs: dict[str, tuple[str, str | None, str | None]] = {}
        for name, slot, up, _j in self.sources[node]:
            if up >= 0:
                inputs[name.decode()] = ("upstream", self.names[up], keys[up])
            elif slot in self.mapped:
                inputs[name.decode()] = ("mapped", None, None)
            else:
                d = self.const.get(slot)
                inputs[name.decode()] = ("value", None, None if d is None else d.hex())
        named: dict[str, str] = {}  # each part of the code key by what it is: `helper ...`, `global ...`
        for label, digest in getattr(parts, "parts", ()):
            at, n = label, 1
            while at in named:  # two parts named alike (two lambdas of one module): both kept, in order
                n += 1
                at = f"{label} #{n}"
            named[at] = digest.hex()
        return {"code": parts[0].hex(), "closure": parts[1].hex(), "parts": named, "inputs": inputs}

    def _store_meta(self, node: int, st: _Item, key: str) -> None:
        assert st.keys is not None
        meta = self._parts(node, st.keys)
        meta["key"] = key
        blob = _dumps(meta)
        if blob is not None:
            self._write(self._meta_key(node), blob, self._tags[node])

    def explain(self) -> dict[str, str]:
        """For a ``run()`` lookup: per node, ``"hit"`` or why it misses (see :func:`explain`)."""
        st = self._items.get(-1)
        assert st is not None
        assert st.keys is not None
        return self._explain_keys(st.keys, st.blobs)

    def explain_items(self, template: Sequence[Any], items: Any) -> list[dict[str, str]]:
        """For a map lookup: :meth:`explain` per item of ``items`` (an ``_call.Items``)."""
        values = list(template)
        keyed = []
        for i in range(items.lo, items.hi):
            items.fill(values, i)
            keyed.append(self._keys(values))
        blobs = self.cache.get_blobs([k for keys in keyed for k in keys if k is not None and k is not _DEFER])
        return [self._explain_keys(keys, blobs) for keys in keyed]

    def _explain_keys(self, keys: Sequence[str | None], blobs: Mapping[str, bytes]) -> dict[str, str]:
        out: dict[str, str] = {}
        metas: dict[int, Any] = {}
        for k, name in enumerate(self.names):
            key = keys[k]
            if self.code[k] is None:
                out[name] = self._unkeyed.get(k, "not cached: cache=False")
            elif key is None:
                out[name] = "not cached: an input cannot be hashed"
            elif key is _DEFER:
                out[name] = "decided when it runs: it reads an uncached node's output"
            elif key in blobs:
                out[name] = "hit"
            else:
                if k not in metas:
                    metas[k] = self.cache.get(self._meta_key(k))
                out[name] = self._why(k, keys, metas[k], out)
        return out

    def _why(self, k: int, keys: Sequence[str | None], meta: Any, so_far: Mapping[str, str]) -> str:
        if not isinstance(meta, dict):
            return "miss: never stored"
        now = self._parts(k, keys)
        old_parts = meta.get("parts")
        if isinstance(old_parts, dict):
            changed = _changed_parts(old_parts, now["parts"])
        else:  # stored by a version that kept two digests
            changed = ["its code"] if meta.get("code") != now["code"] else []
            if meta.get("closure") != now["closure"]:
                changed.append("a value its code reads")
        old_inputs = meta.get("inputs", {})
        unstored = []
        for name, (kind, up, digest) in now["inputs"].items():
            old = old_inputs.get(name)
            if kind == "mapped":  # stored by a run() or another map: its value is this item's own
                if old is None:
                    changed.append(f"input `{name}`")
                else:
                    unstored.append(name)
            elif kind == "upstream":
                # An upstream node that hits is never to blame: the entry is missing for its
                # current result (per item, upstream keys differ by design).
                if old is None or old[:2] != (kind, up):
                    changed.append(f"input `{name}`")
                elif so_far.get(str(up), "hit") != "hit":
                    changed.append(f"upstream node `{up}`")
                elif old != (kind, up, digest) or self.is_map:
                    unstored.append(name)
            elif old != (kind, up, digest):
                changed.append(f"input `{name}`")
        if changed:
            return "miss: changed since last stored: " + ", ".join(dict.fromkeys(changed))
        if unstored:
            names = ", ".join(f"`{m}`" for m in unstored)
            return f"miss: not stored for this item's {names}" if self.is_map else f"miss: not stored for this {names}"
        return "miss: the entry was removed (cleared or evicted)"


def _changed_parts(old: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """What changed between two named code keys, each reason once: `its code`, `helper `util.f``,
    `global `K` (read by its code)`, `closure value `k``, `version`, ..."""
    reasons: dict[str, None] = {}
    for label in [*now, *(label for label in old if label not in now)]:
        if old.get(label) != now.get(label):
            reasons[label.split(" #", 1)[0]] = None
    return list(reasons)


def _on_disk_notes(plan: Any) -> dict[str, str]:
    """Per node whose code (or a helper's) no longer matches its file on disk (edited after import,
    not reloaded), the note :func:`explain` adds."""
    notes = {}
    for name, node in zip(plan.node_names, plan.nodes):
        if not getattr(node, "cache", True):
            continue
        stale = dict.fromkeys(_name_of(f) for f in _functions(node) if _differs_on_disk(f))
        if stale:
            notes[name] = (
                " (the source on disk differs from the code that runs: "
                + ", ".join(f"`{f}`" for f in stale)
                + "; key follows the running code)"
            )
    return notes


def _names_within(node: Any, name: str) -> list[str]:
    """``name`` and, for a nested pipeline's node, the names of the nodes within it (recursively)."""
    names = [name]
    for sub in node.pipeline.nodes if node.nested else ():
        names.extend(_names_within(sub, sub.name))
    return names


def _holds_failure(value: Any) -> bool:
    """Whether ``value`` is a Failure or holds one in its builtin containers (lists, tuples, dicts, sets)."""
    todo = [value]
    seen: set[int] = set()
    while todo:
        v = todo.pop()
        kind = type(v)
        if kind is Failure:
            return True
        if kind in (list, tuple, set, frozenset, dict) and id(v) not in seen:
            seen.add(id(v))
            todo.extend(v.items() if kind is dict else v)
    return False


def explain(
    pipeline: Any,
    inputs: Mapping[str, Any] | None = None,
    output_name: Any = None,
    map_over: str | Sequence[str] | None = None,
    map_mode: str = "zip",
) -> Any:
    """Why each node of ``pipeline.run(inputs, output_name)`` (or of each item of
    ``pipeline.map(inputs, map_over, map_mode, output_name)``) would hit or miss its cache.

    Returns:
        For a run: ``{node name: "hit" | "miss: ..." | "not cached: ..."}``; a miss
        names each part of the key that changed since that node was last stored, once:
        ``its code``, ``helper `util.norm```, ``global `THRESHOLD` (read by its code)``,
        ``closure value `k```, ``default `k```, ``version``, ``input `x```, or
        ``upstream node `a``` (never an upstream node that hits). With ``map_over``: one
        such dict per item, where a node whose code and broadcast inputs are unchanged
        and whose upstream nodes hit says ``"miss: not stored for this item's `x`"``.
        A node whose code (or a helper's) differs from its file on disk (edited after
        import, not reloaded) gets a note saying so: its key follows the running code.

    Raises:
        ValueError: the pipeline has no cache.
        The errors of ``run()`` / ``map()`` for bad inputs, before anything is hashed.
    """
    cache = getattr(pipeline, "effective_cache", None) or getattr(pipeline, "cache", None)
    if cache is None:
        raise ValueError("explain() needs a pipeline with a cache: Pipeline(..., cache=DiskCache(path)).")
    if map_over is None:
        call = prepare_run(pipeline.plans, inputs or {}, output_name)
        why = CacheLookup(cache, call.plan, call.values, None, False).explain()
        notes = _on_disk_notes(call.plan)
        return {name: reason + notes.get(name, "") for name, reason in why.items()}
    mcall = prepare_map(pipeline.plans, inputs or {}, map_over, map_mode, output_name)
    lookup = CacheLookup(cache, mcall.plan, mcall.values, mcall.items.map_slots, False)
    notes = _on_disk_notes(mcall.plan)
    return [
        {name: reason + notes.get(name, "") for name, reason in why.items()}
        for why in lookup.explain_items(mcall.values, mcall.items)
    ]
