"""Types checked: Pipeline(...) compares each annotated edge's producer return type with its consumer's parameter."""

# ruff: noqa: UP007, UP045  # typing.Optional/Union are what the tables test, beside X | Y

from __future__ import annotations

import collections.abc
import warnings
from typing import Any, Literal, NewType, Optional, Protocol, TypeVar, Union

import pytest

from hypernodes import ArgumentTypeError, Pipeline, TypeMismatchError, TypeMismatchWarning, node
from hypernodes._typecheck import fits

T = TypeVar("T")
UserId = NewType("UserId", int)


class Animal:
    pass


class Dog(Animal):
    pass


class Greets(Protocol):
    def greet(self) -> str: ...


FITS: list[tuple[Any, Any]] = [
    (int, int),
    (bool, int),
    (int, float),
    (float, complex),
    (Dog, Animal),
    (int, Any),
    (Any, int),
    (str, object),
    (None, Optional[int]),
    (int, Optional[int]),
    (int, Union[int, str]),
    (Union[int, bool], float),
    (int | None, Optional[float]),
    (list[int], collections.abc.Sequence[int]),
    (list[int], list),
    (list[bool], list[int]),
    (dict[str, Dog], collections.abc.Mapping[str, Animal]),
    (tuple[int, str], tuple[int, str]),
    (tuple[int, int], tuple[int, ...]),
    (Literal[1, 2], int),
    (UserId, int),
]
MISFITS: list[tuple[Any, Any]] = [
    (str, int),
    (float, int),
    (Animal, Dog),
    (None, int),
    (Optional[int], int),
    (Union[int, str], int),
    (list[str], list[int]),
    (list[int], dict[str, int]),
    (tuple[int, str], tuple[int, int]),
    (tuple[int, str], tuple[int, ...]),
    (Literal["a"], int),
    (UserId, str),
]
UNKNOWN: list[tuple[Any, Any]] = [
    (list, list[int]),
    (T, int),
    (int, T),
    (int, UserId),
    (Dog, Greets),
    (int, Literal[1]),
    (int, collections.abc.Callable[[int], int]),
]


def test_fitting_types_fit() -> None:
    """Subclasses, the numeric tower, Optional, unions, generics by origin and argument fit."""
    for produced, expected in FITS:
        assert fits(produced, expected) is True, (produced, expected)


def test_misfits_are_definite() -> None:
    """A type that cannot be a value of the parameter's type is a misfit."""
    for produced, expected in MISFITS:
        assert fits(produced, expected) is False, (produced, expected)


def test_what_cannot_be_decided_is_unknown() -> None:
    """Bare generics, type variables, NewType parameters, non-runtime protocols, Literal and
    Callable parameters are unknown: no complaint."""
    for produced, expected in UNKNOWN:
        assert fits(produced, expected) is None, (produced, expected)


@node(output_name="text")
def read(path: str) -> str:
    return path


@node(output_name="n")
def count(text: int) -> int:
    return text


def test_a_misfit_raises_naming_both_nodes_both_types_and_the_edge() -> None:
    """type_check="raise" refuses the pipeline; the message says who, what and where."""
    with pytest.raises(TypeMismatchError) as info:
        Pipeline([read, count], name="docs", type_check="raise")
    assert str(info.value).startswith(
        "Pipeline `docs`: node `read` returns `text` as str, but node `count` takes `text` as int "
        "(edge `read` -> `text` -> `count`)."
    )
    assert isinstance(info.value, TypeError)


def test_the_default_warns_and_off_reads_nothing() -> None:
    """By default a misfit is a TypeMismatchWarning and the pipeline still works; "off" is silent."""
    with pytest.warns(TypeMismatchWarning, match="node `read` returns `text` as str"):
        pipeline = Pipeline([read, count])
    assert pipeline.type_check == "warn"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pipeline([read, count], type_check="off")
    with pytest.raises(ArgumentTypeError, match=r"type_check=\.\.\.\) takes one of \('off', 'warn', 'raise'\)"):
        Pipeline([read], type_check="strict")


def test_tuple_outputs_are_checked_part_by_part() -> None:
    """A tuple output_name splits `tuple[A, B]` (or `tuple[A, ...]`) over its outputs."""

    @node(output_name=("a", "b"))
    def pair(x: int) -> tuple[int, str]:
        return x, str(x)

    @node(output_name="c")
    def use_a(a: float) -> float:
        return a

    @node(output_name="d")
    def use_b(b: int) -> int:
        return b

    Pipeline([pair, use_a], type_check="raise")
    with pytest.raises(TypeMismatchError, match="node `pair` returns `b` as str, but node `use_b` takes `b` as int"):
        Pipeline([pair, use_b], type_check="raise")


def test_nested_pipelines_map_to_lists_and_their_inner_readers_count() -> None:
    """A mapped nested pipeline's outputs are lists of the inner type; an edge into a nested
    pipeline is checked against the inner node that reads it (not when mapped)."""
    inner = Pipeline([read], name="inner")
    each = inner.as_node(map_over="path", name="each")

    @node(output_name="total")
    def total(text: list[str]) -> int:
        return len(text)

    @node(output_name="bad")
    def bad(text: list[int]) -> int:
        return len(text)

    Pipeline([each, total], type_check="raise")
    with pytest.raises(TypeMismatchError, match=r"`each` returns `text` as list\[str\], but node `bad`"):
        Pipeline([each, bad], type_check="raise")

    @node(output_name="path")
    def make_path(seed: int) -> int:
        return seed

    with pytest.raises(TypeMismatchError, match="node `make_path` returns `path` as int, but node `inner/read` takes"):
        Pipeline([make_path, inner.as_node(name="inner")], type_check="raise")
    Pipeline([make_path, each], type_check="raise")  # mapped: the node takes a column, not an int


def test_unresolvable_and_missing_annotations_pass() -> None:
    """A forward reference that names nothing, a missing annotation or Any on either end is no complaint."""

    @node(output_name="text")
    def vague(path: str) -> NotDefinedAnywhere:  # type: ignore[name-defined]  # noqa: F821
        return path

    @node(output_name="text")
    def bare(path):  # type: ignore[no-untyped-def]
        return path

    @node(output_name="text")
    def anything(path: str) -> Any:
        return path

    for producer in (vague, bare, anything):
        Pipeline([producer, count], type_check="raise")


def test_annotations_are_resolved_under_postponed_evaluation() -> None:
    """This module uses `from __future__ import annotations`: string annotations are resolved
    in the function's module, so the misfit above was found from strings."""
    assert isinstance(read.func.__annotations__["return"], str)
    with pytest.raises(TypeMismatchError):
        Pipeline([read, count], type_check="raise")


def test_a_pipeline_rebuilt_in_a_worker_does_not_warn_again() -> None:
    """Unpickling (what a worker process does) and copying skip the check made when the pipeline was built."""
    import copy
    import pickle

    with pytest.warns(TypeMismatchWarning):
        pipeline = Pipeline([read, count])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(pipeline))
        copy.copy(pipeline)
        copy.deepcopy(pipeline)
