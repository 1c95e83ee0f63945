"""Code keys: the code that runs, as a cache key sees it (see :func:`hash_code`).

A key may miss; it must never collide. So a function's key covers the code objects in
memory, never the source on disk (a module edited after import still runs its old code):

* the function's code object: bytecode, constants (nested code objects recursively, a
  docstring left out), names, argument layout, flags, exception table; never line numbers,
  so comments, docstrings and blank lines do not count;
* what that code reaches, walked at call time: every global it reads (and attribute chains
  through modules: ``util.f``, ``pkg.sub.CONST``), the functions, classes (all their methods
  and class attributes) and modules of the user's project among them, recursively, in any
  module that is not the standard library's or an installed distribution's; those are keyed
  by module name and distribution version instead of walked;
* its state: closure cells, defaults, function attributes and ``__wrapped__`` chains (a
  decorator's wrapper *and* what it wraps), a ``functools.partial``'s arguments, a bound
  method's instance, a callable object's whole state; values by content (:mod:`._values`).

The code-object part is computed once per function (a weak cache); the walk and the values
once per call, since globals may be rebound or mutated between calls. The walk yields named
*parts* (``helper `util.norm```, ``global `K` (read by `score`)``): :func:`explain` compares
them with the parts stored with an entry to say what changed. A value that cannot be keyed
raises :class:`Unhashable` whose ``where`` names the global or closure value.
"""

from __future__ import annotations

import builtins
import contextlib
import dis
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import types
import weakref
from typing import Any, NamedTuple

from ..node import Node
from . import _values
from ._values import _DIGEST, Unhashable, _digest, _feed
from ._where import _is_library, _name_of, _version

__all__ = ["hash_code"]

_NO_CYCLE: set[int] = set()
_CO_HAS_DOCSTRING = 0x4000000  # Python 3.14: co_consts[0] is the docstring when set
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_C_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.MemberDescriptorType,
    types.GetSetDescriptorType,
)
_CLASS_SKIP = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "_abc_impl"})


class CodeKey(NamedTuple):
    """A node's code digests: ``static`` (code objects, what they reach), ``values`` (globals'
    values, closures, defaults, instances, version), and the named ``parts`` both are made of."""

    static: bytes
    values: bytes
    parts: tuple[tuple[str, bytes], ...]


class _Static:
    """What is fixed about one function: its code digest and the globals its code names."""

    __slots__ = ("digest", "imports", "name", "refs")

    def __init__(self, name: str, digest: bytes, refs: tuple[tuple[str, ...], ...], imports: tuple[Any, ...]) -> None:
        self.name = name  # `module.qualname`, as parts name it
        self.digest = digest
        self.refs = refs  # global name, then the attributes read through it: ("util", "norm")
        self.imports = imports  # (module name, level, fromlist) of imports inside the function


_STATIC: weakref.WeakKeyDictionary[Any, _Static] = weakref.WeakKeyDictionary()
_STATIC_LOCK = threading.Lock()
_ACTIVE = threading.local()  # ids of the functions being walked on this thread (hash_code re-entered)


def _static(fn: types.FunctionType) -> _Static:
    found = _STATIC.get(fn)
    if found is not None:
        return found
    code = fn.__code__
    h = hashlib.blake2b(digest_size=_DIGEST)
    _feed_code(h, code)
    refs: dict[tuple[str, ...], None] = {}
    imports: dict[tuple[Any, ...], None] = {}
    _scan(code, refs, imports)
    st = _Static(_name_of(fn), h.digest(), tuple(refs), tuple(imports))
    with _STATIC_LOCK:
        _STATIC[fn] = st
    return st


def _has_docstring(code: types.CodeType) -> bool:
    if sys.version_info >= (3, 14):
        return bool(code.co_flags & _CO_HAS_DOCSTRING)
    # Before 3.14 a def's co_consts[0] is its docstring, or None when it has none (lambdas,
    # comprehensions and class bodies never hold one there).
    return bool(
        code.co_flags & inspect.CO_NEWLOCALS
        and not code.co_name.startswith("<")
        and code.co_consts
        and isinstance(code.co_consts[0], str)
    )


