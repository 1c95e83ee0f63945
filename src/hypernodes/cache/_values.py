"""Value keys: a stable digest of a value's content and type (never the salted ``hash()``).

See :func:`hash_value`. Functions met inside a value are keyed by their code through the
hook :mod:`._code` installs (``_hash_function``), so this module imports nothing above it.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import sys
import types
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

__all__ = ["Unhashable", "compute_signature", "hash_inputs", "hash_value"]

_DIGEST = 16  # bytes of blake2b: 128 bits, a 32-character hex signature


class Unhashable(TypeError):
    """Raised by :func:`hash_value` for a value it cannot hash deterministically."""

    def __init__(self, value: Any) -> None:
        self.type_name = _type_name(type(value))
        super().__init__(f"cannot hash a {self.type_name} deterministically")


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


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
    t = type(value)
    if t is int:  # the commonest inputs, fed as _feed would, without its dispatch
        return hashlib.blake2b(b"i%d;" % value, digest_size=_DIGEST).digest()
    if t is str:
        b = value.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(b"s%d:" % len(b) + b, digest_size=_DIGEST).digest()
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
        h.update(b"F" + bytes.fromhex(_hash_function(v)))
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


def _numpy() -> Any:
    # numpy as the process has it, never imported here: a value can be a numpy array
    # only once something imported numpy, and hypernodes does not depend on it.
    return sys.modules.get("numpy")


def hash_inputs(inputs: Mapping[str, Any]) -> str:
    """The digest of a ``{name: value}`` mapping (order-independent; see :func:`hash_value`)."""
    return hash_value(dict(inputs))


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
