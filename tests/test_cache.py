"""The cache: what a key covers, what hits and misses, under every executor and storage."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hypernodes import DiskCache, HypernodesEngine, MemoryCache, Pipeline, PipelineCallback, node
from hypernodes.cache import CacheWarning, explain, hash_code, hash_value
from hypernodes.node import Node

from .kinds import EXECUTOR_KINDS

pytest.importorskip("diskcache")


class _Log(list):  # type: ignore[type-arg]
    def __cache_key__(self) -> str:
        return "LOG"


LOG: list[Any] = _Log()
"""What in-process test nodes ran. Every global a node's code reads is part of its key by value,
so appending would change the key: this list says, with ``__cache_key__``, that its content
does not count."""


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    LOG.clear()


def _counted(log: Path) -> Callable[..., Any]:
    """A node function that appends its input to ``log`` (a file: process workers count too)."""
    path = str(log)

    def double(x: int) -> int:
        with open(path, "a") as f:
            f.write(f"{x}\n")
        return 2 * x

    return double


def _calls(log: Path) -> list[int]:
    return sorted(int(line) for line in log.read_text().split()) if log.exists() else []


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_map_items_are_cached_independently_under_every_map_executor(
    kind: str, make_executor: Callable[[str], Any], tmp_path: Path
) -> None:
    """After mapping [1, 2, 3], mapping [2, 3, 4] runs only item 4, whatever runs the items."""
    log = tmp_path / "calls"
    doubled = node(_counted(log), output_name="d")
    plus = node(lambda d: d + 1, output_name="y")
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([doubled, plus], engine=engine, cache=DiskCache(tmp_path / "c"))
        assert pipeline.map({"x": [1, 2, 3]}, map_over="x") == {"d": [2, 4, 6], "y": [3, 5, 7]}
        assert pipeline.map({"x": [2, 3, 4]}, map_over="x") == {"d": [4, 6, 8], "y": [5, 7, 9]}
    assert _calls(log) == [1, 2, 3, 4]


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_run_hits_under_every_node_executor(kind: str, make_executor: Callable[[str], Any], tmp_path: Path) -> None:
    """A diamond run twice under a node executor runs each node once; a new input runs them again."""
    log = tmp_path / "calls"
    a = node(_counted(log), output_name="a")
    b = node(lambda x: x * 3, output_name="b")
    c = node(lambda a, b: a + b, output_name="c")
    with HypernodesEngine(node_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([a, b, c], engine=engine, cache=DiskCache(tmp_path / "c"))
        assert pipeline.run({"x": 2}) == {"a": 4, "b": 6, "c": 10}
        assert pipeline.run({"x": 2}) == {"a": 4, "b": 6, "c": 10}
        assert pipeline.run({"x": 3}) == {"a": 6, "b": 9, "c": 15}
    assert _calls(log) == [2, 3]


@pytest.mark.parametrize("kind", ["sequential", "threaded", "async", "ThreadPoolExecutor"])
def test_a_memory_cache_hits_under_in_process_executors(
    kind: str, make_executor: Callable[[str], Any], tmp_path: Path
) -> None:
    """MemoryCache serves every in-process map executor."""
    log = tmp_path / "calls"
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        pipeline = Pipeline([node(_counted(log), output_name="d")], engine=engine, cache=MemoryCache())
        pipeline.map({"x": list(range(20))}, map_over="x")
        assert pipeline.map({"x": list(range(25))}, map_over="x") == {"d": [2 * i for i in range(25)]}
    assert _calls(log) == list(range(25))


_MODULE = """
import sys
from hypernodes import DiskCache, Pipeline, node

@node(output_name="y")
def f(x):
    {doc}
    # {comment}
    print("ran", file=sys.stderr)
    return x + {k}

