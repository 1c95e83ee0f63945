"""Value keys: a stable digest of a value's type and whole state (never the salted ``hash()``).

**A key may miss; it must never collide.** Two values that Python or a user would call
different (type, content, any state, private or not) never share a key; two equal values
of one type and state may (a miss is only a recompute). A value that cannot be keyed
deterministically raises :class:`Unhashable`, and the lookup runs the node uncached with a
warning: never a guessed or partial key.

Whom we follow. dask's ``normalize_token`` is an exact-type dispatch (a ``type -> handler``
table walked along the MRO, handlers for numpy/pandas registered lazily by module name, an
object protocol ``__dask_tokenize__``, a pickle fallback). joblib's ``hash`` is a
``Pickler`` subclass that sorts dicts and sets and writes numpy buffers straight into the
digest. We follow dask's shape (dispatch by exact type, lazy library handlers, an object
protocol: ``__cache_key__``, and :func:`register_hasher`), with joblib's insight that the
pickle protocol is the one honest account of an object's state. Where both fall short of
our rule we are stricter, as their trackers show:

* dask gives up with a random token (or, with ``ensure-deterministic``, an error) and
  falls back to cloudpickle, whose bytes differ between processes (dask#9135, #10905;
  cloudpickle#385): we never use cloudpickle and never invent a key, we raise.
* joblib hashes whole pickles, so a frame's private ``_is_copy`` weakref changes its key
  (joblib#1611) and a frame is pickled element by element: we key pandas, numpy and Arrow
  by their declared state, content from buffers in one pass (see :func:`_feed_buffer`).
* both sort dict items; we key a dict *with* its insertion order, since a node can see it
  (``OrderedDict``s Python calls unequal must differ; a plain dict in another order only
  misses). Sets are order-independent: their items' digests are sorted, so a key does not
  depend on ``PYTHONHASHSEED``.

The fallback for any other object is its pickle reduction (``copyreg``'s table, then
``__reduce_ex__(4)``), walked rather than serialised: the reconstructor by name, the
arguments, the state, list and dict items each go back through this dispatch (so a set
inside an object's ``__dict__`` is keyed order-independently). Private attributes and
``__slots__`` are state. A C type that cannot be pickled (a lock, a file, a socket) makes
the value :class:`Unhashable`, and so do iterators, generators and cycles. Library
handlers (numpy, pandas, pyarrow, torch) live in :mod:`._arrays`, which registers them
here for modules already imported: hashing never imports a library. Functions met inside
a value are keyed by their code through the hook :mod:`._code` installs (``_hash_function``).

Every encoding is prefix-free (a tag, then a length or a terminator), so concatenated parts
stay unambiguous. The encodings of int, str, bytes, float, bool and None are fixed:
:mod:`.lookup` feeds ints the same way inline.
"""

from __future__ import annotations

import collections
import copyreg
import functools
import hashlib
import itertools
import os
import sys
import threading
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["Unhashable", "compute_signature", "hash_inputs", "hash_value", "register_hasher"]

_DIGEST = 16  # bytes of blake2b: 128 bits, a 32-character hex signature

Handler = Callable[[Any, Any, "set[int]"], None]
"""``handler(h, value, active)`` feeds ``value`` into the blake2b ``h``; ``active`` holds the ids
of the containers being fed (the cycle guard)."""


class Unhashable(TypeError):
    """Raised by :func:`hash_value` for a value it cannot hash deterministically."""

    def __init__(self, value: Any, reason: str = "") -> None:
        self.type_name = _type_name(type(value))
        tail = f" ({reason})" if reason else ""
        super().__init__(f"cannot hash a {self.type_name} deterministically{tail}")


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: classes written in Python (not C types such as locks or files)


KEYED_AS: dict[int, Any] = {}
"""``id(object) -> stand-in``: an object keyed as its stand-in (a built resource as its
:class:`~hypernodes.Resource`). The owner keeps the object alive while it is listed."""


def hash_value(value: Any) -> str:
    """A stable hex digest of ``value``'s type and whole state (never the salted ``hash()``).

    ``1``, ``1.0``, ``"1"`` and ``True`` differ, and so do ``bytes`` and ``bytearray``, a
    list and a tuple, ``0.0`` and ``-0.0``. Dicts are keyed with their insertion order,
    sets without theirs. numpy arrays, pandas and Arrow objects and tensors are keyed by
    dtype, shape, labels and content (from their buffers). Other objects are keyed by all
    of their state (private attributes and ``__slots__`` included) as pickle sees it, unless
    their class defines ``__cache_key__()`` or has a hasher (:func:`register_hasher`).
    Equal values of one type and state get one digest in every process.

    Raises:
        Unhashable: (a ``TypeError``) the value, or something inside it, has no
            deterministic content (a lock, a file, a generator, a cycle).
    """
    return _digest(value).hex()


