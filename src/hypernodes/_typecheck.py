"""Type checks between connected nodes: does what a producer returns fit what its consumer takes?

``Pipeline(..., type_check=...)`` calls :func:`check_edges` once, at construction.
An edge is checked only when both ends are annotated; the producer's type is its
return annotation (one part per output for a tuple ``output_name``: ``tuple[A, B]``
or ``tuple[A, ...]``), a nested pipeline's outputs are its inner producers' types
(a list of them when it maps), and a nested pipeline's parameters are the
annotations of the inner nodes that read them (none when mapped: any column fits).

The verdict is three-valued and only a *definite* misfit is reported: what this
module cannot decide (``Any``, a ``TypeVar``, a ``Protocol`` that is not runtime
checkable, ``Callable``, ``Literal`` on the consumer's side, a forward reference
that does not resolve, a ``NewType`` parameter) passes. Python never enforces annotations, so a
check that guesses would break code that runs; it reads them as a reviewer would.

What fits (``produced`` -> ``expected``): ``expected`` is ``Any``/``object``; a
subclass (``bool`` -> ``int``), the numeric tower (``int`` -> ``float`` -> ``complex``,
as PEP 484 says); ``None`` -> ``Optional[T]``; a union produced fits when every
member fits, an expected union when one member does; generics by origin
(``list[int]`` -> ``Sequence[int]``, ``list`` -> ``list[int]`` is unknown) and then
argument by argument, covariantly.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import types
import typing
import warnings
from collections.abc import Iterable
from typing import Any

from .errors import ArgumentTypeError, TypeMismatchError

__all__ = ["TYPE_CHECK_MODES", "TypeMismatchWarning", "check_edges", "check_mode", "fits"]

TYPE_CHECK_MODES = ("off", "warn", "raise")


class TypeMismatchWarning(UserWarning):
    """``Pipeline(..., type_check="warn")`` found an edge whose annotations do not fit."""


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Any = _Unknown()
"""A type this module cannot read (no annotation, an unresolvable forward reference)."""

_NUMERIC_TOWER = {int: (float, complex), float: (complex,)}
_CALLABLE: Any = collections.abc.Callable


def check_mode(type_check: Any) -> str:
    """``type_check`` if it is one of :data:`TYPE_CHECK_MODES`.

    Raises:
        ArgumentTypeError: anything else.
    """
    if type_check not in TYPE_CHECK_MODES or not isinstance(type_check, str):
        raise ArgumentTypeError(f"Pipeline(type_check=...) takes one of {TYPE_CHECK_MODES!r}, got {type_check!r}.")
    return type_check


def _hints(func: Any) -> dict[str, Any]:
    """Resolved annotations of ``func``; one that cannot be resolved is :data:`UNKNOWN`."""
    if inspect.isfunction(func) and not func.__annotations__:
        return {}  # the unannotated function: nothing to resolve
    target = inspect.unwrap(func) if callable(func) else func
    if callable(target) and not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = type(target).__call__  # a callable object: its __call__'s annotations
    try:
        return typing.get_type_hints(target)
    except Exception:  # one bad forward reference: resolve the others one by one
        pass
    try:
        raw = inspect.get_annotations(target)
    except Exception:
        return {}
    namespace = getattr(target, "__globals__", None) or vars(sys.modules.get(getattr(target, "__module__", ""), sys))
    resolved: dict[str, Any] = {}
    for name, annotation in raw.items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # what get_type_hints does, one name at a time
            except Exception:
                annotation = UNKNOWN
        resolved[name] = annotation
    return resolved


def _parts(annotation: Any, n: int) -> tuple[Any, ...]:
    """The per-output types of a return annotation split over ``n`` outputs."""
    if annotation is UNKNOWN:
        return (UNKNOWN,) * n
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return (args[0],) * n
        if len(args) == n:
            return args
    return (UNKNOWN,) * n


def _hints_of(func: Any, memo: dict[int, dict[str, Any]] | None) -> dict[str, Any]:
    if memo is None:
        return _hints(func)
    found = memo.get(id(func))
    if found is None:
        found = memo[id(func)] = _hints(func)
    return found


def output_types(node: Any, memo: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``{output: type}`` of ``node`` (a nested pipeline's: its inner producers', listed when it maps)."""
    if node.nested:
        inner = node.pipeline._graph
        found: dict[str, Any] = {}
        for inner_name, outer in node.output_mapping.items():
            produced = output_types(inner.nodes[inner.producer[inner_name]], memo).get(inner_name, UNKNOWN)
            found[outer] = list[produced] if node.map_over and produced is not UNKNOWN else produced  # type: ignore[valid-type]
        return found
    returned = _hints_of(node.func, memo).get("return", UNKNOWN)
    if len(node.outputs) == 1:
        return {node.outputs[0]: returned}
    return dict(zip(node.outputs, _parts(returned, len(node.outputs))))