def _feed_code(h: Any, code: types.CodeType) -> None:
    # Everything that decides what the code does; nothing that says where it sits in a file
    # (co_firstlineno, the line and position tables) or what it is called (co_name).
    h.update(
        b"C%d,%d,%d,%d;"
        % (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags & ~_CO_HAS_DOCSTRING)
    )
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        _feed(h, names, _NO_CYCLE)
    for blob in (code.co_code, getattr(code, "co_exceptiontable", b"")):
        h.update(b"%d:" % len(blob))
        h.update(blob)
    consts = code.co_consts
    if _has_docstring(code):
        consts = (None, *consts[1:])
    h.update(b"%d[" % len(consts))
    for c in consts:
        _feed_const(h, c)
    h.update(b"]")


def _feed_const(h: Any, c: Any) -> None:
    t = type(c)
    if t is types.CodeType:
        h.update(b"<")
        _feed_code(h, c)
        h.update(b">")
    elif t is tuple:
        h.update(b"t%d[" % len(c))
        for x in c:
            _feed_const(h, x)
        h.update(b"]")
    elif t is frozenset:  # sorted by digest: a set's order depends on the hash seed
        subs = []
        for x in c:
            s = hashlib.blake2b(digest_size=_DIGEST)
            _feed_const(s, x)
            subs.append(s.digest())
        h.update(b"z%d{" % len(subs) + b"".join(sorted(subs)) + b"}")
    elif c is Ellipsis:
        h.update(b"...")
    elif t is slice:
        h.update(b"sl")
        for x in (c.start, c.stop, c.step):
            _feed_const(h, x)
    else:
        _feed(h, c, _NO_CYCLE)


def _scan(code: types.CodeType, refs: dict[tuple[str, ...], None], imports: dict[tuple[Any, ...], None]) -> None:
    """The globals ``code`` reads, each with the attributes read through it; and its imports."""
    ins = list(dis.get_instructions(code))
    for i, op in enumerate(ins):
        if op.opname in _GLOBAL_OPS and isinstance(op.argval, str):
            chain = [op.argval]
            for nxt in ins[i + 1 :]:
                if nxt.opname not in _ATTR_OPS or not isinstance(nxt.argval, str):
                    break
                chain.append(nxt.argval)
            refs[tuple(chain)] = None
        elif op.opname == "IMPORT_NAME" and i >= 2:
            level, fromlist = ins[i - 2].argval, ins[i - 1].argval
            imports[
                (
                    op.argval,
                    level if isinstance(level, int) else 0,
                    tuple(fromlist) if isinstance(fromlist, tuple) else (),
                )
            ] = None
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _scan(c, refs, imports)


def _mark(exc: Unhashable, label: str) -> Unhashable:
    where = getattr(exc, "where", None)
    exc.where = label if where is None else f"{where}, inside {label}"  # type: ignore[attr-defined]
    return exc


# -- the walk ----------------------------------------------------------------------------------