print(Pipeline([f], cache=DiskCache(sys.argv[1])).run({{"x": 1}})["y"])
"""


def _run_module(tmp_path: Path, k: int, doc: str = '"""Adds."""', comment: str = "a") -> tuple[int, bool]:
    script = tmp_path / "mod.py"
    script.write_text(_MODULE.format(k=k, doc=doc, comment=comment))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "c")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout), "ran" in done.stderr


def test_a_new_body_in_a_fresh_process_invalidates_but_comments_and_docstrings_do_not(tmp_path: Path) -> None:
    """Fresh interpreters agree on keys: the same code hits, a new body misses, comment/docstring edits hit."""
    assert _run_module(tmp_path, 1) == (2, True)
    assert _run_module(tmp_path, 1) == (2, False)
    assert _run_module(tmp_path, 1, doc='"""Adds one, documented anew."""', comment="changed") == (2, False)
    assert _run_module(tmp_path, 2) == (3, True)


def test_a_closure_value_change_invalidates() -> None:
    """The values a function closes over are part of its code's key."""

    def make(k: int) -> Callable[[int], int]:
        def add(x: int) -> int:
            return x + k

        return add

    assert hash_code(make(1)) == hash_code(make(1))
    assert hash_code(make(1)) != hash_code(make(2))
    pipeline_cache = MemoryCache()
    assert Pipeline([node(make(1), output_name="y")], cache=pipeline_cache).run({"x": 1}) == {"y": 2}
    assert Pipeline([node(make(2), output_name="y")], cache=pipeline_cache).run({"x": 1}) == {"y": 3}


def test_an_upstream_change_invalidates_downstream_but_an_unrelated_change_does_not(tmp_path: Path) -> None:
    """Changing a node reruns it and what reads it; its siblings and their readers still hit."""
    cache = MemoryCache()

    def build(a_body: str, c_body: str) -> Pipeline:
        scope: dict[str, Any] = {"log": LOG}
        exec(f"def a(x):\n    log.append('a')\n    return {a_body}\n", scope)
        exec(f"def c(x):\n    log.append('c')\n    return {c_body}\n", scope)
        b = node(lambda a: LOG.append("b") or a + 1, output_name="b")
        return Pipeline([node(scope["a"], output_name="a"), b, node(scope["c"], output_name="c")], cache=cache)

    assert build("x", "x").run({"x": 1}) == {"a": 1, "b": 2, "c": 1}
    assert sorted(LOG) == ["a", "b", "c"]
    LOG.clear()
    assert build("x", "x * 10").run({"x": 1}) == {"a": 1, "b": 2, "c": 10}
    assert LOG == ["c"]
    LOG.clear()
    assert build("x * 5", "x * 10").run({"x": 1}) == {"a": 5, "b": 6, "c": 10}
    assert sorted(LOG) == ["a", "b"]


@dataclasses.dataclass
class _Config:
    dim: int
    name: str


class _Model:
    def __init__(self, name: str) -> None:
        self.name = name
        self._memo: dict[str, int] = {}


class _Keyed:
    def __init__(self, key: str, noise: int) -> None:
        self.key, self.noise = key, noise

    def __cache_key__(self) -> str:
        return self.key


def test_values_are_hashed_by_content_with_their_type() -> None:
    """1, 1.0, "1" and True differ; containers, arrays, dataclasses, objects and __cache_key__ hash by content;
    a dict's insertion order and an object's private attributes are state (a miss, never a collision)."""
    assert len({hash_value(v) for v in (1, 1.0, "1", True, b"1", None, (1,), [1])}) == 8
    assert hash_value({"a": 1, "b": 2}) == hash_value({"a": 1, "b": 2}) != hash_value({"b": 2, "a": 1})
    assert hash_value({3, 1, 2}) == hash_value({2, 3, 1}) != hash_value(frozenset({1, 2, 3}))
    assert hash_value(np.arange(6)) == hash_value(np.arange(6))
    assert hash_value(np.arange(6)) != hash_value(np.arange(6).reshape(2, 3))
    assert hash_value(np.arange(6)) != hash_value(np.arange(6, dtype=np.int32))
    assert hash_value(_Config(4, "m")) == hash_value(_Config(4, "m")) != hash_value(_Config(5, "m"))
    warm = _Model("v1")
    warm._memo["x"] = 1
    assert hash_value(warm) != hash_value(_Model("v1")) != hash_value(_Model("v2"))
    assert hash_value(_Keyed("k", 1)) == hash_value(_Keyed("k", 2)) != hash_value(_Keyed("j", 1))


