"""A small pipeline shared by the executor and load tests: a diamond with a tuple output,
a default and an ``async def`` node. Module level, so worker processes import it by name."""

from __future__ import annotations

import asyncio

from hypernodes import node


@node(output_name="doubled")
def double(x: int) -> int:
    return 2 * x


@node(output_name=("low", "high"))
def split(doubled: int, offset: int = 1) -> tuple[int, int]:
    return doubled - offset, doubled + offset


@node(output_name="shifted")
async def shift(x: int, step: int = 10) -> int:
    await asyncio.sleep(0)
    return x + step


@node(output_name="total")
def total(low: int, high: int, shifted: int) -> int:
    return low + high + shifted


DIAMOND = [double, split, shift, total]


def expected_diamond(x: int, offset: int = 1, step: int = 10) -> dict[str, int]:
    doubled = 2 * x
    low, high = doubled - offset, doubled + offset
    shifted = x + step
    return {"doubled": doubled, "low": low, "high": high, "shifted": shifted, "total": low + high + shifted}