class _Walk:
    """One walk from a callable over what its code reaches, collecting named parts."""

    def __init__(self, collect: list[types.FunctionType] | None = None) -> None:
        self.static: list[tuple[str, bytes]] = []
        self.values: list[tuple[str, bytes]] = []
        self.seen: set[int] = set()
        self.labels: dict[int, str] = {}  # functions named otherwise than `helper ...`: the node's own
        self.collect = collect
        active = getattr(_ACTIVE, "ids", None)
        if active is None:
            active = _ACTIVE.ids = set()
        self.active: set[int] = active
        self.entered: list[int] = []

    def close(self) -> CodeKey:
        for i in self.entered:
            self.active.discard(i)
        static = hashlib.blake2b(b"code2", digest_size=_DIGEST)
        values = hashlib.blake2b(digest_size=_DIGEST)
        for h, parts in ((static, self.static), (values, self.values)):
            for label, digest in parts:
                b = label.encode()
                h.update(b"%d:" % len(b) + b + b"%d:" % len(digest) + digest)
        return CodeKey(static.digest(), values.digest(), (*self.static, *self.values))

    def value(self, label: str, obj: Any) -> None:
        try:
            self.values.append((label, _digest(obj)))
        except Unhashable as exc:
            raise _mark(exc, label) from None
        except RecursionError:
            raise _mark(Unhashable(obj), label) from None
        except Exception as exc:  # a __cache_key__ or a hasher that raised: never a partial key
            raise _mark(Unhashable(obj), f"{label} (its key raised {type(exc).__name__})") from exc

    def ref(self, obj: Any, module: str) -> None:
        """A library's function, class or module: by name and distribution version."""
        name = _name_of(obj) if not isinstance(obj, types.ModuleType) else module
        digest = hashlib.blake2b(f"{name}@{_version(module)}".encode(), digest_size=_DIGEST).digest()
        self.static.append((f"library `{name}`", digest))

    def root(self, func: Any) -> None:
        """The node's own callable: its code is "its code", a wrapper's "decorator `...`"."""
        if isinstance(func, types.FunctionType):
            try:
                inner = inspect.unwrap(func) if "__wrapped__" in func.__dict__ else func
            except ValueError:  # a __wrapped__ cycle
                inner = func
            self.labels[id(inner)] = "its code"
            f: Any = func
            while f is not inner and isinstance(f, types.FunctionType):
                self.labels[id(f)] = f"decorator `{_name_of(f)}`"
                f = getattr(f, "__wrapped__", inner)
            self.reach(func, "its code")
        elif isinstance(func, types.MethodType):
            self.labels[id(func.__func__)] = "its code"
            self.reach(func.__func__, "its code")
            self.instance(func.__self__, "instance `self`")
        elif isinstance(func, functools.partial):
            self.root(func.func)
            for i, arg in enumerate(func.args):
                self.reach(arg, f"partial argument {i}")
            for k, arg in sorted(func.keywords.items()):
                self.reach(arg, f"partial argument `{k}`")
        elif not isinstance(func, type) and not _is_library(type(func).__module__):
            call = vars(type(func)).get("__call__")
            if isinstance(call, types.FunctionType):
                self.labels[id(call)] = "its code"
            self.instance(func, "the callable object's state")
        else:
            self.reach(func, "the callable")

    def reach(self, obj: Any, label: str) -> None:
        """Key ``obj``, met under ``label`` (used when it is a value)."""
        t = type(obj)
        if t is types.FunctionType:
            self.function(obj)
        elif isinstance(obj, Node):
            self.reach(obj.func, label)
            version = getattr(obj, "version", None)
            if version is not None:
                self.value(f"version of node `{obj.name}`", version)
        elif t is types.MethodType:
            self.reach(obj.__func__, label)
            self.instance(obj.__self__, f"instance of `{_name_of(obj)}`")
        elif t is functools.partial:
            self.reach(obj.func, label)
            for i, arg in enumerate(obj.args):
                self.reach(arg, f"{label}: partial argument {i}")
            for k, arg in sorted(obj.keywords.items()):
                self.reach(arg, f"{label}: partial argument `{k}`")
        elif t is types.ModuleType:
            self.module(obj, ())
        elif isinstance(obj, type):
            self.cls(obj)
        elif t is staticmethod or t is classmethod:
            self.reach(obj.__func__, label)
        elif t is property:
            for f in (obj.fget, obj.fset, obj.fdel):
                if f is not None:
                    self.reach(f, label)
        elif t is functools.cached_property:
            self.reach(obj.func, label)
        elif isinstance(obj, _C_CALLABLES):
            owner = getattr(obj, "__self__", None)
            if owner is not None and not isinstance(owner, (types.ModuleType, type)):
                self.instance(owner, label)  # a bound C method (`table.get`): its table's state
            module = getattr(obj, "__module__", None) or getattr(getattr(obj, "__objclass__", None), "__module__", "")
            self.ref(obj, module or "builtins")
        elif t.__module__ in ("typing", "typing_extensions"):
            self.static.append((f"typing `{obj!r}`", repr(obj).encode()))
        else:
            self.instance(obj, label)
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:  # a decorator's wrapper object (functools.lru_cache): what it wraps
                self.reach(wrapped, label)

    def instance(self, obj: Any, label: str) -> None:
        """An object: its class's code when the class is the user's, and its whole state."""
        if isinstance(obj, type):
            self.cls(obj)
            return
        if not _is_library(type(obj).__module__):
            self.cls(type(obj))
        self.value(label, obj)  # its whole state, private attributes included

    def function(self, fn: types.FunctionType) -> None:
        if id(fn) in self.seen:
            return
        self.seen.add(id(fn))
        home = fn.__globals__.get("__name__")  # where the code was written (functools.wraps copies __module__)
        if isinstance(home, str) and _is_library(home):
            self.ref(fn, home)
            # A library's wrapper around the user's code (a decorator): what it wraps, and its state.
            for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
                with contextlib.suppress(ValueError):  # an empty cell
                    self.reach(cell.cell_contents, f"closure value `{var}` (of `{_name_of(fn)}`)")
            if "__wrapped__" in fn.__dict__:
                self.reach(fn.__dict__["__wrapped__"], f"wrapped function (of `{_name_of(fn)}`)")
            return
        if id(fn) in self.active:  # re-entered through a value holding it (a registry): its outer walk keys it
            self.static.append((f"cycle `{_name_of(fn)}`", _static(fn).digest))
            return
        self.active.add(id(fn))
        self.entered.append(id(fn))
        st = _static(fn)
        label = self.labels.get(id(fn))
        own = label == "its code"
        self.static.append((label or f"helper `{st.name}`", st.digest))
        if self.collect is not None:
            self.collect.append(fn)
        of = "" if own else f" (of `{st.name}`)"
        code = fn.__code__
        if fn.__closure__:
            for var, cell in zip(code.co_freevars, fn.__closure__):
                try:
                    contents = cell.cell_contents
                except ValueError:  # an empty cell: bound later (a function calling itself)
                    self.static.append((f"empty closure cell `{var}`{of}", b""))
                    continue
                self.reach(contents, f"closure value `{var}`{of}")
        defaults = fn.__defaults__
        if defaults:
            params = code.co_varnames[code.co_argcount - len(defaults) : code.co_argcount]
            for param, default in zip(params, defaults):
                self.reach(default, f"default `{param}`{of}")
        if fn.__kwdefaults__:
            for param, default in sorted(fn.__kwdefaults__.items()):
                self.reach(default, f"default `{param}`{of}")
        if fn.__dict__:
            for attr, held in sorted(fn.__dict__.items()):
                self.reach(held, f"wrapped function{of}" if attr == "__wrapped__" else f"attribute `{attr}`{of}")
        if st.refs:
            reader = "its code" if own else st.name
            for chain in st.refs:
                self.chain(fn, chain, reader)
        for module, level, fromlist in st.imports:
            self.imported(fn, module, level, fromlist)

    def chain(self, fn: types.FunctionType, chain: tuple[str, ...], reader: str) -> None:
        g = fn.__globals__
        name = chain[0]
        if name not in g:
            found = getattr(fn, "__builtins__", None) or vars(builtins)
            if name in (found if isinstance(found, dict) else vars(found)):
                return  # a builtin: fixed by the Python version, which the bytecode is too
            self.static.append((f"unbound global `{name}`", name.encode()))
            return
        obj = g[name]
        path = name
        for attr in chain[1:]:  # through the user's modules only: a library module is keyed by its version
            if type(obj) is not types.ModuleType or _is_library(obj.__name__) or attr not in obj.__dict__:
                break
            obj = obj.__dict__[attr]
            path += "." + attr
        if type(obj) is types.ModuleType:  # a library's, or the user's read as a whole (`getattr(util, n)`)
            self.module(obj, ())
            return
        who = "its code" if reader == "its code" else f"`{reader}`"
        self.reach(obj, f"global `{path}` (read by {who})")

    def imported(self, fn: types.FunctionType, module: str, level: int, fromlist: tuple[str, ...]) -> None:
        package = fn.__globals__.get("__package__") or ""
        try:
            name = importlib.util.resolve_name("." * level + module, package) if level else module
        except (ImportError, ValueError):
            self.static.append((f"unresolved import `{module}`", module.encode()))
            return
        if not fromlist:
            name = name.partition(".")[0] if not level else name
        mod = sys.modules.get(name)
        if mod is None and not _is_library(name):
            try:  # the function imports it when it runs: import it now, to key the code that will run
                mod = importlib.import_module(name)
            except Exception:  # it will fail when the function runs, too
                mod = None
        if mod is None:
            self.static.append((f"import `{name}`", f"{name}@{_version(name)}".encode()))
            return
        self.module(mod, fromlist)

    def module(self, mod: types.ModuleType, names: tuple[str, ...]) -> None:
        """A module: a library's by version; the user's by the attributes ``names`` (all when empty)."""
        name = mod.__name__
        if _is_library(name):
            self.ref(mod, name)
            return
        if names:
            for attr in names:
                if attr in mod.__dict__:
                    self.reach(mod.__dict__[attr], f"global `{name}.{attr}`")
                    continue
                try:  # a submodule not imported yet (`from . import util` in a function): what will run
                    sub = importlib.import_module(f"{name}.{attr}")
                except Exception:  # it will fail when the function runs, too
                    self.static.append((f"unresolved import `{name}.{attr}`", attr.encode()))
                    continue
                self.reach(sub, f"global `{name}.{attr}`")
            return
        if id(mod) in self.seen:
            return
        self.seen.add(id(mod))
        self.static.append((f"module `{name}`", name.encode()))
        for attr, held in sorted(vars(mod).items()):
            if not (attr.startswith("__") and attr.endswith("__")):
                self.reach(held, f"global `{name}.{attr}`")

    def cls(self, c: type) -> None:
        """A class: a library's by version; the user's by its bases, methods and class attributes."""
        if id(c) in self.seen:
            return
        self.seen.add(id(c))
        if _is_library(c.__module__):
            self.ref(c, c.__module__)
            return
        name = _name_of(c)
        self.static.append((f"class `{name}`", name.encode()))
        for base in c.__bases__:
            if base is not object:
                self.reach(base, f"base of `{name}`")
        if type(c) is not type:
            self.reach(type(c), f"metaclass of `{name}`")
        for attr, held in sorted(vars(c).items()):
            if attr in _CLASS_SKIP or isinstance(held, (types.MemberDescriptorType, types.GetSetDescriptorType)):
                continue  # a slot's or __dict__'s descriptor: what it holds is the instances' state
            callable_like = isinstance(
                held, (types.FunctionType, staticmethod, classmethod, property, functools.cached_property, type)
            )
            if not callable_like and attr.startswith("_") and attr.endswith("_"):
                continue  # dunder/sunder data (__slots__, __dataclass_fields__, an enum's tables): derived
            library = _is_library(type(held).__module__)
            if not callable_like and not callable(held) and library and hasattr(type(held), "__get__"):
                self.ref(type(held), type(held).__module__)  # a library's descriptor (a named tuple's field getter)
                continue
            self.reach(held, f"class attribute `{c.__qualname__}.{attr}`")