def test_value_hashes_are_stable_across_processes() -> None:
    """A fresh interpreter (another hash seed) computes the same digests."""
    code = "from hypernodes.cache import hash_value; print(hash_value({'a': {1, 2, 'x'}, 'b': (1.5, None)}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == hash_value({"a": {1, 2, "x"}, "b": (1.5, None)})


_PINNED = {  # digests as the first release computed them: fast paths must not move a key
    1: "0ea037d41ecc33ab3e4f1d362c009358",
    -7: "49ee35ed1dad0102bd499f509daeefb5",
    "x": "e8a5eef604a94399171f7b6d3e162ae1",
    "h\u00e9llo": "08e7c79847acdf4b62563edbbab29bbe",
    1.5: "83dfcd375fddafe712198a2fe69458dc",
    None: "738096e476d3c5447c3cb95c39bfc964",
    b"ab": "a86ef675f0b45bb69249fcbdf8d8f393",
    (1, "a"): "e972073882ce4b7198214d65c775ecd0",
}


@pytest.mark.parametrize("value", list(_PINNED), ids=repr)
def test_value_digests_do_not_change_between_versions(value: Any) -> None:
    """hash_value gives the digests entries were stored under before (a DiskCache outlives upgrades)."""
    assert hash_value(value) == _PINNED[value]
    assert hash_value(True) == "0583525866ce6d4c711b8d319b34a247"  # True == 1 as a dict key: checked apart


def test_an_unhashable_input_leaves_the_node_uncached_with_one_warning() -> None:
    """A lock as an input: one warning naming the node and the type; results still right; nothing cached."""

    @node(output_name="y")
    def uses_lock(x: int, lock: Any) -> int:
        LOG.append(x)
        return x + 1

    pipeline = Pipeline([uses_lock], cache=MemoryCache())
    lock = threading.Lock()
    with pytest.warns(CacheWarning, match=r"uses_lock.*lock") as caught:
        assert pipeline.map({"x": [1, 2, 3], "lock": lock}, map_over="x") == {"y": [2, 3, 4]}
    assert len(caught) == 1
    with pytest.warns(CacheWarning):
        pipeline.map({"x": [1, 2, 3], "lock": lock}, map_over="x")
    assert LOG == [1, 2, 3, 1, 2, 3]


TWICE = node(lambda x: x * 2, output_name="y")  # the node several processes share a cache for


def _writer(path: str, lo: int) -> None:
    out = Pipeline([TWICE], cache=DiskCache(path)).map({"x": list(range(lo, lo + 300))}, map_over="x")
    assert out == {"y": [2 * x for x in range(lo, lo + 300)]}


class _CountHits(PipelineCallback):
    def __init__(self) -> None:
        self.hits = 0

    def on_node_cached(self, node_id: str, signature: str, ctx: Any) -> None:
        self.hits += 1


