"""Runtime input validation: ``Pipeline(..., validate_inputs=True | "coerce")``.

The values a ``run()``/``map()`` call gives are checked against the annotations of the
parameters that read them (a nested pipeline's inner readers included), before any
node runs. Each annotation is compiled once, on the pipeline's first checked call,
into a :class:`_Check`; the check itself is then ``isinstance`` work.

A mapped column is checked per distinct item type where the verdict depends on the
type alone (classes, unions of them): ``set(map(type, items))`` runs in C, and a 1-D
numeric numpy column is not even turned into Python numbers (its items' type follows
from the dtype). Element checks (``list[int]``, ``dict[str, float]``, ``Literal``) go
item by item, and look at up to :data:`SAMPLE` elements of each container, spread
over it.

What cannot be checked at runtime passes: ``Any``, ``object``, a ``TypeVar``, a
forward reference that does not resolve, a ``Protocol`` that is not runtime
checkable, a ``TypedDict``, the arguments of ``Callable`` and of user generics.

pydantic is never imported here: an annotation is a model only when its class derives
from the ``BaseModel`` of a ``pydantic`` (or ``pydantic.v1``) already in ``sys.modules``,
which a model's class being defined implies.
"""

from __future__ import annotations

import collections.abc
import numbers
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

from ._columns import ArrayColumn, as_column, items_of
from ._typecheck import UNKNOWN, parameter_types
from .errors import ArgumentTypeError, InputTypeError

__all__ = ["SAMPLE", "VALIDATE_MODES", "InputValidator", "validate_mode"]

VALIDATE_MODES: tuple[Any, ...] = (False, True, "coerce")

SAMPLE = 100
"""At most this many elements of a container are checked against its element type."""

# PEP 484's numeric tower, widened to the numbers ABCs so that numpy's scalars
# (registered there, not subclasses of int/float) fit what they stand for.
_NUMERIC: dict[type, type] = {int: numbers.Integral, float: numbers.Real, complex: numbers.Complex}
_NONE = type(None)
# Containers whose elements are read for an element check: re-readable, never a
# one-shot iterator (a check must not consume what the node will read).
_SIZED = (list, tuple, set, frozenset, dict, collections.abc.KeysView, collections.abc.ValuesView)


def validate_mode(value: Any) -> Any:
    """``value`` if it is one of :data:`VALIDATE_MODES`.

    Raises:
        ArgumentTypeError: anything else (``1``, ``"yes"``, ``None``...).
    """
    if value is True or value is False or (type(value) is str and value == "coerce"):
        return value
    raise ArgumentTypeError(
        f"Pipeline(validate_inputs=...) takes False (no runtime checks, the default), True (check the "
        f"inputs of each call against the annotations) or 'coerce' (check, and build a pydantic model "
        f"given as a dict); got {type(value).__name__} {value!r:.60}."
    )


class _Check:
    """One annotation, compiled.

    ``accepts(value)`` says whether a value fits; ``of_type`` (None when the verdict
    needs the value itself) says it from the value's type alone; ``coerce`` (for a
    pydantic model, or an optional one) builds the model from a mapping.
    """

    __slots__ = ("accepts", "coerce", "of_type")

    def __init__(
        self,
        accepts: Callable[[Any], bool],
        of_type: Callable[[type], bool] | None,
        coerce: Callable[[Any], Any] | None = None,
    ) -> None:
        self.accepts = accepts
        self.of_type = of_type
        self.coerce = coerce


def _class_check(cls: type) -> _Check | None:
    try:
        isinstance(None, cls)  # a Protocol that is not runtime checkable, a TypedDict: TypeError
    except TypeError:
        return None
    wide = _NUMERIC.get(cls, cls)
    model = _model_of(cls)
    coerce = None
    if model is not None:
        coerce = getattr(model, "model_validate", None) or model.parse_obj  # v2, else v1
    return _Check(lambda v: isinstance(v, wide), lambda t: issubclass(t, wide), coerce)


def _model_of(cls: type) -> Any:
    """``cls`` when it is a pydantic model class (v2 or v1), without importing pydantic."""
    for module_name in ("pydantic", "pydantic.v1"):
        base = getattr(sys.modules.get(module_name), "BaseModel", None)
        if isinstance(base, type) and issubclass(cls, base):
            return cls
    return None


