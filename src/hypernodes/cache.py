"""Caching: skip nodes whose code and inputs have not changed, across runs, processes and map items.

``Pipeline(..., cache=DiskCache(".cache"))`` caches every node (``@node(cache=False)``
opts out). A node's **key** is a digest of

* its *code*: the function's source with comments, docstrings and decorators
  ignored (its bytecode when there is no source), the source of the same-package
  module-level helpers it calls (recursively), and the current values of what it
  closes over (closure cells, and the plain constants among the globals it reads).
  The source part is computed once per function; the values once per call;
* per parameter, either the *key of the upstream node* that produces it, or, for
  an external input (and for the output of an uncached upstream node), the input's
  *value*, hashed by content with its type (:func:`hash_value`).

So a key is known from the inputs alone: :class:`CacheLookup` computes the keys of
a whole map slice up front and asks the cache for all of them in one query; a
downstream node never hashes a large upstream output. Changing a function's body
invalidates it and everything downstream; a comment, a docstring or an unrelated
node does not.

A value that cannot be hashed deterministically (a lock, an open file, an object of
a C type) makes the nodes reading it uncached for that call, with one
:class:`CacheWarning` naming the node and the type. Results are stored pickled,
behind a checksum: a hit is a fresh copy; a corrupt entry is a miss (with a
warning) and is overwritten. ``None`` is a result like any other; a node that
raises stores nothing.

This module is the seam's ``Lookup`` (``_events``): the cores ask it before each
node and tell it each result; the drivers call :meth:`CacheLookup.prefetch` before
a slice of items. A lookup (with its cache) is pickled into process workers, so a
:class:`DiskCache` is shared by every worker; a :class:`MemoryCache` is per process.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import inspect
import io
import os
import pickle
import textwrap
import threading
import time
import tokenize
import types
import uuid
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

__all__ = [
    "INHERITED",
    "Cache",
    "CacheLookup",
    "CacheWarning",
    "DiskCache",
    "MemoryCache",
    "compute_signature",
    "explain",
    "hash_code",
    "hash_inputs",
    "hash_value",
]

_DIGEST = 16  # bytes of blake2b: 128 bits, a 32-character hex signature


class CacheWarning(UserWarning):
    """A node went uncached for a call (an unhashable value), or a cache entry was unreadable."""


class Unhashable(TypeError):
    """Raised by :func:`hash_value` for a value it cannot hash deterministically."""

    def __init__(self, value: Any) -> None:
        self.type_name = _type_name(type(value))
        super().__init__(f"cannot hash a {self.type_name} deterministically")


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


# -- values ----------------------------------------------------------------------

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: classes written in Python (not C types such as locks or files)


def hash_value(value: Any) -> str:
    """A stable hex digest of ``value``'s content and type (never the salted ``hash()``).

    ``1``, ``1.0``, ``"1"`` and ``True`` differ; dicts and sets are order-independent;
    bytes and numpy arrays are hashed in one pass with dtype and shape. Objects may
    define ``__cache_key__()``; dataclasses, pydantic-style models (``model_dump()``)
    and instances of Python classes hash their public fields.

    Raises:
        Unhashable: (a ``TypeError``) the value, or something inside it, has no
            deterministic content (a lock, a file, a generator, a cycle).
    """
    return _digest(value).hex()


def _digest(value: Any) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST)
    _feed(h, value, set())
    return h.digest()


_SCALAR_REPR: tuple[type, ...] = (complex, decimal.Decimal, fractions.Fraction, datetime.date, datetime.time)
_SCALAR_REPR += (datetime.timedelta, uuid.UUID, PurePath, range)
_BUILTIN_BASES: tuple[Any, ...] = (str, int, float, bytes, tuple, list, dict, frozenset, set)


def _feed(h: Any, v: Any, active: set[int]) -> None:
    t = type(v)
    if t is str:
        b = v.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b))
        h.update(b)
    elif t is int:
        h.update(b"i%d;" % v)
    elif v is None:
        h.update(b"N")
    elif t is bool:
        h.update(b"T" if v else b"F")
    elif t is float:
        h.update(b"f" + v.hex().encode() + b";")
    elif t is bytes or t is bytearray:
        h.update(b"y%d:" % len(v))
        h.update(v)
    elif t is tuple or t is list:
        _feed_seq(h, b"t" if t is tuple else b"l", v, active)
    elif t is dict:
        _feed_unordered(h, b"d", [(_sub(k, active), _sub(x, active)) for k, x in v.items()])
    elif t is set or t is frozenset:
        _feed_unordered(h, b"e" if t is set else b"z", [(_sub(x, active), b"") for x in v])
    else:
        _feed_other(h, t, v, active)


def _sub(v: Any, active: set[int]) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST)
    _feed(h, v, active)
    return h.digest()


def _feed_seq(h: Any, tag: bytes, v: Sequence[Any], active: set[int]) -> None:
    if id(v) in active:
        raise Unhashable(v)
    active.add(id(v))
    h.update(tag + b"%d[" % len(v))
    for x in v:
        _feed(h, x, active)
    h.update(b"]")
    active.discard(id(v))


def _feed_unordered(h: Any, tag: bytes, pairs: list[tuple[bytes, bytes]]) -> None:
    h.update(tag + b"%d{" % len(pairs))
    for k, x in sorted(pairs):
        h.update(k + x)
    h.update(b"}")


def _feed_other(h: Any, t: type, v: Any, active: set[int]) -> None:
    if id(v) in active:
        raise Unhashable(v)
    name = _type_name(t).encode()
    key_method = getattr(t, "__cache_key__", None)
    if key_method is not None:
        h.update(b"k" + name + b":")
        active.add(id(v))
        _feed(h, v.__cache_key__(), active)
        active.discard(id(v))
        return
    np = _numpy()
    if np is not None and isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            h.update(b"A" + name + repr(v.shape).encode())
            _feed(h, v.tolist(), active)
            return
        h.update(b"a" + v.dtype.str.encode() + repr(v.shape).encode())
        h.update(memoryview(np.ascontiguousarray(v)).cast("B"))
        return
    if np is not None and isinstance(v, np.generic):
        h.update(b"g" + v.dtype.str.encode() + b":")
        h.update(v.tobytes() if not v.dtype.hasobject else repr(v).encode())
        return
    if isinstance(v, enum.Enum):
        h.update(b"E" + name + b"." + v.name.encode())
        return
    if isinstance(v, _BUILTIN_BASES):  # subclasses of builtins: their content, tagged with their type
        h.update(b"S" + name + b":")
        base = next(b for b in _BUILTIN_BASES if isinstance(v, b))
        _feed(h, base(v), active)
        return
    if isinstance(v, memoryview):
        _feed(h, v.tobytes(), active)
        return
    if isinstance(v, _SCALAR_REPR):
        h.update(b"r" + name + b":" + repr(v).encode() + b";")
        return
    if isinstance(v, type):
        h.update(b"c" + _type_name(v).encode() + b";")
        return
    if isinstance(v, (types.FunctionType, functools.partial, types.MethodType)):
        h.update(b"F" + bytes.fromhex(hash_code(v)))
        return
    active.add(id(v))
    try:
        if dataclasses.is_dataclass(v):
            fields = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
        elif callable(getattr(v, "model_dump", None)) and hasattr(t, "model_fields"):
            fields = v.model_dump()
        elif t.__flags__ & _HEAPTYPE:
            fields = _public_fields(v)
        else:
            raise Unhashable(v)
        h.update(b"o" + name + b":")
        _feed(h, fields, active)
    finally:
        active.discard(id(v))


def _public_fields(v: Any) -> dict[str, Any]:
    # An instance of a Python class: its public attributes (private `_x` ones hold
    # state such as memo caches that must not change the key).
    fields = {k: x for k, x in getattr(v, "__dict__", {}).items() if not k.startswith("_")}
    for cls in type(v).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if not slot.startswith("_") and hasattr(v, slot):
                fields[slot] = getattr(v, slot)
    if not fields and not hasattr(v, "__dict__") and not any(getattr(c, "__slots__", ()) for c in type(v).__mro__):
        raise Unhashable(v)
    return fields


@functools.cache
def _numpy_module() -> Any:
    import numpy  # a dependency; imported on first use so that `import hypernodes` stays fast

    return numpy


def _numpy() -> Any:
    return _numpy_module()


def hash_inputs(inputs: Mapping[str, Any]) -> str:
    """The digest of a ``{name: value}`` mapping (order-independent; see :func:`hash_value`)."""
    return hash_value(dict(inputs))


def compute_signature(code_hash: str, inputs_hash: str, deps_hash: str = "", env_hash: str = "") -> str:
    """Combine the digests of a node's code, inputs, upstream keys and environment into one signature."""
    h = hashlib.blake2b(digest_size=_DIGEST)
    for part in (code_hash, inputs_hash, deps_hash, env_hash):
        h.update(part.encode() + b"|")
    return h.hexdigest()