def test_several_processes_write_one_disk_cache(tmp_path: Path) -> None:
    """Four processes mapping overlapping ranges into one DiskCache: every entry lands and reads back."""
    path = str(tmp_path / "c")
    procs = [
        subprocess.Popen([sys.executable, "-c", f"from tests.test_cache import _writer; _writer({path!r}, {lo})"])
        for lo in (0, 100, 200, 300)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    counter = _CountHits()
    cache = DiskCache(path)
    pipeline = Pipeline([TWICE], cache=cache, callbacks=[counter])
    assert pipeline.map({"x": list(range(600))}, map_over="x") == {"y": [2 * x for x in range(600)]}
    assert counter.hits == 600
    entries = [k for k in _keys(cache) if not k.startswith("meta:")]
    assert len(entries) == 600  # per item one entry: a single-node map stores no whole-item entry


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_a_corrupt_entry_is_a_miss_with_a_warning_and_is_overwritten(storage: str, tmp_path: Path) -> None:
    """Garbage under a node's key: a warning, the node runs, the entry is repaired."""
    cache = MemoryCache() if storage == "memory" else DiskCache(tmp_path / "c")
    pipeline = Pipeline([node(lambda x: LOG.append(x) or x + 1, output_name="y")], cache=cache)
    pipeline.run({"x": 1})
    (key,) = [k for k in _keys(cache) if not k.startswith("meta:")]
    cache.put_blob(key, b"HN1garbage-not-a-pickle")
    with pytest.warns(CacheWarning, match="unreadable"):
        assert pipeline.run({"x": 1}) == {"y": 2}
    assert pipeline.run({"x": 1}) == {"y": 2}
    assert LOG == [1, 1]


def _keys(cache: Any) -> list[str]:
    return list(cache._data) if isinstance(cache, MemoryCache) else list(cache._store.iterkeys())


def test_none_is_cached_and_failures_are_not() -> None:
    """A None result hits next time; a node that raised runs again."""

    @node(output_name="y")
    def flaky(x: int) -> None:
        LOG.append(x)
        if LOG == [1]:
            raise RuntimeError("first time")

    pipeline = Pipeline([flaky], cache=MemoryCache())
    with pytest.raises(RuntimeError, match="first time"):
        pipeline.run({"x": 1})
    assert pipeline.run({"x": 1}) == {"y": None}
    assert pipeline.run({"x": 1}) == {"y": None}
    assert LOG == [1, 1]


def test_a_hit_is_a_copy() -> None:
    """Mutating a cached result does not change what the next caller gets."""
    pipeline = Pipeline([node(lambda n: list(range(n)), output_name="xs")], cache=MemoryCache())
    pipeline.run({"n": 3})["xs"].append(99)
    first = pipeline.run({"n": 3})["xs"]
    first.append(100)
    assert pipeline.run({"n": 3}) == {"xs": [0, 1, 2]}


def test_cache_false_nodes_always_run_and_their_readers_still_cache() -> None:
    """@node(cache=False) runs every time; a reader keyed by its output value hits when the value repeats."""
    seed = node(lambda s: LOG.append("seed") or s * 7, output_name="r", cache=False)
    add = node(lambda r: LOG.append("add") or r + 1, output_name="y")
    pipeline = Pipeline([seed, add], cache=MemoryCache())
    assert pipeline.run({"s": 1}) == pipeline.run({"s": 1}) == {"r": 7, "y": 8}
    assert LOG == ["seed", "add", "seed"]


def test_nested_pipelines_inherit_the_cache() -> None:
    """An inner pipeline without a cache uses its parent's: inner and outer nodes hit on a second run."""
    inner = Pipeline([node(lambda x: LOG.append("inner") or x + 1, output_name="y")], name="inner")
    outer = Pipeline([inner, node(lambda y: LOG.append("outer") or y * 2, output_name="z")], cache=MemoryCache())
    assert outer.run({"x": 1}) == outer.run({"x": 1}) == {"y": 2, "z": 4}
    assert LOG == ["inner", "outer"]
    assert inner.run({"x": 1}) == {"y": 2}  # uncached on its own: runs
    assert LOG == ["inner", "outer", "inner"]


def test_explain_names_what_changed() -> None:
    """explain() says hit, or which part of a node's key changed since it was stored."""
    pipeline = Pipeline(
        [node(lambda x: x + 1, output_name="a"), node(lambda a, k: a * k, output_name="b")], cache=MemoryCache()
    )
    assert explain(pipeline, {"x": 1, "k": 2}) == {"a": "miss: never stored", "b": "miss: never stored"}
    pipeline.run({"x": 1, "k": 2})
    assert explain(pipeline, {"x": 1, "k": 2}) == {"a": "hit", "b": "hit"}
    why = explain(pipeline, {"x": 5, "k": 2})
    assert why["a"] == "miss: changed since last stored: input `x`"
    assert why["b"] == "miss: changed since last stored: upstream node `a`"


class _Hooks(PipelineCallback):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_node_cached(self, node_id: str, signature: str, ctx: Any) -> None:
        self.events.append(("node_cached", node_id, signature))

    def on_node_start(self, node_id: str, inputs: dict[str, Any], ctx: Any) -> None:
        self.events.append(("node_start", node_id))

    def on_map_item_cached(self, item_index: int, signature: str, ctx: Any) -> None:
        self.events.append(("item_cached", item_index, signature))

    def on_map_item_start(self, item_index: int, ctx: Any) -> None:
        self.events.append(("item_start", item_index))


@pytest.mark.parametrize("kind", ["sequential", "threaded", "parallel"])
def test_callbacks_see_cached_nodes_and_whole_cached_items(
    kind: str, make_executor: Callable[[str], Any], tmp_path: Path
) -> None:
    """on_node_cached gets the entry's signature; an item all from the cache is reported cached, not started."""
    hooks = _Hooks()
    with HypernodesEngine(map_executor=make_executor(kind), max_workers=2) as engine:
        f = node(lambda item: item * 2, output_name="doubled", name="double")
        pipeline = Pipeline([f], engine=engine, cache=DiskCache(tmp_path / "c"), callbacks=[hooks])
        pipeline.map({"item": [1, 2, 3]}, map_over="item")
        assert sum(e[0] == "item_start" for e in hooks.events) == 3
        hooks.events.clear()
        assert pipeline.map({"item": [1, 2, 4]}, map_over="item") == {"doubled": [2, 4, 8]}
    kinds = sorted(e[0] for e in hooks.events)
    assert kinds == ["item_cached", "item_cached", "item_start", "node_cached", "node_cached", "node_start"]
    assert all(len(e[2]) == 32 for e in hooks.events if e[0] in ("item_cached", "node_cached"))


def test_disk_cache_clear_and_size_limit(tmp_path: Path) -> None:
    """clear() empties the cache; a size limit evicts, and without one nothing is evicted."""
    cache = DiskCache(tmp_path / "c", size_limit=200_000)
    for i in range(50):
        cache.put(f"k{i}", bytes(10_000))
    assert len(cache) < 50
    unlimited = DiskCache(tmp_path / "u")
    for i in range(50):
        unlimited.put(f"k{i}", bytes(10_000))
    assert len(unlimited) == 50
    assert unlimited.get("k0") == bytes(10_000)
    unlimited.clear()
    assert len(unlimited) == 0
    assert not unlimited.has("k0")
    assert unlimited.get("k0", "gone") == "gone"
    with pytest.raises(ValueError, match="size_limit"):
        DiskCache(tmp_path / "x", size_limit=0)


def _inner_and_outer(log: Path, engine: Any, cache: Any) -> tuple[Node, Pipeline]:
    """An outer pipeline whose nested pipeline counts its calls, beside an independent node (so that
    a node executor has two nodes to run at once)."""
    counted = node(_counted(log), output_name="d")
    inner = Pipeline([counted], name="inner")
    side = node(lambda x: x - 1, output_name="e")
    both = node(lambda d, e: d + e, output_name="y")
    return counted, Pipeline([inner, side, both], engine=engine, cache=cache)


@pytest.mark.parametrize("level", ["map_executor", "node_executor"])
@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
def test_nested_pipelines_inherit_the_cache_under_every_executor(
    level: str, kind: str, make_executor: Callable[[str], Any], tmp_path: Path
) -> None:
    """The inner pipeline's nodes store their results in the outer call's cache wherever they run:
    a pipeline of the inner node alone then hits them without running it."""
    log = tmp_path / "calls"
    with HypernodesEngine(**{level: make_executor(kind)}, max_workers=2) as engine:  # type: ignore[arg-type]
        counted, outer = _inner_and_outer(log, engine, DiskCache(tmp_path / "c"))
        if level == "map_executor":
            assert outer.map({"x": [1, 2, 3]}, map_over="x") == {"d": [2, 4, 6], "e": [0, 1, 2], "y": [2, 5, 8]}
        else:
            assert outer.run({"x": 2}) == {"d": 4, "e": 1, "y": 5}
    ran = _calls(log)
    assert ran == ([1, 2, 3] if level == "map_executor" else [2])
    alone = Pipeline([counted], cache=DiskCache(tmp_path / "c"))
    assert alone.map({"x": ran}, map_over="x") == {"d": [2 * x for x in ran]}
    assert _calls(log) == ran


def test_run_and_map_items_share_entries() -> None:
    """A run() with x=2 serves the map item x=2, and a map's items serve later run()s."""
    pipeline = Pipeline([node(lambda x, k: LOG.append(x) or x * k, output_name="y")], cache=MemoryCache())
    assert pipeline.run({"x": 2, "k": 3}) == {"y": 6}
    assert pipeline.map({"x": [1, 2, 3], "k": 3}, map_over="x") == {"y": [3, 6, 9]}
    assert pipeline.run({"x": 3, "k": 3}) == {"y": 9}
    assert LOG == [2, 1, 3]


class _CountingCache(MemoryCache):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    def get_blobs(self, signatures: Any) -> dict[str, bytes]:
        self.reads.append(len(signatures))
        return super().get_blobs(signatures)


def test_a_warm_map_reads_each_chunk_in_one_query_and_a_changed_node_reruns_alone() -> None:
    """Warm: one read per chunk of items. After one node changes, each item's whole entry misses,
    its other nodes still hit their own entries, and only the changed node runs."""
    cache = _CountingCache()

    def build(c_body: str) -> Pipeline:
        scope: dict[str, Any] = {"log": LOG}
        exec(f"def c(b, x):\n    log.append('c')\n    return {c_body}\n", scope)
        a = node(lambda x: LOG.append("a") or x + 1, output_name="a")
        b = node(lambda a: LOG.append("b") or a * 2, output_name="b")
        return Pipeline([a, b, node(scope["c"], output_name="c")], cache=cache)

    xs = list(range(50))
    assert build("b - x").map({"x": xs}, map_over="x")["c"] == [(x + 1) * 2 - x for x in xs]
    LOG.clear()
    cache.reads.clear()
    assert build("b - x").map({"x": xs}, map_over="x")["c"] == [(x + 1) * 2 - x for x in xs]
    assert LOG == []
    assert sum(cache.reads) == 50  # the items' whole entries only ...
    assert len(cache.reads) <= 3  # ... one query per chunk (the first chunks are small: 1, 16, ...)
    cache.reads.clear()
    assert build("b + x").map({"x": xs}, map_over="x")["c"] == [(x + 1) * 2 + x for x in xs]
    assert LOG == ["c"] * 50
    assert sum(cache.reads) == 50 + 150  # the whole entries (all missed), then every node's own entry
    assert len(cache.reads) <= 6


def test_a_downstream_node_mutating_its_input_does_not_change_the_upstream_entry() -> None:
    """An item's whole entry holds each node's result as it was returned, not as a later node left it."""

    def grow(xs: list[int]) -> int:
        xs.append(99)  # mutates the upstream node's result in place
        return len(xs)

    pipeline = Pipeline(
        [node(lambda n: list(range(n)), output_name="xs"), node(grow, output_name="m")], cache=MemoryCache()
    )
    pipeline.map({"n": [2, 3]}, map_over="n")
    assert pipeline.map({"n": [2, 3]}, map_over="n") == {"xs": [[0, 1], [0, 1, 2]], "m": [3, 4]}


def test_a_corrupt_item_entry_is_a_miss_with_a_warning_and_is_overwritten() -> None:
    """Garbage in a map item's whole entry: a warning, the nodes' own entries serve it, the entry is repaired."""
    cache = MemoryCache()
    pipeline = Pipeline(
        [node(lambda x: LOG.append(x) or x + 1, output_name="y"), node(lambda y: 2 * y, output_name="z")], cache=cache
    )
    pipeline.map({"x": [1, 2]}, map_over="x")
    whole = [k for k, blob in cache._data.items() if blob.startswith(b"HNI")]
    assert len(whole) == 2
    cache.put_blob(whole[0], cache._data[whole[0]][:-3] + b"bad")
    with pytest.warns(CacheWarning, match="map item.*unreadable"):
        assert pipeline.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3], "z": [4, 6]}
    assert pipeline.map({"x": [1, 2]}, map_over="x") == {"y": [2, 3], "z": [4, 6]}
    assert LOG == [1, 2]


