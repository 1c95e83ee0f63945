"""A nested pipeline's node: its public face (output_name, the wiring properties, ``nested``) and its cache key."""

from __future__ import annotations

from typing import Any

import pytest

from hypernodes import MemoryCache, Pipeline, PipelineNode, node
from hypernodes.cache._code import _node_code


@node(output_name="y")
def double(x: int) -> int:
    return 2 * x


@node(output_name="s")
def add(a: int, b: int) -> int:
    return a + b


@node(output_name="pair")
def pair(x: int) -> tuple[int, int]:
    return (x, -x)


class _Calls(list):  # type: ignore[type-arg]
    def __cache_key__(self) -> str:
        return "CALLS"


CALLS: list[int] = _Calls()
"""Calls of ``counted``: a global a node reads is keyed by value, so its content must not count."""


@node(output_name="pair")
def counted(x: int) -> tuple[int, int]:
    CALLS.append(x)
    return (x, -x)


def test_nested_is_answered_by_every_node() -> None:
    """``Node.nested`` is False for a plain node and True for a nested pipeline, however it was nested."""
    inner = Pipeline([double], name="inner")
    assert double.nested is False
    assert inner.as_node().nested is True
    (member,) = Pipeline([inner]).nodes
    assert isinstance(member, PipelineNode)
    assert member.nested is True


def test_one_output_makes_a_string_output_name() -> None:
    """With one output a nested node's ``output_name`` is that string, as any node's; with several, a tuple."""
    one = Pipeline([double], name="inner").as_node()
    assert one.output_name == "y"
    assert one.outputs == ("y",)
    assert Pipeline([double, pair]).as_node().output_name == ("y", "pair")
    selected = Pipeline([double, pair]).as_node(output_mapping={"pair": "p"})
    assert selected.output_name == "p"
    mapped = Pipeline([double]).as_node(input_mapping={"xs": "x"}, output_mapping={"y": "ys"}, map_over="xs")
    assert mapped.output_name == "ys"
    assert Pipeline([mapped]).run({"xs": [1, 2]}) == {"ys": [2, 4]}


def test_a_narrowed_node_of_one_output_returns_the_value_itself() -> None:
    """An outer call asking for one output of a two-output nested node gets the value, not a 1-tuple;
    an output whose value is a tuple stays whole."""
    outer = Pipeline([Pipeline([double, pair], name="inner")])
    (member,) = outer.nodes
    assert member.restricted(("pair",)).output_name == "pair"
    assert outer.run({"x": 3}, output_name="pair") == {"pair": (3, -3)}
    assert outer.run({"x": 3}, output_name="y") == {"y": 6}
    assert outer.run({"x": 3}) == {"y": 6, "pair": (3, -3)}


def test_a_tuple_valued_single_output_survives_the_cache() -> None:
    """A one-output nested node whose value is a tuple is stored and served whole (never unpacked)."""
    CALLS.clear()
    outer = Pipeline([Pipeline([counted], name="inner")], cache=MemoryCache())
    assert outer.run({"x": 2}) == outer.run({"x": 2}) == {"pair": (2, -2)}
    assert CALLS == [2]  # the second run was served from the cache


def test_wiring_properties_are_public_and_read_only() -> None:
    """``input_mapping``, ``output_mapping``, ``map_over`` and ``map_mode`` say how the node is wired,
    in normalised form, and cannot be changed through them."""
    wrapped = Pipeline([add], name="adder").as_node(
        input_mapping={"xs": "a"}, output_mapping={"s": "sums"}, map_over="xs", map_mode="product"
    )
    assert dict(wrapped.input_mapping) == {"xs": "a"}
    assert dict(wrapped.output_mapping) == {"s": "sums"}
    assert wrapped.map_over == ("xs",)
    assert wrapped.map_mode == "product"
    plain = Pipeline([add, double]).as_node()
    assert dict(plain.input_mapping) == {}
    assert dict(plain.output_mapping) == {"s": "s", "y": "y"}  # every output, unrenamed ones included
    assert plain.map_over is None
    assert plain.map_mode == "zip"
    with pytest.raises(TypeError):
        wrapped.input_mapping["ys"] = "b"  # type: ignore[index]
    with pytest.raises(AttributeError):
        wrapped.map_mode = "zip"  # type: ignore[misc]


def _key(member: Any) -> bytes:
    code = _node_code(member)
    assert code is not None
    return code.static


def test_the_cache_key_covers_each_wiring_property() -> None:
    """Two nested nodes of the same pipeline get the same key only when name, input_mapping,
    output_mapping, map_over and map_mode all agree."""
    inner = Pipeline([add], name="adder")
    base = {"input_mapping": {"xs": "a"}, "output_mapping": {"s": "sums"}, "map_over": "xs", "map_mode": "zip"}
    key = _key(inner.as_node(**base))
    assert _key(inner.as_node(**base)) == key
    assert _key(inner.as_node(**{**base, "map_over": ["xs"]})) == key  # the same wiring, spelled as a list
    for change in (
        {"name": "other"},
        {"input_mapping": {"xs": "a", "c": "b"}},
        {"output_mapping": {"s": "total"}},
        {"map_over": ["xs", "b"]},
        {"map_mode": "product"},
    ):
        assert _key(inner.as_node(**{**base, **change})) != key, change


def test_a_cached_zip_is_not_served_to_a_product() -> None:
    """The same nested pipeline mapped by zip and by product, sharing a cache, computes each mode's own items."""
    cache = MemoryCache()
    inner = Pipeline([add], name="adder")

    def outer(mode: str) -> Pipeline:
        return Pipeline([inner.as_node(map_over=["a", "b"], map_mode=mode, name="step")], cache=cache)

    assert outer("zip").run({"a": [1, 2], "b": [10, 20]}) == {"s": [11, 22]}
    assert outer("product").run({"a": [1, 2], "b": [10, 20]}) == {"s": [11, 21, 12, 22]}
    assert outer("zip").run({"a": [1, 2], "b": [10, 20]}) == {"s": [11, 22]}
