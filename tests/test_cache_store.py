"""The cache's storage and write path: failures never stored, storage faults, trust, limits, clearing."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import shutil
import sqlite3
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypernodes import DiskCache, MemoryCache, Pipeline, node
from hypernodes._run.items import MAX_CHUNK
from hypernodes.cache import CacheWarning
from hypernodes.cache.lookup import CacheLookup
from hypernodes.cache.storage import _dumps
from hypernodes.failures import Failure

pytest.importorskip("diskcache")


class _Calls(list):  # type: ignore[type-arg]
    def __cache_key__(self) -> str:
        return "CALLS"


CALLS: list[Any] = _Calls()
"""What in-process test nodes ran. Globals a node reads are part of its key by value: with
``__cache_key__``, this list's content does not count."""


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@node(output_name="y")
def _flaky_once(x: int) -> int:
    """Fails the first time it sees 2 (an outage), then succeeds."""
    CALLS.append(x)
    if x == 2 and CALLS.count(2) == 1:
        raise ConnectionError("the service is down")
    return x * 10


@node(output_name="summary")
def _summarize(ys: list[Any]) -> str:
    CALLS.append("summary")
    return ",".join("failed" if isinstance(y, Failure) else str(y) for y in ys)


def _nested() -> Pipeline:
    inner = Pipeline([_flaky_once], name="inner", on_error="continue")
    fetch = inner.as_node(input_mapping={"xs": "x"}, output_mapping={"y": "ys"}, map_over="xs", name="fetch")
    return Pipeline([fetch, _summarize], cache=MemoryCache())


def test_a_nested_maps_failures_are_never_stored_nor_what_was_computed_from_them() -> None:
    """An inner map under on_error="continue" returns a Failure for the item whose node failed once:
    neither the nested node's output holding it nor the downstream summary of it is stored, so the
    next run retries the failed item (and only it: the inner items that succeeded hit) and
    recomputes the summary, which no longer holds the outage."""
    pipeline = _nested()
    first = pipeline.run({"xs": [1, 2, 3]})
    assert isinstance(first["ys"][1], Failure)
    assert first["summary"] == "10,failed,30"
    assert CALLS == [1, 2, 3, "summary"]
    second = pipeline.run({"xs": [1, 2, 3]})
    assert second == {"ys": [10, 20, 30], "summary": "10,20,30"}
    assert CALLS == [1, 2, 3, "summary", 2, "summary"]
    assert pipeline.run({"xs": [1, 2, 3]}) == second  # now clean: stored, every node hits
    assert CALLS == [1, 2, 3, "summary", 2, "summary"]


def test_a_nested_failure_under_an_outer_continue_map_is_not_stored() -> None:
    """The same under an outer map with on_error="continue": the item holding the nested failure is
    neither stored per node nor as a whole item, and succeeds on the next call."""
    pipeline = _nested()
    first = pipeline.map({"xs": [[1, 2], [3]]}, map_over="xs", on_error="continue")
    assert first["summary"] == ["10,failed", "30"]
    assert CALLS == [1, 2, "summary", 3, "summary"]
    second = pipeline.map({"xs": [[1, 2], [3]]}, map_over="xs", on_error="continue")
    assert second["summary"] == ["10,20", "30"]
    assert CALLS == [1, 2, "summary", 3, "summary", 2, "summary"]


# -- storage faults: they cost caching, never results -----------------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (skips the test when not root or mount fails); unmounted after."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    ).returncode:
        pytest.skip("mount -t tmpfs failed")
    try:
        yield where
    finally:
        gc.collect()  # connections of collected caches, closed before the unmount
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


@node(output_name="page")
def _page(x: int) -> str:
    CALLS.append(x)
    return str(x) * 20_000  # 20 to 100 KB: a few items fill a 1 MB disk


def _cache_warnings(record: Any) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, CacheWarning)]


def _one_warning_naming(record: Any, path: Path) -> None:
    found = _cache_warnings(record)
    assert len(found) == 1, found
    assert str(path) in found[0]


@pytest.mark.parametrize("on_error", ["raise", "continue"])
def test_a_full_disk_costs_caching_never_results(tmp_path: Path, on_error: str) -> None:
    """On a 1 MB disk that 200 results of 20+ KB overflow, the map returns every result (under
    on_error="raise" too), with one CacheWarning naming the cache's path."""
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        cache = DiskCache(disk / "cache")
        pipeline = Pipeline([_page], cache=cache)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            result = pipeline.map({"x": list(range(200))}, map_over="x", on_error=on_error)
        assert result["page"] == [str(x) * 20_000 for x in range(200)]
        _one_warning_naming(record, disk / "cache")
        cache.close()


