"""@node and Node: what a wrapped function exposes and how it is called."""

from __future__ import annotations

import asyncio
import functools
import pickle
from typing import Any

import pytest

from hypernodes import Node, NodeDefinitionError, Pipeline, node


def test_decorator_forms_give_the_same_node() -> None:
    """@node(output_name=...), @node("..."), node(f, output_name=...) and bare @node all work."""

    def f(x: int, k: int = 2) -> int:
        return x * k

    for made in (node(output_name="y")(f), node("y")(f), node(f, output_name="y")):
        assert isinstance(made, Node)
        assert made.output_name == "y"
        assert made.outputs == ("y",)
        assert made.parameters == ("x", "k")
        assert made.defaults == {"k": 2}
        assert made.func is f
        assert made.name == "f"
    bare = node(f)
    assert bare.output_name == "f"


def test_node_is_callable_like_its_function() -> None:
    """Calling a node calls the function, positionally or by keyword, and returns its value."""

    @node(output_name="y")
    def f(x: int, k: int = 2) -> int:
        return x * k

    assert f(3) == 6
    assert f(x=3, k=5) == 15
    assert f(3, k=4) == 12


def test_tuple_output_name_lists_every_output() -> None:
    """A tuple output_name declares several outputs, in order; a list is accepted as a tuple."""

    @node(output_name=("lo", "hi"))
    def bounds(xs: list[int]) -> tuple[int, int]:
        return min(xs), max(xs)

    assert bounds.outputs == ("lo", "hi")
    assert node(bounds.func, output_name=["lo", "hi"]).output_name == ("lo", "hi")


def test_async_functions_are_detected() -> None:
    """`async def` functions (also behind functools.partial, or as async __call__) are marked async."""

    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x

    class Client:
        async def __call__(self, x: int) -> int:
            return x

    assert node(fetch, output_name="y").is_async
    assert node(functools.partial(fetch), output_name="y").is_async
    assert node(Client(), output_name="y").is_async
    assert not node(lambda x: x, output_name="y").is_async


def test_keyword_only_parameters_are_wired() -> None:
    """Keyword-only and positional-only parameters are inputs like any other."""

    def f(a: int, /, b: int, *, c: int = 3) -> int:
        return a * 100 + b * 10 + c

    made = node(f, output_name="y")
    assert made.parameters == ("a", "b", "c")
    assert Pipeline([made]).run({"a": 1, "b": 2}) == {"y": 123}
    assert Pipeline([made]).run({"a": 1, "b": 2, "c": 9}) == {"y": 129}


def test_var_args_are_not_wired() -> None:
    """*args and **kwargs are not inputs: only named parameters are."""

    def f(x: int, *rest: Any, **extra: Any) -> int:
        return x

    assert node(f, output_name="y").parameters == ("x",)


def test_nodes_pickle() -> None:
    """A node of a module-level function pickles with the standard pickle (process workers need it)."""
    again = pickle.loads(pickle.dumps(module_level))
    assert again.parameters == module_level.parameters
    assert again(2) == 3


@node(output_name="y")
def module_level(x: int, *, step: int = 1) -> int:
    return x + step


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Node(42, "y"), "wraps a callable"),  # type: ignore[arg-type]
        (lambda: node(lambda x: x), "output_name"),
        (lambda: node(output_name="")(lambda x: x), "non-empty"),
        (lambda: node(output_name=("a", "a"))(lambda x: x), "repeats `a`"),
        (lambda: node(output_name=())(lambda x: x), "one or more"),
        (lambda: node(output_name=3)(lambda x: x), "string or a tuple"),  # type: ignore[call-overload]
        (lambda: node(output_name="x")(lambda x: x), "self-loop"),
        (lambda: node(object(), output_name="y"), "wraps a callable"),
    ],
)
def test_malformed_nodes_are_rejected(make: Any, message: str) -> None:
    """Malformed nodes fail at definition with a NodeDefinitionError (a TypeError) naming the problem."""
    with pytest.raises(NodeDefinitionError, match=message) as info:
        make()
    assert isinstance(info.value, TypeError)


def test_unpickling_a_vanished_node_raises() -> None:
    """A node pickled by name whose name is gone where it is unpickled raises UnpicklingError."""
    import sys
    import types

    module = types.ModuleType("hn_vanishing")
    sys.modules["hn_vanishing"] = module
    try:
        exec("from hypernodes import node\n@node(output_name='y')\ndef gone(x):\n    return x\n", module.__dict__)
        data = pickle.dumps(module.gone)
        del module.gone
        with pytest.raises(pickle.UnpicklingError, match=r"hn_vanishing\.gone"):
            pickle.loads(data)
    finally:
        del sys.modules["hn_vanishing"]