def test_explain_map_items_names_what_changed() -> None:
    """explain(map_over=...) says, per item, hit or which part of each node's key changed."""
    pipeline = Pipeline(
        [node(lambda x: x + 1, output_name="a"), node(lambda a, k: a * k, output_name="b")], cache=MemoryCache()
    )
    assert explain(pipeline, {"x": [1], "k": 2}, map_over="x") == [
        {"a": "miss: never stored", "b": "miss: never stored"}
    ]
    pipeline.map({"x": [1, 2], "k": 2}, map_over="x")
    why = explain(pipeline, {"x": [1, 2, 3], "k": 2}, map_over="x")
    assert why[:2] == [{"a": "hit", "b": "hit"}] * 2
    assert why[2] == {
        "a": "miss: not stored for this item's `x`",
        "b": "miss: changed since last stored: upstream node `a`",
    }
    why = explain(pipeline, {"x": [1, 2], "k": 5}, map_over="x")
    assert why == [{"a": "hit", "b": "miss: changed since last stored: input `k`"}] * 2


def test_a_disk_cache_holds_one_connection_whatever_the_threads() -> None:
    """A threaded map on a DiskCache opens one sqlite connection in this process, which close() closes."""
    import gc
    import sqlite3
    import tempfile

    def connections() -> int:
        return sum(isinstance(o, sqlite3.Connection) for o in gc.get_objects())

    with tempfile.TemporaryDirectory() as tmp:
        before = connections()
        cache = DiskCache(tmp)
        with HypernodesEngine(map_executor="threaded", max_workers=4) as engine:
            pipeline = Pipeline([node(lambda x: x * 2, output_name="y")], engine=engine, cache=cache)
            assert pipeline.map({"x": list(range(200))}, map_over="x") == {"y": [2 * x for x in range(200)]}
            assert pipeline.map({"x": list(range(200))}, map_over="x") == {"y": [2 * x for x in range(200)]}
        assert connections() == before + 1
        cache.close()
        assert connections() == before


