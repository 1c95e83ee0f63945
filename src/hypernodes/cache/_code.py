"""Code keys: a function's code as a cache key sees it (see :func:`hash_code`)."""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import inspect
import io
import textwrap
import threading
import tokenize
import types
import weakref
from typing import Any

from ..node import Node
from . import _values
from ._values import _DIGEST, _feed, _instance_state, _type_name

__all__ = ["hash_code"]


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
            _feed(values, _instance_state(f), set())  # all of a callable object's state, private too
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


_values._hash_function = hash_code