# -- code -------------------------------------------------------------------------


class _Code:
    """What is static about a function's code: its digest, helpers, and the globals it reads."""

    __slots__ = ("constants", "digest", "helpers")

    def __init__(self, digest: bytes, helpers: tuple[Any, ...], constants: tuple[str, ...]) -> None:
        self.digest = digest
        self.helpers = helpers
        self.constants = constants


_STATIC: weakref.WeakKeyDictionary[Any, _Code] = weakref.WeakKeyDictionary()
_STATIC_LOCK = threading.Lock()
_PLAIN = (int, float, str, bytes, bool, type(None))


def _unwrap(func: Any) -> Any:
    func = getattr(func, "func", func) if _is_node(func) else func
    return inspect.unwrap(func) if inspect.isfunction(func) else func


def _is_node(obj: Any) -> bool:
    from .node import Node

    return isinstance(obj, Node)


def _source_digest(func: Any) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST)
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        h.update(b"code:")
        _feed_code(h, func.__code__)
        return h.digest()
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a lambda cut out of a longer expression: drop comments token by token
        h.update(b"tokens:")
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                h.update(tok.string.encode() + b"\0")
        return h.digest()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = n.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):  # a docstring
                n.body = body[1:] or [ast.Pass()]
            if not isinstance(n, ast.Module):
                n.decorator_list = []
    h.update(b"ast:" + ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return h.digest()


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _feed_code(h, c)
        else:
            h.update(repr(c).encode() + b"\0")


def _static(func: Any) -> _Code:
    try:
        found = _STATIC.get(func)
    except TypeError:  # not weak-referenceable
        found = None
    if found is not None:
        return found
    if isinstance(func, functools.partial):
        code = _Code(_static(func.func).digest, (func.func,), ())
    elif inspect.isfunction(func) or inspect.ismethod(func):
        fn = func.__func__ if inspect.ismethod(func) else func
        package = (fn.__module__ or "").split(".")[0]
        helpers, constants = [], []
        try:
            globals_ = inspect.getclosurevars(fn).globals
        except (TypeError, ValueError):
            globals_ = {}
        for name, value in sorted(globals_.items()):
            target = value.func if _is_node(value) else value
            if inspect.isfunction(target) and (target.__module__ or "").split(".")[0] == package:
                helpers.append(target)
            elif isinstance(value, _PLAIN):
                constants.append(name)
        code = _Code(_source_digest(fn), tuple(helpers), tuple(constants))
    else:  # a callable object: its class's __call__ source, its fields among the values
        call = type(func).__call__
        digest = _static(call).digest if inspect.isfunction(call) else _type_name(type(func)).encode()
        code = _Code(bytes(digest), (), ())
    with _STATIC_LOCK, contextlib.suppress(TypeError):  # not weak-referenceable: computed per call
        _STATIC[func] = code
    return code


def _code_digests(func: Any) -> tuple[bytes, bytes]:
    """``(static, values)`` digests of a function's code; ``values`` covers closures and constants.

    Raises:
        Unhashable: a closed-over value cannot be hashed.
    """
    static = hashlib.blake2b(digest_size=_DIGEST)
    values = hashlib.blake2b(digest_size=_DIGEST)
    seen: set[int] = set()
    stack = [_unwrap(func)]
    while stack:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        code = _static(f)
        static.update(code.digest)
        if isinstance(f, functools.partial):
            _feed(values, (f.args, f.keywords), set())
        elif inspect.isfunction(f):
            cells = zip(f.__code__.co_freevars, f.__closure__ or ())
            for name, cell in cells:
                try:
                    contents = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                _feed(values, (name, contents), set())
            for name in code.constants:
                value = f.__globals__.get(name)
                if isinstance(value, _PLAIN):
                    _feed(values, (name, value), set())
        elif not inspect.ismethod(f):
            _feed(values, _public_fields(f), set())
        stack.extend(code.helpers)
    return static.digest(), values.digest()


def hash_code(func: Any) -> str:
    """The digest of a function's code as a cache key sees it (see the module docstring).

    Raises:
        Unhashable: a closed-over value cannot be hashed.
    """
    static, values = _code_digests(func)
    return hashlib.blake2b(static + values, digest_size=_DIGEST).hexdigest()


def _node_code(node: Any) -> tuple[bytes, bytes] | None:
    """A node's code digests; None when the node (or, for a nested pipeline, any inner node) opts out."""
    if not getattr(node, "cache", True):
        return None
    pipeline = getattr(node, "pipeline", None)
    if pipeline is None:
        return _code_digests(node.func)
    static = hashlib.blake2b(b"pipeline", digest_size=_DIGEST)
    values = hashlib.blake2b(digest_size=_DIGEST)
    _feed(static, getattr(node, "_spec", None), set())
    for inner in pipeline.nodes:
        parts = _node_code(inner)
        if parts is None:
            return None
        _feed(static, (inner.name, inner.parameters, inner.outputs), set())
        static.update(parts[0])
        values.update(parts[1])
    return static.digest(), values.digest()


# -- storage ------------------------------------------------------------------------

_MAGIC = b"HN1"


def _dumps(value: Any) -> bytes | None:
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception:
        try:
            import cloudpickle  # values of classes defined in a notebook or a function

            data = cloudpickle.dumps(value, protocol=5)
        except Exception:
            return None
    return _MAGIC + hashlib.blake2b(data, digest_size=8).digest() + data


def _loads(blob: bytes) -> Any:
    """The value stored in ``blob``. Raises ValueError (or an unpickling error) when it is corrupt."""
    data = memoryview(blob)[11:]
    if blob[:3] != _MAGIC or hashlib.blake2b(data, digest_size=8).digest() != blob[3:11]:
        raise ValueError("checksum mismatch")
    return pickle.loads(data)


class Cache(ABC):
    """Where results are stored: signatures (hex strings) to pickled bytes.

    Subclasses implement :meth:`get_blobs`, :meth:`put_blob`, :meth:`has` and
    :meth:`clear`; :meth:`get` and :meth:`put` store values on top of them. A cache
    is shared by threads, and pickled into worker processes with the call.
    """

    @abstractmethod
    def get_blobs(self, signatures: Sequence[str]) -> dict[str, bytes]:
        """The stored bytes of those ``signatures`` that are present (one query for all)."""

    @abstractmethod
    def put_blob(self, signature: str, blob: bytes) -> None:
        """Store ``blob`` under ``signature`` (replacing any entry)."""

    @abstractmethod
    def has(self, signature: str) -> bool:
        """Whether an entry is stored under ``signature``."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every entry."""

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


class MemoryCache(Cache):
    """Entries in this process's memory (a copy travels to worker processes, and their writes stay there)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def get_blobs(self, signatures: Sequence[str]) -> dict[str, bytes]:
        """See :meth:`Cache.get_blobs`."""
        data = self._data
        return {s: data[s] for s in signatures if s in data}

    def put_blob(self, signature: str, blob: bytes) -> None:
        """See :meth:`Cache.put_blob`."""
        self._data[signature] = blob

    def has(self, signature: str) -> bool:
        """See :meth:`Cache.has`."""
        return signature in self._data

    def clear(self) -> None:
        """See :meth:`Cache.clear`."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class DiskCache(Cache):
    """Entries in a ``diskcache`` (SQLite) directory, shared safely by threads and processes.

    Writes wait for the database lock (retrying on timeouts, never dropped
    silently); SQLite's write-ahead log makes each write atomic, so a crash leaves
    no half-written entry. Nothing is evicted unless ``size_limit`` (bytes) is
    given; then the least recently stored entries go first.

    Needs ``pip install 'hypernodes[cache]'`` (diskcache).
    """

    _RETRIES = 10

    def __init__(self, path: str | os.PathLike[str], size_limit: int | None = None) -> None:
        """Args:
            path: the cache directory (created if missing).
            size_limit: the most bytes to keep; None (the default): no eviction.

        Raises:
            ImportError: diskcache is not installed.
            ValueError: ``size_limit`` is not a positive integer.
        """
        if size_limit is not None and (not isinstance(size_limit, int) or size_limit <= 0):
            raise ValueError(f"DiskCache(size_limit=...) takes a positive number of bytes or None, got {size_limit!r}.")
        self.path = Path(path)
        self.size_limit = size_limit
        self._store: Any = None
        self._open()

    def _open(self) -> None:
        try:
            import diskcache  # type: ignore[import-untyped]  # optional: hypernodes[cache]; no type information
        except ImportError:
            raise ImportError("DiskCache needs diskcache: pip install 'hypernodes[cache]'") from None
        self._timeout_error = diskcache.Timeout
        self._store = diskcache.Cache(
            str(self.path),
            timeout=60,
            size_limit=self.size_limit if self.size_limit is not None else 2**62,
            eviction_policy="none" if self.size_limit is None else "least-recently-stored",
            statistics=False,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "size_limit": self.size_limit}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.size_limit, self._store = state["path"], state["size_limit"], None
        self._open()

    def __repr__(self) -> str:
        return f"DiskCache({str(self.path)!r}, size_limit={self.size_limit})"

    def get_blobs(self, signatures: Sequence[str]) -> dict[str, bytes]:
        """See :meth:`Cache.get_blobs`."""
        get = self._store.get
        found = {}
        for s in signatures:
            blob = get(s, retry=True)
            if blob is not None:
                found[s] = blob
        return found

    def put_blob(self, signature: str, blob: bytes) -> None:
        """See :meth:`Cache.put_blob`."""
        for attempt in range(self._RETRIES):
            try:
                self._store.set(signature, blob)
                return
            except self._timeout_error:
                time.sleep(0.01 * (attempt + 1))
        warnings.warn(
            f"hypernodes: {self!r} stayed locked for {self._RETRIES} minutes; a result was not stored.",
            CacheWarning,
            stacklevel=2,
        )

    def has(self, signature: str) -> bool:
        """See :meth:`Cache.has`."""
        return signature in self._store

    def clear(self) -> None:
        """See :meth:`Cache.clear`."""
        self._store.clear(retry=True)

    def close(self) -> None:
        """Close this process's database connections (reopened on next use)."""
        self._store.close()

    def __len__(self) -> int:
        return len(self._store)


# -- the seam object ------------------------------------------------------------------

INHERITED: contextvars.ContextVar[Cache | None] = contextvars.ContextVar("hypernodes_cache", default=None)
"""The cache of the pipeline call running on this thread: a nested pipeline without its own uses it."""

_DEFER = "defer"  # a key that depends on an uncached upstream node's value, computed when the node is reached


class _Item:
    __slots__ = ("blobs", "keys", "resolved")

    def __init__(self, keys: list[str | None], blobs: dict[str, bytes]) -> None:
        self.keys = keys
        self.blobs = blobs
        self.resolved = 0


class CacheLookup:
    """The cache as the event seam's ``Lookup`` for one call: keys per item, one query per slice.

    Built by the pipeline for each call with a cache. Nodes come in topological
    order per item; items may interleave across threads, so the state is per item,
    dropped when its last node is resolved.
    """

    def __init__(self, cache: Cache, plan: Any, values: Sequence[Any], map_slots: Iterable[int] | None) -> None:
        """Args:
        cache: where entries live.
        plan: the call's plan.
        values: its slot template (the inputs of ``run()``, or a map's broadcast inputs).
        map_slots: a map's mapped slots (hashed per item); None for ``run()``.
        """
        self.cache = cache
        wiring = plan.wiring
        self.names: tuple[str, ...] = tuple(plan.node_names)
        self.n_nodes = plan.n_nodes
        self.unpack = tuple(wiring.unpack)
        self.n_outs = tuple(len(o) for o in wiring.outs)
        producer = {s: (k, j) for k, outs in enumerate(wiring.outs) for j, s in enumerate(outs)}
        self.mapped = frozenset(map_slots or ())
        self._warned = False
        self.code: list[bytes | None] = []
        self.code_parts: list[tuple[bytes, bytes] | None] = []
        self.sources: list[tuple[tuple[bytes, int, int, int], ...]] = []
        self.const: dict[int, bytes | None] = {}
        for k, node in enumerate(plan.nodes):
            try:
                parts = _node_code(node)
            except Unhashable as exc:
                self._warn(k, exc.type_name, "a value it closes over")
                parts = None
            self.code_parts.append(parts)
            self.code.append(None if parts is None else hashlib.blake2b(parts[0] + parts[1], digest_size=16).digest())
            srcs = []
            for name, slot in zip(node.parameters, wiring.args[k]):
                up, j = producer.get(slot, (-1, 0))
                srcs.append((name.encode(), slot, up, j))
                if up < 0 and slot not in self.mapped and slot not in self.const:
                    self.const[slot] = self._value(k, values[slot])
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
                elif seed is not None:
                    d = self.const[slot]
                    seed = None if d is None else seed + name + b"=c" + d
            self._seeds.append(seed)
            self._var.append(tuple(var))
        self._h0 = self._hashers()
        self._items: dict[int, _Item] = {}
        self._local = threading.local()
        self._meta_done: set[int] = set()
        self.is_map = map_slots is not None
        if not self.is_map:
            self._fetch([(-1, self._keys(values))])

    def _hashers(self) -> list[Any]:
        return [None if seed is None else hashlib.blake2b(seed, digest_size=_DIGEST) for seed in self._seeds]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_items={}, _local=None, _meta_done=set(), _h0=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._h0 = self._hashers()

    def _warn(self, k: int, type_name: str, what: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"hypernodes: node `{self.names[k]}` is not cached in this call: {what} is a {type_name}, "
                "which cannot be hashed deterministically. Give its class a __cache_key__() method, or pass "
                "something hashable.",
                CacheWarning,
                stacklevel=3,
            )

    def _value(self, k: int, value: Any) -> bytes | None:
        try:
            return _digest(value)
        except Unhashable as exc:
            self._warn(k, exc.type_name, "an input")
        except Exception as exc:  # a __cache_key__ or model_dump that raises
            self._warn(k, type(exc).__name__, "an input's cache key (it raised)")
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
                if up >= 0:
                    upkey = keys[up]
                    if upkey is None or upkey is _DEFER:  # an uncached upstream: its value decides, later
                        key = _DEFER
                        break
                    h.update(prefix + upkey.encode())
                else:
                    d = hashed[slot] if slot in hashed else hashed.setdefault(slot, self._value(k, values[slot]))
                    if d is None:
                        break
                    h.update(prefix + d)
            else:
                key = h.hexdigest()
            keys.append(key)
        return keys

    def _deferred(self, k: int, st: _Item, args: tuple[Any, ...]) -> str | None:
        code = self.code[k]
        assert code is not None
        h = hashlib.blake2b(b"deferred:" + code, digest_size=_DIGEST)  # a key space of its own
        for (name, _slot, up, j), arg in zip(self.sources[k], args):
            upkey = st.keys[up] if up >= 0 else None
            if upkey is not None and upkey is not _DEFER and self.code[up] is not None:
                h.update(name + b"=u%d:" % j + upkey.encode())
                continue
            d = self._value(k, arg)
            if d is None:
                return None
            h.update(name + b"=v" + d)
        return h.hexdigest()

    def _fetch(self, states: list[tuple[int, list[str | None]]]) -> None:
        wanted = [key for _, keys in states for key in keys if key is not None and key is not _DEFER]
        blobs = self.cache.get_blobs(wanted) if wanted else {}
        for item, keys in states:
            self._items[item] = _Item(keys, blobs)

    def prefetch(self, template: Sequence[Any], items: Any) -> None:
        """Compute the keys of map items ``items`` (an ``_call.Items`` slice) and fetch them in one query."""
        values = list(template)
        states = []
        for i in range(items.lo, items.hi):
            items.fill(values, i)
            states.append((items.base + i, self._keys(values)))
        self._fetch(states)

    def _resolved(self, item: int, st: _Item) -> None:
        st.resolved += 1
        if st.resolved >= self.n_nodes:
            self._items.pop(item, None)

    # -- the _events.Lookup interface ---------------------------------------------------

    def get(self, node: int, item: int, args: tuple[Any, ...]) -> tuple[Any] | None:
        """``(result,)`` stored for node ``node`` of ``item``; None to call it."""
        st = self._items.get(item)
        if st is None:
            return None
        key = st.keys[node]
        if key is _DEFER:  # never part of the batch: asked for on its own
            key = st.keys[node] = self._deferred(node, st, args)
            if key is None:
                return None
            blob = self.cache.get_blobs([key]).get(key)
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
        self._local.signature = key
        self._resolved(item, st)
        return (value,)

    def put(self, node: int, item: int, args: tuple[Any, ...], result: Any) -> None:
        """Store node ``node``'s ``result`` for ``item``."""
        st = self._items.get(item)
        if st is None:
            return
        key = st.keys[node]
        if key is _DEFER:
            key = st.keys[node] = self._deferred(node, st, args)
        if key is not None and not (
            self.unpack[node] and not (isinstance(result, (tuple, list)) and len(result) == self.n_outs[node])
        ):
            blob = _dumps(result)
            if blob is not None:
                self.cache.put_blob(key, blob)
                st.blobs[key] = blob
                if node not in self._meta_done:
                    self._meta_done.add(node)
                    self._store_meta(node, st, key)
        self._resolved(item, st)

    # -- what the callbacks read --------------------------------------------------------

    def last_signature(self) -> str:
        """The key of the latest hit on this thread (read right after it: ``on_node_cached``)."""
        return getattr(self._local, "signature", "")

    def whole(self, item: int) -> str | None:
        """A signature for ``item`` when every one of its nodes will come from the cache, else None."""
        st = self._items.get(item)
        if st is None:
            return None
        keys = st.keys
        if any(k is None or k is _DEFER or k not in st.blobs for k in keys):
            return None
        return hashlib.blake2b("".join(keys).encode(), digest_size=_DIGEST).hexdigest()  # type: ignore[arg-type]

    # -- explain ------------------------------------------------------------------------

    def _meta_key(self, node: int) -> str:
        return "meta:" + self.names[node]

    def _parts(self, node: int, st: _Item) -> dict[str, Any]:
        parts = self.code_parts[node]
        assert parts is not None
        inputs: dict[str, tuple[str, str | None, str | None]] = {}
        for name, slot, up, _j in self.sources[node]:
            if up >= 0:
                inputs[name.decode()] = ("upstream", self.names[up], st.keys[up])
            else:
                d = self.const.get(slot)
                inputs[name.decode()] = ("value", None, None if d is None else d.hex())
        return {"code": parts[0].hex(), "closure": parts[1].hex(), "inputs": inputs}

    def _store_meta(self, node: int, st: _Item, key: str) -> None:
        if self.is_map:
            return  # explain() describes run() calls; a map's per-item inputs are not recorded
        meta = self._parts(node, st)
        meta["key"] = key
        blob = _dumps(meta)
        if blob is not None:
            self.cache.put_blob(self._meta_key(node), blob)

    def explain(self) -> dict[str, str]:
        """For a ``run()`` lookup: per node, ``"hit"`` or why it misses (see :func:`explain`)."""
        st = self._items.get(-1)
        out: dict[str, str] = {}
        for k, name in enumerate(self.names):
            key = None if st is None else st.keys[k]
            if self.code[k] is None:
                out[name] = "not cached: cache=False (or a value it closes over cannot be hashed)"
            elif key is None:
                out[name] = "not cached: an input cannot be hashed"
            elif key is _DEFER:
                out[name] = "decided when it runs: it reads an uncached node's output"
            elif st is not None and key in st.blobs:
                out[name] = "hit"
            else:
                out[name] = self._why(k, st)
        return out

    def _why(self, k: int, st: Any) -> str:
        meta = self.cache.get(self._meta_key(k))
        if not isinstance(meta, dict):
            return "miss: never stored"
        now = self._parts(k, st)
        changed = []
        if meta.get("code") != now["code"]:
            changed.append("its code")
        if meta.get("closure") != now["closure"]:
            changed.append("a value its code closes over")
        old_inputs = meta.get("inputs", {})
        for name, (kind, up, digest) in now["inputs"].items():
            if old_inputs.get(name) != (kind, up, digest):
                changed.append(f"upstream node `{up}`" if kind == "upstream" else f"input `{name}`")
        if not changed:
            return "miss: the entry was removed (cleared or evicted)"
        return "miss: changed since last stored: " + ", ".join(changed)


def explain(pipeline: Any, inputs: Mapping[str, Any] | None = None, output_name: Any = None) -> dict[str, str]:
    """Why each node of ``pipeline.run(inputs, output_name)`` would hit or miss its cache.

    Returns:
        ``{node name: "hit" | "miss: ..." | "not cached: ..."}``; a miss names what
        changed since that node was last stored by a ``run()``: its code, a value
        it closes over, an input, or an upstream node.

    Raises:
        ValueError: the pipeline has no cache.
    """
    cache = getattr(pipeline, "cache", None)
    if cache is None:
        raise ValueError("explain() needs a pipeline with a cache: Pipeline(..., cache=DiskCache(path)).")
    inputs = dict(inputs or {})
    outputs = None if output_name is None else ((output_name,) if isinstance(output_name, str) else tuple(output_name))
    plan = pipeline.plans.get(outputs, frozenset(inputs), "explain()")
    values = list(plan.template)
    for name, slot in plan.input_pairs:
        values[slot] = inputs[name]
    return CacheLookup(cache, plan, values, None).explain()
