"""Type checkers see ``@node`` functions with their own signatures (checked by mypy, never run).

``mypy`` (the README's test command; ``files`` in pyproject.toml) checks this module
under ``strict``: each ``assert_type`` must hold, and each ``# type: ignore[...]``
must silence a real error (``warn_unused_ignores``), so a wrong call that type-checks
fails the check.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from hypernodes import MapResult, Node, Pipeline, node


@node(output_name="cleaned")
def clean(text: str) -> str:
    return text.strip()


@node
def count(cleaned: str, minimum: int = 0) -> int:
    return max(len(cleaned), minimum)


async def _fetch(url: str) -> bytes:
    return url.encode()


fetch = node(_fetch, output_name="page")

assert_type(clean("a"), str)
assert_type(count("a"), int)
assert_type(count("a", minimum=2), int)
assert_type(clean.func("a"), str)
clean(3)  # type: ignore[arg-type]  # an int for a str parameter
count("a", 1, 2)  # type: ignore[call-arg]
count("a", minimu=1)  # type: ignore[call-arg]

pipeline = Pipeline([clean, count], name="text")
nodes: list[Node[..., Any]] = [clean, count, fetch]  # a list built apart needs its type: mypy joins to object
assert_type(pipeline.map({"text": ["a"]}, map_over="text"), MapResult)
assert_type(pipeline.run({"text": "a"}), dict[str, Any])


def _page() -> Coroutine[Any, Any, bytes]:
    return fetch("u")  # an async node called returns the coroutine, as the function does
