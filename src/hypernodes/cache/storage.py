"""Where cache entries live: :class:`Cache` (the interface), :class:`MemoryCache`, :class:`DiskCache`.

An entry is a signature (a hex string) mapped to bytes: the pickled value behind a
magic tag and a checksum (``_dumps``, ``_loads``), so a hit is a fresh copy and a
corrupt entry is detected rather than unpickled into garbage. Reads come in batches
(:meth:`Cache.get_blobs`: one query for a map slice) and so do writes
(:meth:`Cache.put_blobs`: one transaction).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import os
import pickle
import sqlite3
import threading
import time
import warnings
import weakref
import zlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._trust import check_private, secret_key, sign, verify
from ._values import _type_name

__all__ = ["Cache", "CacheWarning", "DiskCache", "MemoryCache"]


class CacheWarning(UserWarning):
    """A node went uncached for a call (an unhashable value), or a cache entry was unreadable."""


_MAGIC = b"HN2"  # then the pickle's CRC-32 (4 bytes, little-endian), then the pickle
_MAGIC_1 = b"HN1"  # the first format, still read: then 8 bytes of the pickle's blake2b, then the pickle
HEAD = 7  # the bytes before the pickle in an entry written now


def _dumps(value: Any) -> bytes | None:
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception:
        try:
            import cloudpickle  # values of classes defined in a notebook or a function

            data = cloudpickle.dumps(value, protocol=5)
        except Exception:
            return None
    # A CRC-32 detects the corruption a checksum is for (a torn or damaged entry) at a tenth of
    # blake2b's cost on a small pickle; entries that must not be forged are signed (_trust).
    return _MAGIC + zlib.crc32(data).to_bytes(4, "little") + data


def _loads(blob: bytes) -> Any:
    """The value stored in ``blob``. Raises ValueError (or an unpickling error) when it is corrupt."""
    magic = blob[:3]
    if magic == _MAGIC:
        data = blob[HEAD:] if len(blob) < 65536 else memoryview(blob)[HEAD:]  # small: a copy beats a view
        if zlib.crc32(data).to_bytes(4, "little") != blob[3:HEAD]:
            raise ValueError("checksum mismatch")
        return pickle.loads(data)
    if magic == _MAGIC_1:
        old = memoryview(blob)[11:]
        if hashlib.blake2b(old, digest_size=8).digest() != blob[3:11]:
            raise ValueError("checksum mismatch")
        return pickle.loads(old)
    raise ValueError("not a cache entry")


class Cache(ABC):
    """Where results are stored: signatures (hex strings) to pickled bytes.

    Subclasses implement :meth:`get_blobs`, :meth:`put_blob`, :meth:`has` and
    :meth:`clear` (and may implement :meth:`put_blobs` in one go); :meth:`get` and
    :meth:`put` store values on top of them. A cache is shared by threads, and
    pickled into worker processes with the call.
    """

    @abstractmethod
    def get_blobs(self, signatures: Sequence[str]) -> dict[str, bytes]:
        """The stored bytes of those ``signatures`` that are present (one query for all)."""

    @abstractmethod
    def put_blob(self, signature: str, blob: bytes) -> None:
        """Store ``blob`` under ``signature`` (replacing any entry)."""

    def put_blobs(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Store every ``(signature, blob)`` of ``entries`` (by default one :meth:`put_blob` each)."""
        for signature, blob in entries:
            self.put_blob(signature, blob)

    def put_tagged(self, entries: Iterable[tuple[str, bytes, str | None]]) -> None:
        """Store every ``(signature, blob, tag)`` of ``entries``: ``tag`` (made by :func:`tag_of`) names
        the nodes the entry belongs to, for :meth:`clear` with ``node=``. By default the tags are
        dropped and :meth:`put_blobs` stores the rest."""
        self.put_blobs([(signature, blob) for signature, blob, _ in entries])

    @abstractmethod
    def has(self, signature: str) -> bool:
        """Whether an entry is stored under ``signature``."""

    @abstractmethod
    def clear(self, node: str | None = None) -> None:
        """Remove every entry; with ``node``, only those a node of that name stored (in any pipeline)
        and the whole-item entries of the calls it took part in.

        Raises:
            NotImplementedError: ``node`` was given to a cache that does not record which node
                stored an entry (a subclass whose ``clear()`` takes no ``node``).
        """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        clear = cls.__dict__.get("clear")
        if clear is not None and "node" not in inspect.signature(clear).parameters:
            cls.clear = _clear_everything_only(clear)  # type: ignore[method-assign]

    def get(self, signature: str, default: Any = None) -> Any:
        """The value stored under ``signature`` (a fresh copy), or ``default`` when absent or unreadable."""
        blob = self.get_blobs([signature]).get(signature)
        if blob is None:
            return default
        try:
            return _loads(blob)
        except Exception:
            return default

    def put(self, signature: str, value: Any) -> None:
        """Store ``value`` under ``signature``.

        Raises:
            TypeError: ``value`` cannot be pickled (with pickle or cloudpickle).
        """
        blob = _dumps(value)
        if blob is None:
            raise TypeError(f"cannot pickle a {_type_name(type(value))} to cache it")
        self.put_blob(signature, blob)