def test_a_function_sent_by_value_keeps_its_key() -> None:
    """A closure cloudpickled to a worker (where its source cannot be read) hashes as it did here."""
    import cloudpickle

    def make(k: int) -> Callable[[int], int]:
        def add(x: int) -> int:
            return x + k  # a comment the key ignores

        return add

    here = make(1)
    key = hash_code(here)
    there = cloudpickle.loads(cloudpickle.dumps(here))
    assert hash_code(there) == key
    assert hash_code(cloudpickle.loads(cloudpickle.dumps(make(2)))) != key


def test_disk_cache_batched_writes_keep_count_and_files_right(tmp_path: Path) -> None:
    """One batch of small and large blobs: every entry reads back, the count is right, and a small
    blob replacing a large one removes the large one's file."""
    cache = DiskCache(tmp_path / "c")
    big = bytes(range(256)) * 200  # over diskcache's 32 KiB threshold: stored in a file
    cache.put_blobs([("a", b"1"), ("b", big), ("a", b"2")])
    assert cache.get_blobs(["a", "b", "z"]) == {"a": b"2", "b": big}
    assert len(cache) == 2

    def files() -> list[Path]:
        return list((tmp_path / "c").rglob("*.val"))

    assert len(files()) == 1
    cache.put_blobs([("b", b"small")])
    assert cache.get_blobs(["b"]) == {"b": b"small"}
    assert files() == []
    assert len(cache) == 2
    cache.close()