def _walk(func: Any, version: Any = None, collect: list[types.FunctionType] | None = None) -> CodeKey:
    """Raises:
    Unhashable: a value the code reaches cannot be keyed; its ``where`` says which.
    """
    w = _Walk(collect)
    try:
        w.root(func)
        if version is not None:
            w.value("version", version)
    except RecursionError:
        raise _mark(Unhashable(func), "code that reaches too deep") from None
    finally:
        key = w.close()
    return key


def _code_digests(func: Any) -> tuple[bytes, bytes]:
    """``(static, values)`` digests of a function's code (see the module docstring).

    Raises:
        Unhashable: a value the code reaches cannot be hashed.
    """
    key = _walk(func)
    return key.static, key.values


def hash_code(func: Any) -> str:
    """The digest of the code that runs when ``func`` is called, as a cache key sees it.

    Covers its code objects (not the source on disk), what they reach in the user's project
    (helpers, classes, module attributes, recursively; libraries by name and version), its
    closures, defaults, decorators' state, a partial's arguments and a bound instance.
    Comments, docstrings and line numbers do not count.

    Raises:
        Unhashable: a value the code reaches cannot be hashed.
    """
    static, values = _code_digests(func)
    return hashlib.blake2b(static + values, digest_size=_DIGEST).hexdigest()


