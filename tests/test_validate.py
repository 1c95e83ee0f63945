"""Inputs validated: Pipeline(validate_inputs=...) checks each call's inputs against the annotations reading them."""

# ruff: noqa: UP007, UP045  # typing.Optional/Union are what the tables test, beside X | Y

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from typing import Annotated, Any, Literal, NewType, Optional, Protocol, TypeVar, Union

import numpy as np
import pytest

from hypernodes import ArgumentTypeError, HypernodesEngine, InputTypeError, Pipeline, node
from hypernodes._validate import SAMPLE, compile_annotation

T = TypeVar("T")
UserId = NewType("UserId", int)


class Animal:
    pass


class Dog(Animal):
    pass


class Greets(Protocol):
    def greet(self) -> str: ...


FITS: list[tuple[Any, Any]] = [
    (int, 3),
    (int, True),
    (int, np.int64(3)),
    (float, 3),
    (float, 2.5),
    (float, np.float32(2.5)),
    (complex, 1.5),
    (str, "a"),
    (Animal, Dog()),
    (None, None),
    (Optional[int], None),
    (int | None, 4),
    (Union[int, str], "a"),
    (list[int], [1, 2, 3]),
    (list[int], []),
    (list[int], list(range(10 * SAMPLE))),
    (list, ["a"]),
    (dict[str, float], {"a": 1.0, "b": 2}),
    (tuple[int, str], (1, "a")),
    (tuple[int, ...], (1, 2, 3)),
    (set[str], {"a"}),
    (Literal["a", "b"], "b"),
    (Annotated[int, "metadata"], 3),
    (UserId, 3),
    (type[int], bool),
]
MISFITS: list[tuple[Any, Any]] = [
    (int, "3"),
    (int, 2.5),
    (float, "2.5"),
    (str, b"a"),
    (Dog, Animal()),
    (None, 0),
    (Optional[int], "a"),
    (int | None, 2.5),
    (list[int], (1, 2)),
    (list[int], [1, "2"]),
    (dict[str, float], {"a": "x"}),
    (dict[str, float], {1: 1.0}),
    (tuple[int, str], (1, 2)),
    (tuple[int, str], (1, "a", 3)),
    (tuple[int, ...], (1, "a")),
    (Literal["a", "b"], "c"),
    (Literal[1], True),
    (Annotated[int, "metadata"], "3"),
]
SKIPPED: list[Any] = [Any, object, T, Greets, "Undefined", Union[int, Any], Optional[Any]]


def test_values_that_fit_pass() -> None:
    """Builtins, classes, the numeric tower (numpy scalars too), Optional, unions, containers with their
    elements, Literal, Annotated and NewType accept the values they describe."""
    for annotation, value in FITS:
        check = compile_annotation(annotation)
        assert check is not None, annotation
        assert check.accepts(value), (annotation, value)


def test_values_that_do_not_fit_are_refused() -> None:
    """A value of another type, a container holding a wrong element, a Literal's other value is refused."""
    for annotation, value in MISFITS:
        check = compile_annotation(annotation)
        assert check is not None, annotation
        assert not check.accepts(value), (annotation, value)


def test_what_cannot_be_checked_is_skipped() -> None:
    """Any, object, TypeVars, protocols that are not runtime checkable, unresolved names: no check at all."""
    for annotation in SKIPPED:
        assert compile_annotation(annotation) is None, annotation


def test_large_containers_are_sampled() -> None:
    """Elements of a large list are checked at SAMPLE points spread over it: the last element counts."""
    check = compile_annotation(list[int])
    assert check is not None
    assert not check.accepts([*range(10 * SAMPLE - 1), "x"])


calls: list[str] = []


@node(output_name="text")
def read(path: str) -> str:
    calls.append("read")
    return path