def tag_of(names: Iterable[str]) -> str:
    """The tag of an entry that belongs to the nodes ``names`` (what :meth:`Cache.clear` matches)."""
    return "\n" + "\n".join(sorted(set(names))) + "\n"


def _needle(node: str) -> str:
    if not isinstance(node, str) or not node or "\n" in node:
        raise ValueError(f"clear(node=...) takes a node's name (a non-empty string), got {node!r}.")
    return "\n" + node + "\n"


def _clear_everything_only(clear: Any) -> Any:
    # A Cache subclass whose clear() predates clear(node=...): it still clears everything, and
    # clear(node=...) says why it cannot, rather than a TypeError about an argument.
    @functools.wraps(clear)
    def clear_all(self: Cache, node: str | None = None) -> None:
        if node is not None:
            raise NotImplementedError(
                f"{type(self).__name__}.clear(node={node!r}): this cache does not record which node stored "
                "an entry. Give its clear() a `node` parameter (and store the tags put_tagged() receives), "
                "or call clear() to remove everything."
            )
        clear(self)

    return clear_all


class MemoryCache(Cache):
    """Entries in this process's memory (a copy travels to worker processes, and their writes stay there).

    With ``max_items`` or ``max_bytes`` the least recently used entries (stored or read)
    are evicted first, so that the cache stays within both. Thread-safe.
    """

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None) -> None:
        """Args:
            max_items: the most entries to keep; None (the default): no limit.
            max_bytes: the most bytes of stored entries to keep (the pickled results); None: no
                limit. An entry larger than this is not stored.

        Raises:
            ValueError: a limit is not a positive integer (or None).
        """
        for name, limit in (("max_items", max_items), ("max_bytes", max_bytes)):
            if limit is not None and (type(limit) is not int or limit <= 0):
                raise ValueError(f"MemoryCache({name}=...) takes a positive integer or None (no limit), got {limit!r}.")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._bounded = max_items is not None or max_bytes is not None
        # Recency is kept only with a limit: a plain dict stores an entry in about a third of the time.
        self._data: dict[str, bytes] = OrderedDict() if self._bounded else {}
        self._tags: dict[str, str] = {}  # signature -> its tag (see tag_of), for clear(node=...)
        self._size = 0  # bytes of the stored entries (kept only with a limit)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryCache(max_items={self.max_items}, max_bytes={self.max_bytes})"

    def get_blobs(self, signatures: Sequence[str]) -> dict[str, bytes]:
        """See :meth:`Cache.get_blobs`; with a limit, each entry found becomes the most recently used."""
        data = self._data
        found = {}
        with self._lock:
            get = data.get
            for s in signatures:
                blob = get(s)
                if blob is not None:
                    found[s] = blob
            if self._bounded:
                touch = data.move_to_end  # type: ignore[attr-defined]  # an OrderedDict with a limit
                for s in found:
                    touch(s)
        return found

    def put_blob(self, signature: str, blob: bytes) -> None:
        """See :meth:`Cache.put_blob`."""
        self.put_blobs(((signature, blob),))

    def put_blobs(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """See :meth:`Cache.put_blobs`; with a limit, the least recently used entries make room."""
        self.put_tagged([(signature, blob, None) for signature, blob in entries])

    def put_tagged(self, entries: Iterable[tuple[str, bytes, str | None]]) -> None:
        """See :meth:`Cache.put_tagged`; with a limit, the least recently used entries make room."""
        data, tags = self._data, self._tags
        with self._lock:
            if not self._bounded:  # no limit: no recency or size to keep
                entries = entries if isinstance(entries, (list, tuple)) else list(entries)
                data.update([(signature, blob) for signature, blob, _ in entries])
                tagged = [(signature, tag) for signature, _, tag in entries if tag is not None]
                if len(tagged) < len(entries) and tags:  # an untagged entry drops its key's old tag
                    for signature, _, tag in entries:
                        if tag is None:
                            tags.pop(signature, None)
                tags.update(tagged)
                return
            max_bytes = self.max_bytes
            for signature, blob, tag in entries:
                old = data.pop(signature, None)
                tags.pop(signature, None)
                if old is not None:
                    self._size -= len(old)
                if max_bytes is not None and len(blob) > max_bytes:
                    continue  # larger than the whole cache: not stored (an older entry under its key is gone)
                data[signature] = blob
                if tag is not None:
                    tags[signature] = tag
                self._size += len(blob)
            self._evict()

    def _evict(self) -> None:
        data, max_items, max_bytes = self._data, self.max_items, self.max_bytes
        while data and (
            (max_items is not None and len(data) > max_items) or (max_bytes is not None and self._size > max_bytes)
        ):
            signature, blob = data.popitem(last=False)  # type: ignore[call-arg]  # an OrderedDict with a limit
            self._tags.pop(signature, None)
            self._size -= len(blob)

    def has(self, signature: str) -> bool:
        """See :meth:`Cache.has`."""
        return signature in self._data

    def clear(self, node: str | None = None) -> None:
        """See :meth:`Cache.clear`."""
        with self._lock:
            if node is None:
                self._data.clear()
                self._tags.clear()
                self._size = 0
                return
            needle = _needle(node)
            for signature in [s for s, tag in self._tags.items() if needle in tag]:
                del self._tags[signature]
                blob = self._data.pop(signature, None)
                if blob is not None:
                    self._size -= len(blob)

    def __len__(self) -> int:
        return len(self._data)


_BATCH = 500  # signatures per SELECT: under SQLite's oldest limit of 999 bound parameters
_DBNAME = "cache.db"  # diskcache's database file in the directory (diskcache.core.DBNAME)
_MODE_RAW, _MODE_BINARY = 1, 2  # diskcache.core's modes of bytes stored inline and in a file
# Neither eviction policy we use updates an entry when it is read (only least-recently/frequently
# used do), so a batched SELECT reads exactly what diskcache's own get() would.
_SELECT = (
    "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN ({})"
    " AND (expire_time IS NULL OR expire_time > ?)"
)


class DiskCache(Cache):
    """Entries in a ``diskcache`` (SQLite) directory, shared safely by threads and processes.

    Writes wait for the database lock (retrying on timeouts, never dropped
    silently); SQLite's write-ahead log makes each write atomic, so a crash leaves
    no half-written entry. Nothing is evicted unless ``size_limit`` (bytes) is
    given; then the least recently stored entries go first.

    A process holds one SQLite connection per ``DiskCache``, used by its threads in
    turn (each operation takes the cache's lock); it is closed by :meth:`close`,
    or when the ``DiskCache`` is garbage-collected. (diskcache's own default, a
    connection per thread, leaves the connections of finished pool threads to be
    collected unclosed.)

    Needs ``pip install 'hypernodes[cache]'`` (diskcache).
    """

    _RETRIES = 10

    def __init__(
        self, path: str | os.PathLike[str], size_limit: int | None = None, secret: str | bytes | None = None
    ) -> None:
        """Args:
            path: the cache directory (created if missing).
            size_limit: the most bytes to keep; None (the default): no eviction.
            secret: sign every entry with this key (keep it outside the directory); None:
                the ``HYPERNODES_CACHE_SECRET`` environment variable's value, if set, else
                unsigned entries. Entries without a valid signature are misses, never unpickled.

        Raises:
            ImportError: diskcache is not installed.
            ValueError: ``size_limit`` is not a positive integer, or ``secret`` is empty.
            TypeError: ``secret`` is neither str nor bytes.
            PermissionError: another user owns the directory (or its database) or can write to it.
        """
        if size_limit is not None and (not isinstance(size_limit, int) or size_limit <= 0):
            raise ValueError(f"DiskCache(size_limit=...) takes a positive number of bytes or None, got {size_limit!r}.")
        self.path = Path(path)
        self.size_limit = size_limit
        self._given = None if secret is None else secret_key(secret)  # travels to workers; the variable is read there
        self._setup()

    def _setup(self) -> None:
        _, self._timeout_error = _diskcache()
        self._key = self._given if self._given is not None else secret_key(None)
        self._lock = threading.RLock()
        self._opened: Any = None  # the diskcache store, opened on first use (see _store)
        self._reader: sqlite3.Connection | None = None  # on a read-only file system: a read-only connection
        self._warned_unsigned = False
        check_private(self.path)
        check_private(self.path / _DBNAME)

    @property
    def _store(self) -> Any:
        """The diskcache store, opened on first use, so that a corrupt or unreadable database
        fails the operation that needs it (the lookup then runs the call uncached, with a
        warning) rather than the DiskCache's construction; a later operation tries again."""
        store = self._opened
        if store is None:
            with self._lock:
                if self._opened is None:
                    store_class, _ = _diskcache()
                    if not self.path.exists():  # never writable by others, whatever the umask
                        self.path.mkdir(mode=0o755, parents=True, exist_ok=True)
                    db = self.path / _DBNAME
                    fresh = not db.exists()
                    check_private(self.path)
                    check_private(db)
                    store = store_class(
                        str(self.path),
                        timeout=60,
                        size_limit=self.size_limit if self.size_limit is not None else 2**62,
                        eviction_policy="none" if self.size_limit is None else "least-recently-stored",
                        statistics=False,
                    )
                    if fresh:  # SQLite creates it (and its log files, alike) by the umask: keep it ours alone
                        db.chmod(db.stat().st_mode & 0o755)
                    self._opened = store
                store = self._opened
        return store

    def _read_only(self) -> sqlite3.Connection | None:
        """A read-only connection when the cache's file system is mounted read-only (SQLite cannot
        open a write-ahead-log database there otherwise); None elsewhere."""
        if self._reader is None:
            try:
                read_only = bool(os.statvfs(self.path).f_flag & os.ST_RDONLY)
            except OSError:
                return None
            if not read_only or not (self.path / _DBNAME).is_file():
                return None
            # immutable=1: no lock and no -shm file, safe because nothing can write a read-only mount.
            uri = (self.path / _DBNAME).absolute().as_uri() + "?mode=ro&immutable=1"
            self._reader = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "size_limit": self.size_limit, "secret": self._given}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.size_limit, self._given = state["path"], state["size_limit"], state.get("secret")
        self._setup()

    def __repr__(self) -> str:
        signed = ", signed" if self._key is not None else ""
        return f"DiskCache({str(self.path)!r}, size_limit={self.size_limit}{signed})"

    def get_blobs(self, signatures: Sequence[str]) -> dict[str, bytes]:
        """See :meth:`Cache.get_blobs`: one ``SELECT ... IN`` per 500 signatures."""
        found: dict[str, bytes] = {}
        with self._lock:
            reader = self._reader if self._opened is None else None
            if reader is None and self._opened is None:
                try:
                    self._store  # noqa: B018  # opens it
                except (sqlite3.OperationalError, OSError):
                    reader = self._read_only()
                    if reader is None:
                        raise
            run = reader.execute if reader is not None else self._store._sql_retry
            for lo in range(0, len(signatures), _BATCH):
                part = list(signatures[lo : lo + _BATCH])
                rows = run(_SELECT.format(",".join("?" * len(part))), (*part, time.time())).fetchall()
                for key, mode, filename, value in rows:
                    # The commonest row, an inline entry (bytes), read here; the rest by _fetch.
                    if mode == _MODE_RAW and type(value) is bytes and filename is None:
                        blob: bytes | None = value
                    else:
                        blob = self._fetch(mode, filename, value)
                    if blob is not None and self._key is not None:
                        blob = verify(self._key, key, blob)
                        if blob is None:
                            self._unsigned(key)
                    if blob is not None:
                        found[key] = blob
        return found

    def _unsigned(self, key: str) -> None:
        if not self._warned_unsigned:
            self._warned_unsigned = True
            warnings.warn(
                f"hypernodes: {self!r} holds an entry ({key}) without a valid signature: it is a miss, never "
                "unpickled, and is overwritten when its node runs. Entries written without this secret (or by "
                "someone who does not know it) look like this; further ones in this process are misses silently.",
                CacheWarning,
                stacklevel=4,
            )

    def _fetch(self, mode: int, filename: str | None, value: Any) -> bytes | None:
        # Our entries are bytes: inline (raw, read by get_blobs itself) or in a file of the
        # directory (binary). Anything else (diskcache's text or pickle modes, an inline value
        # that is not bytes) is no entry of ours: a miss, never unpickled here.
        if mode == _MODE_BINARY and isinstance(filename, str):
            target = self.path / filename
            if ".." in Path(filename).parts or Path(filename).is_absolute():
                return None  # an entry pointing outside the directory: not ours
            try:
                return target.read_bytes()
            except OSError:  # a large entry's file removed under us: a miss
                return None
        return None

    def put_blob(self, signature: str, blob: bytes) -> None:
        """See :meth:`Cache.put_blob`."""
        self.put_blobs([(signature, blob)])

    def put_blobs(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """See :meth:`Cache.put_blobs`: all of them in one transaction."""
        self.put_tagged([(signature, blob, None) for signature, blob in entries])

    def put_tagged(self, entries: Iterable[tuple[str, bytes, str | None]]) -> None:
        """See :meth:`Cache.put_tagged`: all of them in one transaction, the tags in diskcache's tag column."""
        entries = list(entries)
        if not entries:
            return
        key = self._key
        if key is not None:
            entries = [(s, sign(key, s, b), t) for s, b, t in entries]
        if self._opened is None and self._read_only() is not None:
            raise OSError(errno.EROFS, "the cache's file system is mounted read-only", str(self.path))
        for attempt in range(self._RETRIES):
            try:
                with self._lock, self._store.transact(retry=True):
                    self._write(entries)
                return
            except self._timeout_error:
                time.sleep(0.01 * (attempt + 1))
        warnings.warn(
            f"hypernodes: {self!r} stayed locked for {self._RETRIES} minutes; {len(entries)} results were not stored.",
            CacheWarning,
            stacklevel=2,
        )

    def _write(self, entries: list[tuple[str, bytes, str | None]]) -> None:
        # Inside the transaction. Without a size limit nothing is ever culled, so a small blob
        # (stored inline, as diskcache's own set() stores bytes under its file threshold) is
        # one upsert row, all of them in one executemany (diskcache's set() costs about three
        # statements and a cull check per entry; its triggers keep the entry count either way).
        # Large blobs, a size limit, and keys that hold a file now go through set().
        store = self._store
        if self.size_limit is not None:
            small: list[tuple[str, bytes, str | None]] = []
        else:
            limit = store.disk_min_file_size
            small = [e for e in entries if len(e[1]) < limit]
        changed = 0
        if small:
            now = time.time()
            changed = store._con.executemany(
                "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size,"
                " mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, ?, 0, 1, NULL, ?)"
                " ON CONFLICT(key, raw) DO UPDATE SET store_time = excluded.store_time,"
                " access_time = excluded.access_time, tag = excluded.tag, value = excluded.value, size = 0,"
                " mode = 1 WHERE Cache.filename IS NULL",
                [(k, now, now, t, b) for k, b, t in small],  # bytes bind as a BLOB: no memoryview per row
            ).rowcount
        done = {k for k, _, _ in small}
        if done and changed != len(small):
            # A key that held a file (the upsert left it: fewer rows changed than given): replaced
            # by set(), which removes the file.
            listed = list(done)
            for lo in range(0, len(listed), _BATCH):
                part = listed[lo : lo + _BATCH]
                query = "SELECT key FROM Cache WHERE raw = 1 AND filename IS NOT NULL AND key IN ({})"
                done -= {k for (k,) in store._sql(query.format(",".join("?" * len(part))), part).fetchall()}
        for signature, blob, tag in entries:
            if signature not in done:
                store.set(signature, blob, tag=tag)

    def has(self, signature: str) -> bool:
        """See :meth:`Cache.has`."""
        return bool(self.get_blobs([signature]))

    def clear(self, node: str | None = None) -> None:
        """See :meth:`Cache.clear` (a node's entries are those whose diskcache tag names it)."""
        if node is None:
            with self._lock:
                self._store.clear(retry=True)
            return
        needle = _needle(node)
        with self._lock, self._store.transact(retry=True):
            store = self._store
            rows = store._sql("SELECT key FROM Cache WHERE raw = 1 AND instr(tag, ?) > 0", (needle,)).fetchall()
            for (signature,) in rows:
                store.delete(signature, retry=True)  # removes a large entry's file too

    def close(self) -> None:
        """Close this process's database connection (reopened on next use)."""
        with self._lock:
            if self._opened is not None:
                self._opened.close()
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()

    def __len__(self) -> int:
        with self._lock:
            if self._opened is None and self._read_only() is not None:
                return int(self._read_only().execute("SELECT COUNT(*) FROM Cache").fetchone()[0])  # type: ignore[union-attr]
            return len(self._store)


@functools.cache
def _diskcache() -> tuple[type, type[Exception]]:
    """diskcache's ``Cache`` made to hold one connection (see :class:`DiskCache`), and its ``Timeout``."""
    try:
        import diskcache  # type: ignore[import-untyped]  # optional: hypernodes[cache]; no type information
    except ImportError:
        raise ImportError("DiskCache needs diskcache: pip install 'hypernodes[cache]'") from None

    class OneConnection(diskcache.Cache):  # type: ignore[misc]  # untyped base
        # diskcache's Cache reaches its connection only through `_con` (and closes it in
        # close()); this one is shared by the threads, which the DiskCache's lock takes in
        # turn, and it is closed when the store is collected, on whichever thread that is.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._held: list[Any] = [None, None]  # [connection, the pid that opened it]
            weakref.finalize(self, _close, self._held)
            super().__init__(*args, **kwargs)

        @property
        def _con(self) -> Any:
            con, pid = self._held
            if con is not None and pid == os.getpid():
                return con
            if con is not None:  # a forked child: the parent's connection is not this process's to use
                _close(self._held)
            con = sqlite3.connect(
                os.path.join(self._directory, diskcache.core.DBNAME),
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._held[:] = [con, os.getpid()]
            with contextlib.suppress(sqlite3.OperationalError):  # before the first Settings table exists
                for key, value in con.execute("SELECT key, value FROM Settings").fetchall():
                    if key.startswith("sqlite_"):
                        self.reset(key, value, update=False)
            return con

        def close(self) -> None:
            _close(self._held)

    return OneConnection, diskcache.Timeout


def _close(held: list[Any]) -> None:
    con, held[0] = held[0], None
    if con is not None:
        con.close()