def test_a_read_only_warm_cache_is_read_and_new_results_are_returned(tmp_path: Path) -> None:
    """A warm DiskCache on a file system remounted read-only serves its hits (no node runs, no
    warning); new items run and are returned, with one warning that they were not stored."""
    with _tmpfs(tmp_path / "disk", "4m") as disk:
        cache = DiskCache(disk / "cache")
        pipeline = Pipeline([_double], cache=cache)
        assert pipeline.map({"x": [1, 2, 3]}, map_over="x")["y"] == [2, 4, 6]
        cache.close()
        _remount_read_only(disk)
        CALLS.clear()
        reader = DiskCache(disk / "cache")
        pipeline = Pipeline([_double], cache=reader)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert pipeline.map({"x": [1, 2, 3]}, map_over="x")["y"] == [2, 4, 6]
            assert pipeline.run({"x": 2}) == {"y": 4}
        assert CALLS == []
        assert _cache_warnings(record) == []
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert pipeline.map({"x": [3, 4, 5]}, map_over="x")["y"] == [6, 8, 10]
        assert CALLS == [4, 5]
        _one_warning_naming(record, disk / "cache")
        assert len(reader) == 3 + 1  # the node's entries (one per item: one node) and its explain record: nothing added
        reader.close()


@node(output_name="y")
def _double(x: int) -> int:
    CALLS.append(x)
    return 2 * x


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_or_truncated_database_runs_the_call_uncached_with_one_warning(tmp_path: Path, damage: str) -> None:
    """A cache.db overwritten with garbage, or cut short, is a warning naming the path and an
    uncached call that returns the right results: never an error, never a wrong hit."""
    path = tmp_path / "cache"
    cache = DiskCache(path)
    Pipeline([_double], cache=cache).map({"x": list(range(300))}, map_over="x")
    cache.close()
    db = path / "cache.db"
    for log in ("cache.db-wal", "cache.db-shm"):  # pages still in the write-ahead log would mask the damage
        (path / log).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 1000)
    else:
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size // 3)
    CALLS.clear()
    pipeline = Pipeline([_double], cache=DiskCache(path))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert pipeline.map({"x": list(range(300))}, map_over="x")["y"] == [2 * x for x in range(300)]
    _one_warning_naming(record, path)
    if damage == "garbage":  # (a truncated file may still serve the entries on its intact pages)
        assert sorted(CALLS) == list(range(300))


# -- trust: who may write to a cache, and signed entries --------------------------------