def parameter_types(node: Any, memo: dict[int, dict[str, Any]] | None = None) -> dict[str, list[tuple[Any, str]]]:
    """``{parameter: [(type, who reads it)]}``: a nested pipeline's inner readers, one entry each."""
    if node.nested:
        inner = node.pipeline._graph
        mapped = node.map_over or ()
        found: dict[str, list[tuple[Any, str]]] = {}
        for outer in node.parameters:
            if outer in mapped:
                continue  # any column fits a mapped input
            inner_name = node.input_mapping.get(outer, outer)
            for member in inner.nodes:
                if inner_name in member.parameters:
                    for annotation, who in parameter_types(member, memo).get(inner_name, ()):
                        found.setdefault(outer, []).append((annotation, f"{node.name}/{who}"))
        return found
    hints = _hints_of(node.func, memo)
    return {p: [(hints[p], node.name)] for p in node.parameters if p in hints and hints[p] is not UNKNOWN}


def fits(produced: Any, expected: Any) -> bool | None:
    """Whether a value of type ``produced`` fits a parameter of type ``expected``: True, False, or None (unknown)."""
    if produced is expected:
        return produced is not UNKNOWN or None
    if type(produced) is type and type(expected) is type and expected is not object:  # plain classes: most edges
        return _fits_class(produced, expected)
    if produced is UNKNOWN or expected is UNKNOWN:
        return None
    if expected is Any or expected is object or produced is Any:
        return True
    if produced is None:
        produced = type(None)
    if expected is None:
        expected = type(None)
    if isinstance(produced, typing.TypeVar) or isinstance(expected, typing.TypeVar):
        return None
    supertype = getattr(produced, "__supertype__", None)  # a NewType produced is its base
    if supertype is not None:
        return fits(supertype, expected)
    if getattr(expected, "__supertype__", None) is not None:
        return None
    if _is_union(produced):
        return _all(fits(member, expected) for member in typing.get_args(produced))
    if _is_union(expected):
        return _any(fits(produced, member) for member in typing.get_args(expected))
    if typing.get_origin(produced) is typing.Literal:
        return _all(fits(type(value), expected) for value in typing.get_args(produced))
    if typing.get_origin(expected) is typing.Literal:
        return None
    return _fits_class(produced, expected)