def _node_code(node: Any) -> CodeKey | None:
    """A node's code digests and their parts; None when the node (or, for a nested pipeline, any
    inner node) opts out.

    Raises:
        Unhashable: a value the code reaches cannot be hashed (``where`` names it).
    """
    if not getattr(node, "cache", True):
        return None
    if not node.nested:
        return _walk(node.func, getattr(node, "version", None))
    static = hashlib.blake2b(b"pipeline", digest_size=_DIGEST)
    values = hashlib.blake2b(digest_size=_DIGEST)
    _feed(static, _nested_wiring(node), set())
    parts: list[tuple[str, bytes]] = []
    for inner in node.pipeline.nodes:
        key = _node_code(inner)
        if key is None:
            return None
        _feed(static, (inner.name, inner.parameters, inner.outputs), set())
        static.update(key.static)
        values.update(key.values)
        parts.extend((f"{label} in `{inner.name}`", digest) for label, digest in key.parts)
    return CodeKey(static.digest(), values.digest(), tuple(parts))


_NESTED_WIRING = 2
"""The version of :func:`_nested_wiring`'s layout; 1 was the node's positional ``_spec``. Bump it with
any change to what the tuple holds or to what a nested node returns: entries stored under an older
layout are then missed, never misread (version 2: a one-output node returns its value, not a 1-tuple)."""