class _Plant:
    """A malicious entry: unpickling it creates ``marker`` (code run by whoever reads the cache)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def _plant_everywhere(path: Path, marker: Path) -> int:
    """Overwrite every entry of the DiskCache at ``path`` with a planted pickle: half of them in our
    unsigned format (a valid checksum), half with a forged signature. Returns how many."""
    planted = _dumps(_Plant(marker))
    assert planted is not None
    with contextlib.closing(sqlite3.connect(path / "cache.db")) as con:
        keys = [k for (k,) in con.execute("SELECT key FROM Cache")]
        for i, key in enumerate(keys):
            blob = planted if i % 2 else b"HS1" + bytes(16) + planted
            con.execute("UPDATE Cache SET value = ?, mode = 1, filename = NULL WHERE key = ?", (blob, key))
        con.commit()
    return len(keys)


@pytest.mark.parametrize("n_nodes", [1, 2])
def test_a_planted_pickle_is_never_unpickled_when_entries_are_signed(tmp_path: Path, n_nodes: int) -> None:
    """With a secret, entries replaced by a malicious pickle (unsigned, or with a forged signature;
    per-node and whole-item entries alike, and a single-node map's one entry per item) are misses
    with one warning: the nodes run again, the pickle never runs, and the entries are overwritten
    (the next call hits)."""
    path, marker = tmp_path / "cache", tmp_path / "marker"
    nodes = [_double, _inc][:n_nodes]
    cache = DiskCache(path, secret="correct horse battery staple")
    pipeline = Pipeline(nodes, cache=cache)
    assert pipeline.map({"x": [1, 2, 3]}, map_over="x")["y"] == [2, 4, 6]
    cache.close()
    # Per node: an entry per item and its explain record; with two nodes, an item entry per item too.
    assert _plant_everywhere(path, marker) == (3 + 1 if n_nodes == 1 else 2 * (3 + 1) + 3)
    CALLS.clear()
    cache = DiskCache(path, secret=b"correct horse battery staple")
    pipeline = Pipeline(nodes, cache=cache)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert pipeline.map({"x": [1, 2, 3]}, map_over="x")["y"] == [2, 4, 6]
    _one_warning_naming(record, path)
    assert "signature" in _cache_warnings(record)[0]
    assert not marker.exists()
    ran = list(CALLS)
    assert [c for c in ran if isinstance(c, int)] == [1, 2, 3]
    assert len(ran) == 3 * n_nodes
    assert pipeline.map({"x": [1, 2, 3]}, map_over="x")["y"] == [2, 4, 6]
    assert list(CALLS) == ran
    cache.close()


def test_the_secret_can_come_from_the_environment_and_binds_entries_to_their_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HYPERNODES_CACHE_SECRET signs entries like secret=; another secret reads them as misses; an
    entry copied under another key does not verify (the signature covers the key)."""
    monkeypatch.setenv("HYPERNODES_CACHE_SECRET", "from the environment")
    cache = DiskCache(tmp_path / "cache")
    cache.put("a", 1)
    cache.put("b", 2)
    raw = DiskCache(tmp_path / "cache", secret="another").get_blobs
    with pytest.warns(CacheWarning, match="signature"):
        assert raw(["a", "b"]) == {}
    assert cache.get("a") == 1
    assert cache._key is not None
    stored = cache._store.get("a")
    assert stored.startswith(b"HS1")
    cache._store.set("b", stored)  # a's signed entry moved under b
    with pytest.warns(CacheWarning, match="signature"):
        assert cache.get("b", "missing") == "missing"
    cache.close()


def test_an_unsigned_cache_never_unpickles_a_diskcache_pickle_row(tmp_path: Path) -> None:
    """A row in diskcache's own pickle mode (not an entry DiskCache writes) is a miss, never unpickled,
    even without a secret; so is an inline row whose value is not bytes."""
    path, marker = tmp_path / "cache", tmp_path / "marker"
    cache = DiskCache(path)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.close()
    with contextlib.closing(sqlite3.connect(path / "cache.db")) as con:
        con.execute("UPDATE Cache SET value = ?, mode = 4 WHERE key = 'a'", (pickle.dumps(_Plant(marker)),))
        con.execute("UPDATE Cache SET value = 'text, not bytes' WHERE key = 'b'")
        con.commit()
    reader = DiskCache(path)
    assert reader.get("a", "missing") == "missing"
    assert reader.get_blobs(["b"]) == {}
    assert not marker.exists()


@pytest.mark.parametrize("target", ["directory", "database"])
def test_a_cache_others_can_write_to_is_refused_with_the_fix(tmp_path: Path, target: str) -> None:
    """A group- or world-writable directory or database file is refused before anything is read, with
    the path, its mode and the fix; a sticky world-writable directory (as /tmp) is accepted."""
    path = tmp_path / "cache"
    DiskCache(path).put("a", 1)
    gc.collect()
    unsafe = path if target == "directory" else path / "cache.db"
    unsafe.chmod(0o777 if target == "directory" else 0o666)
    with pytest.raises(PermissionError, match="other users can write to it") as caught:
        DiskCache(path)
    message = str(caught.value)
    assert str(unsafe) in message
    assert "rwxrwxrwx" in message or "rw-rw-rw-" in message
    assert f"chmod go-w {unsafe}" in message
    if target == "directory":
        path.chmod(0o1777)
        assert DiskCache(path).get("a") == 1


def test_a_cache_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A directory owned by another user (not root) is refused, naming its owner."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    path = tmp_path / "cache"
    path.mkdir(mode=0o755)
    os.chown(path, 65534, 65534)
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        DiskCache(path)


def test_a_new_cache_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """Under a group-writable umask (002) the directory and database DiskCache creates are not
    group-writable, so the next DiskCache on them is not refused."""
    old = os.umask(0o002)
    try:
        cache = DiskCache(tmp_path / "cache")
        cache.put("a", 1)
    finally:
        os.umask(old)
    for made in (tmp_path / "cache", tmp_path / "cache" / "cache.db"):
        assert made.stat().st_mode & 0o022 == 0, oct(made.stat().st_mode)
    assert DiskCache(tmp_path / "cache").get("a") == 1
    cache.close()


def test_a_secret_must_be_text_or_bytes_and_not_empty(tmp_path: Path) -> None:
    """secret= is checked when given: an empty one or another type is refused, naming what is allowed."""
    with pytest.raises(ValueError, match="empty"):
        DiskCache(tmp_path / "c", secret="")
    with pytest.raises(TypeError, match="str or bytes"):
        DiskCache(tmp_path / "c", secret=42)  # type: ignore[arg-type]


# -- MemoryCache limits, and bounded state for failed items -----------------------------


def test_a_memory_cache_evicts_the_least_recently_used_entries_past_its_limits() -> None:
    """max_items keeps the most recently stored or read entries; max_bytes keeps the stored bytes
    within the limit (an entry larger than the whole cache is not stored)."""
    cache = MemoryCache(max_items=2)
    cache.put_blobs([("a", b"1"), ("b", b"2")])
    assert cache.get_blobs(["a"]) == {"a": b"1"}  # a read refreshes a
    cache.put_blob("c", b"3")  # evicts b, the least recently used
    assert sorted(cache.get_blobs(["a", "b", "c"])) == ["a", "c"]
    by_size = MemoryCache(max_bytes=10)
    by_size.put_blobs([("a", b"x" * 4), ("b", b"y" * 4)])
    by_size.put_blob("c", b"z" * 4)  # 12 bytes: a goes
    assert sorted(by_size.get_blobs(["a", "b", "c"])) == ["b", "c"]
    by_size.put_blob("huge", b"h" * 11)
    assert not by_size.has("huge")
    assert len(by_size) == 2
    by_size.put_blob("b", b"y")  # replacing an entry counts its new size only
    by_size.put_blob("d", b"d" * 5)
    assert sorted(by_size.get_blobs(["b", "c", "d"])) == ["b", "c", "d"]


def test_a_bounded_memory_cache_keeps_a_map_within_its_limit_and_serves_what_it_kept() -> None:
    """A map of 50 items through a MemoryCache of 20 entries holds at most 20, and what it holds
    is served (the most recent items hit, the evicted ones run again)."""
    cache = MemoryCache(max_items=20)
    pipeline = Pipeline([_double], cache=cache)
    assert pipeline.map({"x": list(range(50))}, map_over="x")["y"] == [2 * x for x in range(50)]
    assert len(cache) <= 20
    CALLS.clear()
    assert pipeline.run({"x": 49}) == {"y": 98}
    assert CALLS == []


def test_a_memory_cache_is_thread_safe_under_its_limit() -> None:
    """Eight threads storing and reading at once leave a cache within its limits, with its byte
    count equal to what it holds."""
    cache = MemoryCache(max_items=50, max_bytes=2_000)

    def work(t: int) -> None:
        for i in range(2_000):
            cache.put_blob(f"{t}:{i % 97}", bytes(i % 64))
            cache.get_blobs([f"{t}:{(i * 7) % 97}", f"{(t + 1) % 8}:{i % 97}"])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 50
    assert cache._size == sum(len(b) for b in cache._data.values()) <= 2_000


@pytest.mark.parametrize(
    ("limit", "value"), [("max_items", 0), ("max_bytes", -1), ("max_items", 1.5), ("max_bytes", True)]
)
def test_memory_cache_limits_are_checked(limit: str, value: Any) -> None:
    """A limit that is not a positive integer is refused, naming it and what is allowed."""
    with pytest.raises(ValueError, match=f"{limit}=.*positive integer or None"):
        MemoryCache(**{limit: value})


@node(output_name="z")
def _fails_on_odd(y: int) -> int:
    if y % 4 == 2:
        raise ValueError("odd")
    return y + 1


def test_failed_items_leave_no_state_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under on_error="continue", the per-item state of items whose nodes failed is dropped with
    their chunk: a map of 20,000 items, half failing, never holds more than one chunk's items."""
    held: list[int] = []
    prefetch = CacheLookup.prefetch

    def counting(self: CacheLookup, template: Any, items: Any) -> None:
        prefetch(self, template, items)
        held.append(len(self._items))

    monkeypatch.setattr(CacheLookup, "prefetch", counting)
    pipeline = Pipeline([_double, _fails_on_odd], cache=MemoryCache())
    result = pipeline.map({"x": list(range(20_000))}, map_over="x", on_error="continue")
    assert len(result.failures) == 10_000
    assert max(held) <= MAX_CHUNK


# -- clear(node=...) -------------------------------------------------------------------


@node(output_name="z")
def _inc(y: int) -> int:
    CALLS.append(("inc", y))
    return y + 1


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_clear_node_drops_that_nodes_entries_and_the_item_entries_that_include_it(storage: str, tmp_path: Path) -> None:
    """clear(node="_inc") makes _inc run again for every item (its entries and the whole-item entries
    are gone) while _double still hits; clear() drops everything."""
    cache = MemoryCache() if storage == "memory" else DiskCache(tmp_path / "cache")
    pipeline = Pipeline([_double, _inc], cache=cache)
    assert pipeline.map({"x": [1, 2]}, map_over="x")["z"] == [3, 5]
    CALLS.clear()
    cache.clear(node="_inc")
    assert pipeline.map({"x": [1, 2]}, map_over="x")["z"] == [3, 5]
    assert pipeline.run({"x": 1}) == {"y": 2, "z": 3}
    assert CALLS == [("inc", 2), ("inc", 4)]
    cache.clear()
    assert len(cache) == 0
    CALLS.clear()
    assert pipeline.run({"x": 1}) == {"y": 2, "z": 3}
    assert CALLS == [1, ("inc", 2)]


def test_clear_node_reaches_into_nested_pipelines() -> None:
    """Clearing a node inside a nested pipeline also drops the nested pipeline's own entry (which
    holds its result), so the inner node runs again."""
    inner = Pipeline([_double], name="inner")
    cache = MemoryCache()
    outer = Pipeline([inner, _inc], cache=cache)
    assert outer.run({"x": 3}) == {"y": 6, "z": 7}
    CALLS.clear()
    cache.clear(node="_double")
    assert outer.run({"x": 3}) == {"y": 6, "z": 7}
    assert CALLS == [3]


class _OldCache(MemoryCache):
    def clear(self) -> None:  # type: ignore[override]  # a custom cache written before clear(node=...)
        self._data.clear()


def test_a_custom_cache_without_clear_node_says_so() -> None:
    """A Cache subclass whose clear() takes no node still clears everything; clear(node=...) raises
    NotImplementedError saying what to implement. A bad node name is refused."""
    cache = _OldCache()
    cache.put("a", 1)
    with pytest.raises(NotImplementedError, match="does not record which node"):
        cache.clear(node="a")
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError, match="node's name"):
        MemoryCache().clear(node="")