def _fits_class(produced: Any, expected: Any) -> bool | None:
    p_origin: Any = typing.get_origin(produced) or produced
    e_origin: Any = typing.get_origin(expected) or expected
    if not (isinstance(p_origin, type) and isinstance(e_origin, type)):
        return None  # Annotated leftovers, strings...
    if _CALLABLE in (e_origin, p_origin):  # a signature to compare: not this module's job
        return None
    try:
        numeric = any(e_origin in _NUMERIC_TOWER.get(base, ()) for base in p_origin.__mro__)
        if not numeric and not issubclass(p_origin, e_origin):
            return False
    except TypeError:  # a Protocol that is not runtime checkable, a TypedDict...
        return None
    e_args, p_args = typing.get_args(expected), typing.get_args(produced)
    if not e_args:
        return True
    if p_origin is tuple and e_origin is not tuple and len(e_args) == 1:  # tuple[int, ...] -> Sequence[int]
        p_args = p_args[:1] if len(p_args) == 2 and p_args[1] is Ellipsis else p_args
        return _all(fits(p, e_args[0]) for p in p_args) if p_args else None
    if not p_args or (p_origin is not e_origin and not _lines_up(p_origin, e_origin)):
        return None  # a bare `list` for `list[int]`; a user subclass's parameters need not line up
    if e_origin is tuple:
        if len(e_args) == 2 and e_args[1] is Ellipsis:
            p_items = p_args[:1] if len(p_args) == 2 and p_args[1] is Ellipsis else p_args
            return _all(fits(p, e_args[0]) for p in p_items)
        if Ellipsis in p_args:
            return None
        if len(p_args) != len(e_args):
            return False
    elif len(p_args) != len(e_args):
        return None
    # Arguments are compared covariantly: `list[bool]` for `list[int]` passes (mypy would say
    # invariant; a value passed once is not mutated through both views), `list[str]` does not.
    return _all(fits(p, e) for p, e in zip(p_args, e_args))


def _lines_up(produced: type, expected: type) -> bool:
    """Whether a builtin container's parameters are its ABC's (``list[T]`` is a ``Sequence[T]``,
    ``dict[K, V]`` a ``Mapping[K, V]``)."""
    return produced.__module__ == "builtins" and expected.__module__ == "collections.abc"


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _all(verdicts: Iterable[bool | None]) -> bool | None:
    result: bool | None = True
    for v in verdicts:
        if v is False:
            return False
        if v is None:
            result = None
    return result


def _any(verdicts: Iterable[bool | None]) -> bool | None:
    result: bool | None = False
    for v in verdicts:
        if v is True:
            return True
        if v is None:
            result = None
    return result


def _shown(annotation: Any) -> str:
    return inspect.formatannotation(annotation)


def check_edges(nodes: Iterable[Any], producer: dict[str, int], mode: str, where: str) -> list[str]:
    """Check every edge of a pipeline whose ends are both annotated; report the misfits per ``mode``.

    Args:
        nodes: the pipeline's nodes, indexed as ``producer``'s values.
        producer: output name -> index of the node producing it.
        mode: "off" (nothing is read), "warn" (a :class:`TypeMismatchWarning` per misfit)
            or "raise".
        where: the pipeline, as errors name it.

    Returns:
        The misfits' messages (empty when all fit or ``mode`` is "off").

    Raises:
        TypeMismatchError: with ``mode="raise"``, the first misfit.
    """
    if mode == "off":
        return []
    members = list(nodes)
    outputs: dict[int, dict[str, Any]] = {}
    memo: dict[int, dict[str, Any]] = {}  # each function's annotations, resolved once
    found: list[str] = []
    for consumer in members:
        for param, readers in parameter_types(consumer, memo).items():
            k = producer.get(param)
            if k is None:
                continue
            if k not in outputs:
                outputs[k] = output_types(members[k], memo)
            produced = outputs[k].get(param, UNKNOWN)
            for expected, reader in readers:
                if fits(produced, expected) is False:
                    found.append(
                        f"{where}: node `{members[k].name}` returns `{param}` as {_shown(produced)}, but node "
                        f"`{reader}` takes `{param}` as {_shown(expected)} (edge `{members[k].name}` -> `{param}` "
                        f"-> `{reader}`). Fix an annotation, or pass type_check='warn' or 'off' to Pipeline()."
                    )
    for message in found:
        if mode == "raise":
            raise TypeMismatchError(message)
        warnings.warn(message, TypeMismatchWarning, stacklevel=3)  # the Pipeline(...) line
    return found
