"""The keys of one call's nodes and map items (:class:`CallKeys`), the half of a lookup that hashes.

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

import hashlib
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from ..failures import Failure
from ._code import CodeKey, _node_code
from ._values import _DIGEST, Unhashable, _digest, _feed
from .storage import CacheWarning, tag_of

KEYS_VERSION = b"k2:"
"""Fed first into every node key: bump it with any change to how a key is built or to what an entry
holds, so that entries stored before are missed, never misread (``k2``: exact scalars fed as their
own encoding, single-node maps store no whole-item entry)."""

DEFER = "defer"  # a key that depends on an uncached upstream node's value, computed when the node is reached
_SCALARS = (int, str, float, bool, bytes, type(None))  # self-delimiting encodings: fed as they are
_NO_CYCLE: set[int] = set()  # _feed's cycle guard, never touched for scalars


class CallKeys:
    """What the keys of one call are made of, and the keys of its items.

    Everything the same for every item (each node's code, the broadcast inputs, the
    wiring) is hashed once here; an item's keys then cost a hasher copy and a few
    updates per node (:meth:`keys`), its whole entry's key one copy (:meth:`item_key`).
    """

    def __init__(self, plan: Any, values: Sequence[Any], map_slots: Iterable[int] | None) -> None:
        """Args:
        plan: the call's plan.
        values: its slot template (the inputs of ``run()``, or a map's broadcast inputs).
        map_slots: a map's mapped slots (hashed per item); None for ``run()``.
        """
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
        self.unkeyed: dict[int, str] = {}  # per node whose code cannot be keyed: why (for explain)
        self.sources: list[tuple[tuple[bytes, int, int, int], ...]] = []
        self.const: dict[int, bytes | None] = {}
        for k, node in enumerate(plan.nodes):
            try:
                parts = _node_code(node)
            except Unhashable as exc:
                where = getattr(exc, "where", "a value its code reads")
                self._warn(k, exc.type_name, where)
                self.unkeyed[k] = f"not cached: {where} is a {exc.type_name}, which cannot be hashed"
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
            seed = None if code is None else KEYS_VERSION + code
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
        # A single-node plan has none: its node's entry is already one entry per item.
        if map_slots is not None and self.n_nodes > 1 and all(seed is not None for seed in self._seeds):
            seed_h = hashlib.blake2b(b"item:%d:" % self.n_nodes, digest_size=_DIGEST)
            for seed, wired in zip(self._seeds, self._var):
                assert seed is not None
                seed_h.update(b"%d:" % len(seed) + seed + repr(wired).encode() + b";")
            seed_h.update(repr(self._mslots).encode())
            self._item_seed = seed_h.digest()
        self.is_map = map_slots is not None
        # A single-node map, its node cached: an item's one key is all it needs (one_key).
        self.one = self.is_map and self.n_nodes == 1 and self._seeds[0] is not None
        self.nested = any(node.nested for node in plan.nodes)
        # What clear(node=...) matches: a node's entries carry its name (and a nested pipeline's,
        # the names of the nodes within); an item's whole entry carries every name of the call.
        within = [_names_within(node, name) for node, name in zip(plan.nodes, self.names)]
        self.tags = tuple(tag_of(names) for names in within)
        self.item_tag = tag_of([name for names in within for name in names])
        self._init_hashers()

    def _init_hashers(self) -> None:
        # Hashers are not picklable: a lookup sent to a worker process makes its own.
        self._h0 = [None if seed is None else hashlib.blake2b(seed, digest_size=_DIGEST) for seed in self._seeds]
        self._item_h0 = None if self._item_seed is None else hashlib.blake2b(self._item_seed, digest_size=_DIGEST)

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
        """``value`` as a key part (:func:`_encoded`); None, with the warning, when it cannot be hashed."""
        try:
            return _encoded(value)
        except Unhashable as exc:
            self._warn(k, exc.type_name, f"input `{name.decode()}`")
        except Exception as exc:  # a __cache_key__ or a registered hasher that raises
            self._warn(k, type(exc).__name__, f"input `{name.decode()}`'s cache key (it raised)")
        return None

    def keys(self, values: Sequence[Any]) -> list[str | None]:
        """Per node, its key for slot values ``values``: None where the node is not cached or an
        input cannot be hashed (warned once), :data:`DEFER` where it reads an uncached node's output."""
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
                    if upkey is None or upkey is DEFER:  # an uncached upstream: its value decides, later
                        key = DEFER
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

    def one_key(self, values: Sequence[Any]) -> str | None:
        """:meth:`keys`' one key, for a single-node map (:attr:`one`): its inputs are all external."""
        h = self._h0[0].copy()  # type: ignore[union-attr]  # one: the node is cached
        for prefix, slot, up in self._var[0]:
            if up == -2:  # a broadcast input's part, fixed for the call
                h.update(prefix)
                continue
            v = values[slot]
            if type(v) is int:  # the commonest, written out: _encoded's encoding, with no call
                try:
                    h.update(prefix + b"i%d;" % v)
                    continue
                except ValueError:  # over int->str's digit limit: _encoded's digest
                    pass
            d = self._value(0, v, prefix[:-2])
            if d is None:
                return None
            h.update(prefix + d)
        return h.hexdigest()

    def item_key(self, values: Sequence[Any]) -> str | None:
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

    def deferred(self, k: int, keys: list[str | None], args: tuple[Any, ...]) -> str | None:
        """Node ``k``'s key once it is reached, from ``args``: it reads an uncached node's output
        (by value); None when an argument holds a failure or cannot be hashed."""
        code = self.code[k]
        assert code is not None
        h = hashlib.blake2b(b"deferred:" + KEYS_VERSION + code, digest_size=_DIGEST)  # a key space of its own
        for (name, _slot, up, j), arg in zip(self.sources[k], args):
            upkey = keys[up] if up >= 0 else None
            if upkey is not None and upkey is not DEFER and self.code[up] is not None:
                h.update(name + b"=u%d:" % j + upkey.encode())
                continue
            if holds_failure(arg):  # an uncached node's output from a failure: nothing computed from it is stored
                return None
            d = self._value(k, arg, name)
            if d is None:
                return None
            h.update(name + b"=v" + d)
        return h.hexdigest()

    def below(self, node: int) -> tuple[int, ...]:
        """The nodes that read ``node``'s outputs, directly or not (computed when a failure needs it)."""
        found: set[int] = set()
        frontier = {node}
        while frontier:
            frontier = {k for k, srcs in enumerate(self.sources) for _, _, up, _ in srcs if up in frontier} - found
            found |= frontier
        return tuple(sorted(found))

    def meta_key(self, node: int) -> str:
        """The key under which ``node``'s last stored key parts are kept, for :func:`explain`."""
        return "meta:" + self.names[node]

    def described(self, node: int, keys: Sequence[str | None]) -> dict[str, Any]:
        """What ``node``'s key is made of, part by part (stored beside its entries, for :func:`explain`)."""
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


def _encoded(value: Any) -> bytes:
    """``value`` as a key part: an exact int, float, bool, None or short str as its own encoding
    (:func:`~._values._feed`'s: a type tag, then self-delimiting), anything else as ``#`` and its
    digest. The tags differ, so a part read from a key stream is never ambiguous: two values get
    one part only when they are of one type and equal, or share a 128-bit digest."""
    t = type(value)
    if t is int:
        try:
            return b"i%d;" % value
        except ValueError:  # over int->str's digit limit: its digest
            pass
    elif t is str:
        if len(value) <= _SHORT:
            b: bytes = value.encode("utf-8", "surrogatepass")
            return b"s%d:" % len(b) + b
    elif t is float:
        digits: str = value.hex()
        return b"f" + digits.encode() + b";"  # hex() tells -0.0 from 0.0, and keeps every bit
    elif t is bool:
        return b"T" if value else b"F"
    elif value is None:
        return b"N"
    return b"#" + _digest(value)


_SHORT = 64  # characters: a longer str is keyed by its digest (a broadcast one is kept per call, and by explain)


def _names_within(node: Any, name: str) -> list[str]:
    """``name`` and, for a nested pipeline's node, the names of the nodes within it (recursively)."""
    names = [name]
    for sub in node.pipeline.nodes if node.nested else ():
        names.extend(_names_within(sub, sub.name))
    return names


def holds_failure(value: Any) -> bool:
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