def _spread(value: Any) -> Iterable[Any]:
    """Up to :data:`SAMPLE` elements of a re-readable container: spread over a list or tuple, first
    and last included (a bad tail is the likeliest misfit after a bad head); a set's or a view's first."""
    n = len(value)
    if n <= SAMPLE:
        whole: Iterable[Any] = value
        return whole
    if isinstance(value, (list, tuple)):
        return [value[i * (n - 1) // (SAMPLE - 1)] for i in range(SAMPLE)]
    return islice(value, SAMPLE)


def _elements_check(origin: type, args: tuple[Any, ...]) -> _Check | None:
    """A container class with element types: the class always, the elements when it is re-readable."""
    outer = _class_check(origin)
    if outer is None:
        return None
    is_outer = outer.accepts
    if issubclass(origin, collections.abc.Mapping) and len(args) == 2:
        key, value = compile_annotation(args[0]), compile_annotation(args[1])
        if key is None and value is None:
            return outer
        k_ok = key.accepts if key is not None else None
        v_ok = value.accepts if value is not None else None

        def mapping_fits(v: Any) -> bool:
            if not is_outer(v):
                return False
            if not isinstance(v, dict):
                return True
            return all(
                (k_ok is None or k_ok(k)) and (v_ok is None or v_ok(x))
                for k, x in islice(v.items(), SAMPLE)  # dicts keep no index: the first SAMPLE
            )

        return _Check(mapping_fits, None)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if args == ((),):  # tuple[()]: the empty tuple
            return _Check(lambda v: is_outer(v) and len(v) == 0, None)
        parts = [compile_annotation(a) for a in args]

        def fixed_fits(v: Any) -> bool:
            return is_outer(v) and len(v) == len(parts) and all(p is None or p.accepts(x) for p, x in zip(parts, v))

        return _Check(fixed_fits, None)
    if len(args) == 1 or (origin is tuple and len(args) == 2):
        element = compile_annotation(args[0])
        if element is None:
            return outer
        ok = element.accepts

        def sequence_fits(v: Any) -> bool:
            if not is_outer(v):
                return False
            if not isinstance(v, _SIZED):
                return True  # an iterator or a lazy view: its elements are the node's to read
            return all(ok(x) for x in _spread(v))

        return _Check(sequence_fits, None)
    return outer  # Callable[..., R], a user generic's parameters: the class only


def compile_annotation(annotation: Any) -> _Check | None:
    """The check for ``annotation``; None when it accepts anything or cannot be checked at runtime."""
    if annotation is UNKNOWN or annotation is Any or annotation is object:
        return None
    if annotation is None or annotation is _NONE:
        return _Check(lambda v: v is None, lambda t: t is _NONE)
    if not isinstance(annotation, types.GenericAlias) and isinstance(annotation, type):
        return _class_check(annotation)
    supertype = getattr(annotation, "__supertype__", None)
    if supertype is not None:  # a NewType's values are its base's
        return compile_annotation(supertype)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return compile_annotation(args[0])  # the metadata is for other tools
    if origin in (typing.Union, types.UnionType):
        members = [compile_annotation(a) for a in args]
        if any(m is None for m in members):
            return None  # a member that takes anything
        checks = [m for m in members if m is not None]
        by_type = [m.of_type for m in checks]
        coercers = [m.coerce for m in checks if m.coerce is not None]
        accepts = [m.accepts for m in checks]
        of_type = None
        if all(t is not None for t in by_type):
            tests = typing.cast("list[Callable[[type], bool]]", by_type)
            of_type = lambda t: any(test(t) for test in tests)  # noqa: E731
        return _Check(lambda v: any(test(v) for test in accepts), of_type, coercers[0] if len(coercers) == 1 else None)
    if origin is typing.Literal:
        allowed = {(type(a), a) for a in args}  # Literal[1] takes 1, not True
        return _Check(lambda v: (type(v), v) in allowed, None) if _hashable(args) else None
    if isinstance(origin, type):
        if origin is type:
            return _Check(lambda v: isinstance(v, type), lambda t: issubclass(t, type))
        return _elements_check(origin, args)
    return None  # a TypeVar, a string left unresolved, ClassVar, ...


def _hashable(values: tuple[Any, ...]) -> bool:
    try:
        hash(values)
    except TypeError:
        return False
    return True


def _shown(annotation: Any) -> str:
    if not isinstance(annotation, types.GenericAlias) and isinstance(annotation, type):
        return annotation.__qualname__ if annotation.__module__ != "builtins" else annotation.__name__
    return repr(annotation).replace("typing.", "")


def _found(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


class InputValidator:
    """The checks of one pipeline's inputs: ``{input: [(check, annotation, reader)]}``.

    The annotations are resolved and compiled on the first checked call, not when
    the pipeline is built (a pipeline that is never called pays nothing).
    """

    def __init__(self, nodes: Iterable[Any], coerce: bool, where: str) -> None:
        """Args:
        nodes: the pipeline's nodes (nested pipelines list their inner readers).
        coerce: whether a dict given for a pydantic model parameter becomes the model.
        where: the pipeline, as errors name it.
        """
        self.coerce = coerce
        self.where = where
        self._nodes: Iterable[Any] | None = nodes
        self._readers: dict[str, list[tuple[_Check, Any, str]]] | None = None

    @property
    def readers(self) -> dict[str, list[tuple[_Check, Any, str]]]:
        """``{input: [(check, annotation, reader node)]}``, compiled on first use."""
        readers = self._readers
        if readers is None:
            readers = {}
            memo: dict[int, dict[str, Any]] = {}
            for member in self._nodes or ():
                for param, found in parameter_types(member, memo).items():
                    for annotation, reader in found:
                        check = compile_annotation(annotation)
                        if check is not None:
                            readers.setdefault(param, []).append((check, annotation, reader))
            self._readers, self._nodes = readers, None
        return readers

    def run_inputs(self, inputs: Any) -> Any:
        """``inputs`` checked (as given, or a new dict with coerced models).

        Raises:
            InputTypeError: a value does not fit a parameter that reads it.
        """
        if not isinstance(inputs, Mapping):
            return inputs  # None or a malformed call: prepare_run says what is wrong
        changed: dict[str, Any] = {}
        for name, value in inputs.items():
            checks = self.readers.get(name)
            if checks:
                fixed = self._value(name, value, checks, None)
                if fixed is not value:
                    changed[name] = fixed
        return {**inputs, **changed} if changed else inputs

    def map_inputs(self, inputs: Any, map_over: Any) -> Any:
        """``inputs`` of a map checked: shared values whole, each mapped column item by item.

        Raises:
            InputTypeError: a value or an item does not fit (the item's index is named).
        """
        if not isinstance(inputs, Mapping):
            return inputs
        mapped: tuple[Any, ...] = ()  # a malformed map_over checks no column: prepare_map says what is wrong
        if isinstance(map_over, str):
            mapped = (map_over,)
        elif isinstance(map_over, (list, tuple)):
            mapped = tuple(map_over)
        changed: dict[str, Any] = {}
        for name, value in inputs.items():
            checks = self.readers.get(name)
            if not checks:
                continue
            fixed = self._column(name, value, checks) if name in mapped else self._value(name, value, checks, None)
            if fixed is not value:
                changed[name] = fixed
        return {**inputs, **changed} if changed else inputs

    def _value(self, name: str, value: Any, checks: list[tuple[_Check, Any, str]], item: int | None) -> Any:
        misfits = [(check, annotation, reader) for check, annotation, reader in checks if not check.accepts(value)]
        if not misfits:
            return value
        if self.coerce and isinstance(value, Mapping):
            coercers = [c.coerce for c, _, _ in misfits if c.coerce is not None]
            if len(coercers) == len(misfits) and len({id(f) for f in coercers}) == 1:  # one model, asked by all misfits
                try:
                    built = coercers[0](value)
                except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
                    raise self._error(name, value, misfits, item, f" Validating it as the model failed: {exc}") from exc
                still = [(c, a, r) for c, a, r in checks if not c.accepts(built)]
                if not still:
                    return built
                misfits = still
        raise self._error(name, value, misfits, item, "")

    def _column(self, name: str, value: Any, checks: list[tuple[_Check, Any, str]]) -> Any:
        column = as_column(value)
        if column is None:
            return value  # not a column: prepare_map says what is wrong
        typed = [c for c in checks if c[0].of_type is not None]
        valued = [c for c in checks if c[0].of_type is None]
        bad: set[type] = set()
        if typed:
            if isinstance(column, ArrayColumn):  # its items' type follows from the buffer's: none made here
                kinds: set[type] = {float if column.code == "d" else int} if len(column) else set()
            else:
                kinds = set(map(type, items_of(column)))
            bad = {t for t in kinds if not all(c.of_type(t) for c, _, _ in typed)}  # type: ignore[misc]
        if not (bad or valued):
            return value
        items = items_of(column)
        # a new list only where an item may become a model: the caller's column is never written
        fixed = list(items) if self.coerce and any(c.coerce is not None for c, _, _ in checks) else None
        for i, item in enumerate(items):
            # an item of a misfit type is checked in full (for its index, and coercion)
            use = checks if type(item) in bad else valued
            if use:
                out = self._value(name, item, use, i)
                if fixed is not None and out is not item:
                    fixed[i] = out
        if fixed is not None and any(a is not b for a, b in zip(fixed, items)):
            return fixed
        return value

    def _error(
        self, name: str, value: Any, misfits: list[tuple[_Check, Any, str]], item: int | None, more: str
    ) -> InputTypeError:
        readers = [reader for _, _, reader in misfits]
        expected = [_shown(annotation) for _, annotation, _ in misfits]
        takes = "; ".join(f"node `{r}` takes `{name}` as {e}" for r, e in zip(readers, expected))
        what = f"item {item} of mapped input `{name}`" if item is not None else f"input `{name}`"
        hint = ""
        if isinstance(value, Mapping) and any(c.coerce is not None for c, _, _ in misfits) and not self.coerce:
            hint = " To build the model from a dict, pass validate_inputs='coerce' to Pipeline()."
        error = InputTypeError(
            f"{self.where}: {what} is {_found(value)}, but {takes}.{more}{hint} "
            "Pass a value of that type, or fix the annotation; Pipeline(validate_inputs=False) skips these checks."
        )
        error.input, error.nodes, error.item = name, tuple(readers), item
        error.expected, error.found = tuple(expected), type(value)
        return error