def _digest(value: Any) -> bytes:
    t = type(value)
    if t is int:  # the commonest inputs, fed as _feed would, without its dispatch
        try:
            return hashlib.blake2b(b"i%d;" % value, digest_size=_DIGEST).digest()
        except ValueError:  # over int's str-conversion limit: _feed's long form
            pass
    elif t is str:
        b = value.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(b"s%d:" % len(b) + b, digest_size=_DIGEST).digest()
    h = hashlib.blake2b(digest_size=_DIGEST)
    try:
        _feed(h, value, set())
    except RecursionError:
        raise Unhashable(value, "nested too deeply") from None
    return h.digest()


def _feed(h: Any, v: Any, active: set[int]) -> None:
    t = type(v)
    if t is str:
        b = v.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b))
        h.update(b)
    elif t is int:
        try:
            h.update(b"i%d;" % v)
        except ValueError:  # more digits than int->str allows: its bytes, under a tag of their own
            n = (v.bit_length() + 8) // 8
            h.update(b"I%d:" % n + v.to_bytes(n, "little", signed=True))
    elif v is None:
        h.update(b"N")
    elif t is bool:
        h.update(b"T" if v else b"F")
    elif t is float:
        h.update(b"f" + v.hex().encode() + b";")  # hex() tells -0.0 from 0.0
    elif t is bytes:
        h.update(b"y%d:" % len(v))
        h.update(v)
    elif t is tuple or t is list:
        _feed_seq(h, b"t" if t is tuple else b"l", v, active)
    elif t is dict:
        _feed_items(h, b"d", v, dict.items(v), active)
    else:
        if KEYED_AS:  # an object a Resource built is keyed as that Resource (its recipe)
            v = KEYED_AS.get(id(v), v)
            t = type(v)
        handler = _RESOLVED.get(t)
        if handler is None:
            handler = _resolve(t)
        handler(h, v, active)


def _enter(v: Any, active: set[int]) -> None:
    if id(v) in active:
        raise Unhashable(v, "it contains itself")
    active.add(id(v))


def _feed_seq(h: Any, tag: bytes, v: Sequence[Any], active: set[int]) -> None:
    _enter(v, active)
    h.update(tag + b"%d[" % len(v))
    for x in v:
        _feed(h, x, active)
    h.update(b"]")
    active.discard(id(v))


def _feed_items(h: Any, tag: bytes, owner: Any, items: Any, active: set[int]) -> None:
    # In insertion order: a node can observe it. Two dicts that differ only in order miss.
    _enter(owner, active)
    h.update(tag + b"%d{" % len(items))
    for k, x in items:
        _feed(h, k, active)
        _feed(h, x, active)
    h.update(b"}")
    active.discard(id(owner))


def _sub(v: Any, active: set[int]) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST)
    _feed(h, v, active)
    return h.digest()


def _feed_set(h: Any, tag: bytes, v: Any, active: set[int]) -> None:
    # Iteration order follows the salted hash(): the items' digests, sorted, do not.
    _enter(v, active)
    digests = sorted([_sub(x, active) for x in v])
    h.update(tag + b"%d{" % len(digests))
    h.update(b"".join(digests))
    h.update(b"}")
    active.discard(id(v))


_CHUNK = 1 << 20  # 1 MiB: a buffer past two of them is hashed as a tree of chunks, on several threads
_WORKERS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _feed_buffer(h: Any, buf: Any) -> None:
    """Feed a (large) contiguous buffer: its length and the SHA-256 of its bytes.

    SHA-256 rather than blake2b for the bulk: CPUs since about 2017 compute it in hardware (x86
    SHA extensions, ARMv8 crypto) at twice hashlib's blake2b, and it stays collision-resistant,
    unlike the SHA-1 or MD5 that dask and joblib use. Past two chunks the buffer is hashed as a
    tree (each 1 MiB chunk's digest, then the digest of those), the chunks spread over threads
    (hashlib releases the GIL); the chunking depends only on the length, so the digest is the same
    whatever the number of threads. The threads are joined before this returns.
    """
    view = memoryview(buf).cast("B")
    n = len(view)
    h.update(b"%d:" % n)
    if n < 2 * _CHUNK:
        h.update(hashlib.sha256(view).digest())
        return
    chunks = [view[i : i + _CHUNK] for i in range(0, n, _CHUNK)]
    digests: list[bytes] = [b""] * len(chunks)
    workers = min(_WORKERS, len(chunks))

    def stripe(k: int) -> None:
        for i in range(k, len(chunks), workers):
            digests[i] = hashlib.sha256(chunks[i]).digest()

    threads = []
    try:
        for k in range(1, workers):
            t = threading.Thread(target=stripe, args=(k,), name="hypernodes-hash")
            try:
                t.start()
            except RuntimeError:  # no thread to be had (the interpreter is exiting): this stripe here
                stripe(k)
                continue
            threads.append(t)
        stripe(0)
    finally:
        for t in threads:
            t.join()
    h.update(hashlib.sha256(b"".join(digests)).digest())