# -- the write buffer -----------------------------------------------------------------------


class _CountingCache(MemoryCache):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def put_tagged(self, entries: Any) -> None:
        self.writes += 1
        super().put_tagged(entries)


def test_a_map_writes_its_buffer_once_not_once_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving to the next chunk does not write the buffer (a DiskCache's commit per chunk cost more
    than the chunk's inserts): under the buffer's limits, a map of several chunks writes once, at
    its end, and a second map then serves every item from the cache."""
    from hypernodes.cache import lookup

    monkeypatch.setattr(lookup, "_FLUSH_AFTER_S", 3600.0)  # no write for the buffer's age on a slow box
    chunks: list[int] = []
    prefetch = CacheLookup.prefetch

    def counting(self: CacheLookup, template: Any, items: Any) -> None:
        chunks.append(len(items))
        prefetch(self, template, items)

    monkeypatch.setattr(CacheLookup, "prefetch", counting)
    cache = _CountingCache()
    pipeline = Pipeline([_double], cache=cache)
    assert pipeline.map({"x": list(range(1000))}, map_over="x")["y"] == [2 * x for x in range(1000)]
    assert len(chunks) > 1
    assert cache.writes == 1
    CALLS.clear()
    assert pipeline.map({"x": list(range(1000))}, map_over="x")["y"] == [2 * x for x in range(1000)]
    assert CALLS == []


def test_an_untagged_entry_replacing_a_tagged_one_leaves_clear_node_alone() -> None:
    """In an unbounded MemoryCache, an entry stored without a tag drops the tag its key had: clear(node=)
    then keeps it, and still drops the tagged entries stored in the same batch."""
    cache = MemoryCache()
    cache.put_tagged([("a", b"1", "\nn\n"), ("b", b"2", "\nn\n")])
    cache.put_tagged([("a", b"3", None), ("c", b"4", "\nn\n")])
    cache.clear(node="n")
    assert cache.get_blobs(["a", "b", "c"]) == {"a": b"3"}