def _nested_wiring(node: Any) -> tuple[Any, ...]:
    """What a nested pipeline's key covers of its node, besides the inner nodes: named, explicit, versioned."""
    return (
        _NESTED_WIRING,
        node.name,
        dict(node.input_mapping),
        dict(node.output_mapping),
        node.map_over,
        node.map_mode,
    )


def _functions(node: Any) -> list[types.FunctionType]:
    """The user's functions a node's code reaches (for :func:`explain`'s check of the files on disk)."""
    found: list[types.FunctionType] = []
    for n in node.pipeline.nodes if node.nested else (node,):
        try:
            _walk(n.func, None, found)
        except Unhashable:
            continue
    return found


_disk_cache: dict[tuple[str, int, int], list[Any]] = {}


def _differs_on_disk(fn: types.FunctionType) -> bool:
    """Whether ``fn``'s file on disk, compiled now, no longer holds ``fn``'s code (edited after import)."""
    code = fn.__code__
    path = code.co_filename
    try:
        stat = os.stat(path)
    except (OSError, ValueError):  # no file (a notebook cell, exec'd code): nothing to compare
        return False
    key = (path, stat.st_mtime_ns, stat.st_size)
    codes = _disk_cache.get(key)
    if codes is None:
        try:
            with open(path, "rb") as f:
                top = compile(f.read(), path, "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError):
            return True
        codes = []
        stack = [top]
        while stack:
            c = stack.pop()
            codes.append(c)
            stack.extend(x for x in c.co_consts if isinstance(x, types.CodeType))
        if len(_disk_cache) > 64:
            _disk_cache.clear()
        _disk_cache[key] = codes
    want = _static(fn).digest
    for c in codes:
        if c.co_name == code.co_name:
            h = hashlib.blake2b(digest_size=_DIGEST)
            _feed_code(h, c)
            if h.digest() == want:
                return False
    return True


_values._hash_function = hash_code