@node(output_name="n")
def count(text: str, times: int = 1) -> int:
    calls.append("count")
    return len(text) * times


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def test_off_by_default_and_the_fast_path_stays() -> None:
    """Without the switch nothing is checked (a wrong type reaches the node) and calls take the fast path."""
    pipeline = Pipeline([read, count])
    assert pipeline.validate_inputs is False
    assert pipeline.options.plain
    assert not pipeline.options.callbacks
    assert pipeline.run({"path": "abc", "times": "x"}) == {"text": "abc", "n": "xxx"}


def test_a_run_input_that_does_not_fit_raises_before_any_node_runs() -> None:
    """The error names the input, the node reading it, the expected and the found type; no node ran."""
    pipeline = Pipeline([read, count], name="docs", validate_inputs=True)
    with pytest.raises(InputTypeError) as info:
        pipeline.run({"path": "abc", "times": "2"})
    assert str(info.value).startswith(
        "Pipeline `docs`: input `times` is str '2', but node `count` takes `times` as int."
    )
    assert isinstance(info.value, TypeError)
    assert (info.value.input, info.value.nodes, info.value.found, info.value.item) == ("times", ("count",), str, None)
    assert calls == []
    assert pipeline.run({"path": "abc", "times": 2}) == {"text": "abc", "n": 6}


def test_engine_calls_and_copies_validate_too() -> None:
    """engine.run(pipeline, ...) comes through the same check; copies and pickles keep the switch."""
    pipeline = Pipeline([read, count], validate_inputs=True)
    with pytest.raises(InputTypeError, match="input `path` is int 3"):
        HypernodesEngine().run(pipeline, {"path": 3})
    for other in (copy.copy(pipeline), copy.deepcopy(pipeline), pickle.loads(pickle.dumps(pipeline))):
        assert other.validate_inputs is True
        with pytest.raises(InputTypeError):
            other.run({"path": 3})
    assert calls == []


def test_a_mapped_item_that_does_not_fit_is_named_by_its_index() -> None:
    """Each item of a mapped column is checked (per distinct type); the message gives the item's index."""
    pipeline = Pipeline([read, count], validate_inputs=True)
    with pytest.raises(InputTypeError) as info:
        pipeline.map({"path": ["a", "b", 3, "d"], "times": 2}, map_over="path")
    assert "item 2 of mapped input `path` is int 3, but node `read` takes `path` as str" in str(info.value)
    assert info.value.item == 2
    with pytest.raises(InputTypeError, match=r"input `times` is float 2\.5"):  # a shared input: whole
        pipeline.map({"path": ["a"], "times": 2.5}, map_over="path")
    assert calls == []
    assert pipeline.map({"path": ["a", "bb"], "times": 2}, map_over="path")["n"] == [2, 4]


def test_numpy_columns_are_checked_by_dtype() -> None:
    """A numeric numpy column's items are Python numbers of its dtype's kind: floats do not fit `int`."""

    @node(output_name="y")
    def double(x: int) -> int:
        calls.append("double")
        return x * 2

    pipeline = Pipeline([double], validate_inputs=True)
    assert pipeline.map({"x": np.arange(3)}, map_over="x")["y"] == [0, 2, 4]
    with pytest.raises(InputTypeError, match=r"item 0 of mapped input `x` is float 0\.0"):
        pipeline.map({"x": np.arange(3, dtype=float)}, map_over="x")
    assert calls == ["double"] * 3


def test_element_and_literal_checks_go_item_by_item() -> None:
    """A parameter whose check needs the value (Literal, list[int]) sees each item; the first misfit is named."""

    @node(output_name="y")
    def pick(mode: Literal["fast", "slow"], xs: list[int]) -> int:
        calls.append("pick")
        return len(xs)

    pipeline = Pipeline([pick], validate_inputs=True)
    with pytest.raises(InputTypeError, match=r"item 1 of mapped input `mode` is str 'medium'"):
        pipeline.map({"mode": ["fast", "medium"], "xs": [1]}, map_over="mode")
    with pytest.raises(InputTypeError, match=r"item 1 of mapped input `xs` is list \[1, 'a'\].*list\[int\]"):
        pipeline.map({"mode": "fast", "xs": [[1], [1, "a"]]}, map_over="xs")
    assert calls == []


