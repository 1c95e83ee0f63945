"""Hashing for cache keys: values by content and type, functions by their code.

:func:`hash_value` digests a value (``1``, ``1.0``, ``"1"`` and ``True`` differ;
never the salted ``hash()``); :func:`hash_code` a function's code as a key sees it:
its source with comments, docstrings and decorators ignored (its bytecode when there
is no source), the source of the same-package module-level helpers it calls
(recursively), and the current values of what it closes over. The static part is
computed once per function (kept in a weak dictionary), the values once per call.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import inspect
import io
import sys
import textwrap
import threading
import tokenize
import types
import uuid
import weakref
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from ..node import Node

__all__ = ["Unhashable", "compute_signature", "hash_code", "hash_inputs", "hash_value"]

_DIGEST = 16  # bytes of blake2b: 128 bits, a 32-character hex signature


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
    return isinstance(obj, Node)


_SOURCE_ATTR = "__hypernodes_source__"


def _source_digest(func: Any) -> bytes:
    # A function sent by value to a worker process (cloudpickle: closures, notebook code) has no
    # source there, and its bytecode digest would differ from its source digest here. So the
    # digest travels with it, in its __dict__, next to a digest of the bytecode it describes (a
    # wrapper that copied the __dict__ has other bytecode, and is read afresh).
    code = hashlib.blake2b(digest_size=_DIGEST)
    _feed_code(code, func.__code__)
    marker = code.digest()
    found = getattr(func, "__dict__", {}).get(_SOURCE_ATTR)
    if isinstance(found, tuple) and len(found) == 2 and found[1] == marker and isinstance(found[0], bytes):
        return found[0]
    digest = _read_source_digest(func)
    with contextlib.suppress(AttributeError, TypeError):
        func.__dict__[_SOURCE_ATTR] = (digest, marker)
    return digest


def _read_source_digest(func: Any) -> bytes:
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