def _described(x: Any) -> str:
    LOG.append(x)
    if type(x) is float:
        return f"float:{x.hex()}"
    if type(x) is int:
        return f"int:{x:x}"  # hex: no digit limit
    return f"{type(x).__name__}:{x!r}"


EXACT = [1, True, 1.0, "1", b"1", None, 0.0, -0.0, "i1;", "#", "a" * 100, "a" * 99 + "b", 10**5000, 10**5000 + 1]
"""Values a single-node map keys by their own encoding (exact scalars) or by their digest, side by side."""


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_a_single_node_map_keys_each_value_apart_and_shares_entries_with_run(storage: str, tmp_path: Path) -> None:
    """A single-node map (one entry per item, scalars keyed by their own encoding): values equal by
    ``==`` but of another type (1, True, 1.0), 0.0 and -0.0, strings spelling an encoding, long
    strings and ints past int->str's limit each get their own entry: the warm map returns exactly
    what the node returned, and ``run()`` of each value hits the map's entry."""
    cache = MemoryCache() if storage == "memory" else DiskCache(tmp_path / "c")
    pipeline = Pipeline([node(_described, output_name="d")], cache=cache)
    expected = [_described(x) for x in EXACT]
    LOG.clear()
    assert pipeline.map({"x": EXACT}, map_over="x")["d"] == expected
    assert len(LOG) == len(EXACT)
    assert pipeline.map({"x": EXACT}, map_over="x")["d"] == expected
    assert [pipeline.run({"x": x})["d"] for x in EXACT] == expected
    assert len(LOG) == len(EXACT)