def test_nested_readers_are_named_with_their_pipeline() -> None:
    """An input read inside a nested pipeline is checked against the inner node, named `outer/inner`."""
    inner = Pipeline([count], name="inner")
    outer = Pipeline([read, inner.as_node(name="stats")], validate_inputs=True)
    with pytest.raises(InputTypeError, match="node `stats/count` takes `times` as int"):
        outer.run({"path": "a", "times": "x"})
    assert calls == []


def test_unresolvable_forward_references_are_skipped() -> None:
    """An annotation naming something that does not exist is not checked (and is no error)."""

    @node(output_name="y")
    def f(x: NotDefinedAnywhere) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 1

    assert Pipeline([f], validate_inputs=True).run({"x": "anything"}) == {"y": 1}


@pytest.mark.parametrize("bad", [1, 0, None, "yes", "True", "off"])
def test_bad_switch_values_are_refused_at_construction(bad: Any) -> None:
    """Only False, True and "coerce" are taken; anything else is refused when the pipeline is built."""
    with pytest.raises(ArgumentTypeError, match=r"validate_inputs=\.\.\.\) takes False"):
        Pipeline([read], validate_inputs=bad)


def test_pydantic_is_not_imported_for_plain_annotations() -> None:
    """Validating plain annotations never imports pydantic."""
    code = (
        "import sys\nfrom hypernodes import Pipeline, node\n"
        "@node(output_name='y')\ndef f(x: int) -> int:\n    return x\n"
        "Pipeline([f], validate_inputs='coerce').map({'x': [1, 2]}, map_over='x')\n"
        "assert 'pydantic' not in sys.modules, 'pydantic imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


try:
    from pydantic import BaseModel
except ImportError:  # the model tests skip
    BaseModel = object  # type: ignore[assignment, misc]

needs_pydantic = pytest.mark.skipif(BaseModel is object, reason="pydantic is not installed")


class Point(BaseModel):  # a model at module level: its name resolves in the annotations below
    x: int
    y: int = 0


@node(output_name="total")
def total(point: Point) -> int:
    calls.append("total")
    assert isinstance(point, Point)
    return point.x + point.y


@needs_pydantic
def test_a_dict_for_a_model_is_a_misfit_unless_coercion_is_asked() -> None:
    """With True a model instance fits and a dict is refused (the message points at "coerce")."""
    pipeline = Pipeline([total], validate_inputs=True)
    assert pipeline.run({"point": Point(x=1, y=2)}) == {"total": 3}
    with pytest.raises(InputTypeError, match=r"input `point` is dict .*validate_inputs='coerce'"):
        pipeline.run({"point": {"x": 1}})
    assert calls == ["total"]


@needs_pydantic
def test_coerce_builds_the_model_and_leaves_the_callers_values_alone() -> None:
    """With "coerce" a dict is validated into the model (per item in a map); a dict that does not
    validate is an InputTypeError caused by pydantic's error; the caller's dict and list are unchanged."""
    pipeline = Pipeline([total], validate_inputs="coerce")
    given = {"x": "1", "y": 2}
    inputs = {"point": given}
    assert pipeline.run(inputs) == {"total": 3}
    assert inputs == {"point": {"x": "1", "y": 2}}
    assert inputs["point"] is given
    column = [{"x": 1}, Point(x=2), {"x": 3, "y": 1}]
    assert pipeline.map({"point": column}, map_over="point")["total"] == [1, 2, 4]
    assert column[0] == {"x": 1}
    calls.clear()
    with pytest.raises(InputTypeError, match=r"item 1 of mapped input `point` is dict .*model failed") as info:
        pipeline.map({"point": [{"x": 1}, {"x": "not a number"}]}, map_over="point")
    assert type(info.value.__cause__).__name__ == "ValidationError"
    assert calls == []