def _name(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"%d:" % len(b) + b


_LOCK = threading.RLock()  # guards the registries below and the lazy installs
_TNAMES: dict[type, bytes] = {}
_LOCAL_SERIALS: weakref.WeakKeyDictionary[type, int] = weakref.WeakKeyDictionary()
_SERIAL = itertools.count(1)


def _tname(t: type) -> bytes:
    """A type's qualified name, length-prefixed (any string can be a class name).

    A class made inside a function is one of possibly many classes of that name (a factory's
    ``class C: k = k``): it gets a serial number of its own for the life of the process, so
    two such classes never share a key; across processes they miss.
    """
    b = _TNAMES.get(t)
    if b is None:
        name = _type_name(t)
        if "<locals>" in t.__qualname__:
            with _LOCK:
                serial = _LOCAL_SERIALS.get(t) or _LOCAL_SERIALS.setdefault(t, next(_SERIAL))
            name += f"#{serial}"
        if len(_TNAMES) > 4096:  # classes made in a loop must not grow this forever
            _TNAMES.clear()
        b = _TNAMES[t] = _name(name)
    return b


# ---- exact handlers for builtins and stdlib types ---------------------------------------------


def _feed_bytearray(h: Any, v: bytearray, active: set[int]) -> None:
    h.update(b"Y%d:" % len(v))
    h.update(v)


def _feed_complex(h: Any, v: complex, active: set[int]) -> None:
    h.update(b"j" + v.real.hex().encode() + b"," + v.imag.hex().encode() + b";")


def _feed_ordered(h: Any, v: collections.OrderedDict[Any, Any], active: set[int]) -> None:
    _feed_items(h, b"o", v, list(collections.OrderedDict.items(v)), active)


def _feed_defaultdict(h: Any, v: collections.defaultdict[Any, Any], active: set[int]) -> None:
    h.update(b"D")
    _feed(h, v.default_factory, active)
    _feed_items(h, b"d", v, list(dict.items(v)), active)


def _feed_memoryview(h: Any, v: memoryview, active: set[int]) -> None:
    h.update(b"m" + _name(v.format) + b"%r" % (v.shape,))
    _feed(h, v.tobytes(), active)


def _feed_class(h: Any, v: type, active: set[int]) -> None:
    h.update(b"c" + _tname(v))


def _feed_function(h: Any, v: Any, active: set[int]) -> None:
    h.update(b"F" + bytes.fromhex(_hash_function(v)))


def _refuse(h: Any, v: Any, active: set[int]) -> None:
    raise Unhashable(v, "an iterator or generator: its state is consumed by reading it")


_EXACT: dict[type, Handler] = {
    bytearray: _feed_bytearray,
    set: lambda h, v, a: _feed_set(h, b"e", v, a),
    frozenset: lambda h, v, a: _feed_set(h, b"z", v, a),
    complex: _feed_complex,
    collections.OrderedDict: _feed_ordered,
    collections.defaultdict: _feed_defaultdict,
    memoryview: _feed_memoryview,
    type: _feed_class,
    types.FunctionType: _feed_function,
    types.MethodType: _feed_function,
    functools.partial: _feed_function,
    types.GeneratorType: _refuse,
    types.CoroutineType: _refuse,
    types.AsyncGeneratorType: _refuse,
}

_BUILTIN_BASES: dict[type, Callable[[Any], Any]] = {
    # A Python subclass of a builtin: its content as the builtin holds it (never through methods
    # the subclass may override), then its own state. Converted to the exact builtin type.
    int: int.__int__,
    float: float.__float__,
    complex: lambda v: complex(complex.real.__get__(v), complex.imag.__get__(v)),
    str: str.__str__,
    bytes: lambda v: bytes(memoryview(v)),
    bytearray: lambda v: bytearray(memoryview(v)),
    tuple: lambda v: tuple.__getitem__(v, slice(None)),
    list: lambda v: list.__getitem__(v, slice(None)),
    collections.OrderedDict: lambda v: collections.OrderedDict(collections.OrderedDict.items(v)),
    collections.defaultdict: lambda v: _copy_defaultdict(v),
    dict: lambda v: dict(dict.items(v)),
    set: lambda v: set(set.__iter__(v)),
    frozenset: lambda v: frozenset(frozenset.__iter__(v)),
}


def _copy_defaultdict(v: Any) -> collections.defaultdict[Any, Any]:
    d: collections.defaultdict[Any, Any] = collections.defaultdict(v.default_factory)
    d.update(dict.items(v))
    return d


def _instance_state(v: Any) -> tuple[Any, dict[str, Any]]:
    """``(__dict__ or None, {slot: value})``: every attribute an instance holds, private ones included."""
    slots: dict[str, Any] = {}
    for cls in type(v).__mro__:
        names = cls.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{name}"  # a mangled slot
            try:
                slots[name] = getattr(v, name)
            except AttributeError:  # an unset slot: absent, as pickle has it
                continue
    return getattr(v, "__dict__", None), slots


def _builtin_subclass(base: type) -> Handler:
    convert = _BUILTIN_BASES[base]
    inner = _EXACT.get(base, _feed)

    def feed(h: Any, v: Any, active: set[int]) -> None:
        _enter(v, active)
        h.update(b"S" + _tname(type(v)))
        inner(h, convert(v), active)
        _feed(h, _instance_state(v), active)
        active.discard(id(v))

    return feed


# ---- registration, __cache_key__, and resolution ----------------------------------------------

_REGISTERED: dict[type, Callable[[Any], Any]] = {}
_LIBRARY: dict[type, tuple[Handler, bool]] = {}  # filled by ._arrays: type -> (handler, applies to subclasses)
_LAZY: dict[str, Callable[[], None]] = {}  # top-level module name -> installs its handlers into _LIBRARY
_RESOLVED: dict[type, Handler] = {}


def register_hasher(cls: type, fn: Callable[[Any], Any]) -> None:
    """Key instances of ``cls`` (and of its subclasses) by ``fn(value)``.

    ``fn`` returns what stands for the value's whole state: bytes, or anything this module
    can hash (a tuple of fields, a numpy array, ...). The key also holds the value's exact
    type, so a subclass never shares a key with its base. Resolution walks the value's type
    along its MRO, nearest class first; at each class a registered hasher comes before a
    ``__cache_key__`` method the class defines. So a subclass's own ``__cache_key__`` wins
    over a hasher registered for its base, and a hasher registered for a class wins over the
    ``__cache_key__`` it defines or inherits. Both come before the built-in handlers for
    numpy, pandas and the rest; the exact builtin types (``int``, ``str``, ``list``,
    ``dict``, ...) keep theirs.

    Args:
        cls: the class whose instances ``fn`` keys.
        fn: ``fn(value) -> state``; it must return equal states only for values a node
            cannot tell apart.

    Raises:
        TypeError: ``cls`` is not a class, is an exact builtin type, or ``fn`` is not callable.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_hasher() expects a class as its first argument, got {cls!r}")
    if cls in _FIXED:
        raise TypeError(
            f"register_hasher(): {cls.__qualname__} is a builtin type with a fixed key; "
            "register a subclass of it, or the class of your own values"
        )
    if not callable(fn):
        raise TypeError(f"register_hasher() expects a callable as its second argument, got {fn!r}")
    with _LOCK:
        _REGISTERED[cls] = fn
        _RESOLVED.clear()


_FIXED = frozenset({int, str, float, bool, bytes, tuple, list, dict, type(None), *_EXACT})


def _feed_registered(fn: Callable[[Any], Any]) -> Handler:
    def feed(h: Any, v: Any, active: set[int]) -> None:
        _enter(v, active)
        h.update(b"H" + _tname(type(v)))
        _feed(h, fn(v), active)
        active.discard(id(v))

    return feed


def _feed_cache_key(h: Any, v: Any, active: set[int]) -> None:
    _enter(v, active)
    h.update(b"k" + _tname(type(v)))
    _feed(h, v.__cache_key__(), active)
    active.discard(id(v))


def _resolve(t: type) -> Handler:
    # Under the lock: a thread must not resolve a numpy type while another installs numpy's
    # handlers (it would settle on the pickle fallback, and key arrays otherwise for good).
    with _LOCK:
        for name in [n for n in _LAZY if n in sys.modules]:  # a library imported since: its handlers
            _LAZY.pop(name)()
        handler = _choose(t)
        if len(_RESOLVED) > 4096:
            _RESOLVED.clear()
        _RESOLVED[t] = handler
    return handler


def _choose(t: type) -> Handler:
    found = _EXACT.get(t)
    if found is not None:
        return found
    for cls in t.__mro__:
        fn = _REGISTERED.get(cls)
        if fn is not None:
            return _feed_registered(fn)
        if "__cache_key__" in cls.__dict__:
            return _feed_cache_key
        lib = _LIBRARY.get(cls)
        if lib is not None and (cls is t or lib[1]):
            return lib[0]
    if issubclass(t, type):  # a class (its metaclass is t)
        return _feed_class
    if _is_enum(t):
        return _feed_enum
    heap = bool(t.__flags__ & _HEAPTYPE)
    if heap:
        base = next((b for b in t.__mro__ if b in _BUILTIN_BASES), None)
        if base is not None:
            return _builtin_subclass(base)
    if hasattr(t, "__next__") or t.__module__ == "itertools":
        return _refuse
    c_base = next(b for b in t.__mro__ if not b.__flags__ & _HEAPTYPE)
    return _feed_reduced_with_state if heap and c_base is not object else _feed_reduced


def _is_enum(t: type) -> bool:
    enum = sys.modules.get("enum")
    return enum is not None and issubclass(t, enum.Enum)


def _feed_enum(h: Any, v: Any, active: set[int]) -> None:
    h.update(b"E" + _tname(type(v)))
    _feed(h, (v.name, v._value_), active)


# ---- the fallback: an object's pickle reduction, walked ----------------------------------------


def _feed_reduced(h: Any, v: Any, active: set[int]) -> None:
    t = type(v)
    _enter(v, active)
    reducer = copyreg.dispatch_table.get(t)
    try:
        rv = reducer(v) if reducer is not None else v.__reduce_ex__(4)
    except Exception as exc:  # pickle's own refusal: a C type with hidden state, a lock, a file
        raise Unhashable(v, f"it cannot be pickled: {exc}") from exc
    if isinstance(rv, str):  # a singleton, saved by its global name
        h.update(b"G" + _name(getattr(v, "__module__", None) or t.__module__) + _name(rv))
    elif not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
        raise Unhashable(v, "its __reduce_ex__ returned neither a name nor a reduction tuple")
    else:
        func, args, *rest = rv
        rest += [None] * (4 - len(rest))
        state, listitems, dictitems, setter = rest
        h.update(b"R" + _tname(t))
        _feed_global(h, func, active)
        _feed(h, args, active)
        _feed(h, state, active)
        _feed(h, None if listitems is None else list(listitems), active)
        _feed(h, None if dictitems is None else list(dictitems), active)
        if setter is not None:
            _feed_global(h, setter, active)
    active.discard(id(v))


def _feed_reduced_with_state(h: Any, v: Any, active: set[int]) -> None:
    # A Python subclass of a C type: the C type's reduction holds the data kept in C (a tensor's
    # storage) but may drop what the subclass added; so its attributes are fed as well.
    _feed_reduced(h, v, active)
    _enter(v, active)
    _feed(h, _instance_state(v), active)
    active.discard(id(v))


def _global_name(f: Any) -> str | None:
    module, qualname = getattr(f, "__module__", None), getattr(f, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def _feed_global(h: Any, f: Any, active: set[int]) -> None:
    # A reconstructor, as pickle saves it: by name. One with no importable name (a lambda, a
    # local function) is keyed by its code, like any function.
    name = _global_name(f)
    if name is None:
        _feed(h, f, active)
        return
    h.update(b"g" + _name(name))
    owner = getattr(f, "__self__", None)  # a bound reconstructor (Sub.from_x is Base.from_x's function)
    if owner is not None and not isinstance(owner, types.ModuleType):
        _feed(h, owner, active)


# ---- public helpers ----------------------------------------------------------------------------


def hash_inputs(inputs: Mapping[str, Any]) -> str:
    """The digest of a ``{name: value}`` mapping (order-independent; see :func:`hash_value`)."""
    return hash_value(dict(sorted(inputs.items(), key=lambda kv: kv[0])))


def compute_signature(code_hash: str, inputs_hash: str, deps_hash: str = "", env_hash: str = "") -> str:
    """Combine the digests of a node's code, inputs, upstream keys and environment into one signature."""
    h = hashlib.blake2b(digest_size=_DIGEST)
    for part in (code_hash, inputs_hash, deps_hash, env_hash):
        h.update(part.encode() + b"|")
    return h.hexdigest()


def _no_code_hasher(func: Any) -> str:
    raise Unhashable(func)


_hash_function: Callable[[Any], str] = _no_code_hasher
"""Keys a function met inside a value by its code; :mod:`._code` installs :func:`._code.hash_code`."""