def test_entries_of_another_key_version_are_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key starts with the key layout's version: after a change of layout (a new version),
    the entries stored before are misses, never read under the new layout."""
    from hypernodes.cache import _keys

    pipeline = Pipeline([node(_described, output_name="d")], cache=MemoryCache())
    pipeline.map({"x": [1, 2]}, map_over="x")
    pipeline.run({"x": 3})
    LOG.clear()
    monkeypatch.setattr(_keys, "KEYS_VERSION", b"k0:")
    assert pipeline.map({"x": [1, 2]}, map_over="x")["d"] == ["int:1", "int:2"]
    assert pipeline.run({"x": 3})["d"] == "int:3"
    assert LOG == [1, 2, 3]


def test_entries_in_the_first_format_are_still_read() -> None:
    """An entry written in the first format (blake2b checksum, ``HN1``) reads back through
    ``Cache.get``; damaged, it is the default, as in the current format."""
    import hashlib
    import pickle

    data = pickle.dumps({"a": 1}, protocol=5)
    cache = MemoryCache()
    cache.put_blob("k", b"HN1" + hashlib.blake2b(data, digest_size=8).digest() + data)
    cache.put_blob("bad", b"HN1" + hashlib.blake2b(data, digest_size=8).digest() + data[:-1] + b"!")
    cache.put("now", {"a": 1})
    assert cache.get("k") == {"a": 1} == cache.get("now")
    assert cache.get("bad", "default") == "default"
    assert cache._data["now"].startswith(b"HN2")
