"""The notebook-era ``engine.map(pipeline, items, inputs, output_name)``: one dict per item.

That version mapped over a list of per-item input dicts, each merged over the shared
``inputs``, and returned a list with one ``{output name: value}`` per item. Here the
same call becomes one zip map over the items' keys (their values as columns), so it
runs, caches and reports exactly as ``engine.map(pipeline, inputs, map_over=...)`` does;
only the shape of the result is turned round. Items that do not all name the same
inputs run one ``engine.run`` each, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .errors import ArgumentTypeError

__all__ = ["is_item_list", "map_items"]


class _Engine(Protocol):
    def run(self, pipeline: Any, inputs: Any = None, output_name: Any = None) -> dict[str, Any]: ...

    def map(
        self, pipeline: Any, inputs: Any = None, map_over: Any = None, map_mode: str = "zip", output_name: Any = None
    ) -> Mapping[str, list[Any]]: ...


def is_item_list(inputs: Any) -> bool:
    """``inputs`` in the notebook-era place of ``items``: a list or tuple (``map()`` takes a dict)."""
    return type(inputs) is list or type(inputs) is tuple


def map_items(
    engine: _Engine, pipeline: Any, items: Any, shared: Any, output_name: Any, context: Any = None
) -> list[dict[str, Any]]:
    """Run ``pipeline`` once per item dict, each over ``shared``; one result dict per item, in order.

    Args:
        engine: the engine to run on (its new-form ``map`` and ``run``).
        pipeline: the pipeline.
        items: a list or tuple of ``{input name: value}``, one per item.
        shared: ``{input name: value}`` every item reads (an item's own value wins), or None.
        output_name: as for ``Pipeline.map``.
        context: the notebook-era private ``_ctx`` argument; must be None.

    Returns:
        ``[{output name: value}, ...]``, one per item (``[]`` for no items).

    Raises:
        ArgumentTypeError: ``items`` is not a list of dicts, ``shared`` not a dict, or ``context`` given.
        The errors of ``engine.map`` / ``engine.run``.
    """
    if context is not None:
        raise ArgumentTypeError(
            "engine.map(pipeline, items, inputs, output_name, _ctx): the notebook-era _ctx argument is private and "
            f"not taken here; got {type(context).__name__}. Callbacks come from the pipeline (Pipeline(callbacks=...))."
        )
    if not isinstance(items, (list, tuple)):
        raise ArgumentTypeError(f"engine.map(items=...) takes a list of input dicts, got {type(items).__name__}.")
    bad = next((i for i, item in enumerate(items) if not isinstance(item, Mapping)), None)
    if bad is not None:
        raise ArgumentTypeError(
            f"engine.map(pipeline, items, inputs): items[{bad}] is {type(items[bad]).__name__}, not a dict of "
            "input name -> value (one dict per item)."
        )
    if shared is None:
        shared = {}
    if not isinstance(shared, Mapping):
        raise ArgumentTypeError(
            f"engine.map(pipeline, items, inputs): inputs (shared by every item) must be a dict, got "
            f"{type(shared).__name__}."
        )
    if not items:
        return []
    keys = tuple(items[0])
    if keys and all(item.keys() == items[0].keys() for item in items):
        columns = {key: [item[key] for item in items] for key in keys}
        inputs = {**{k: v for k, v in shared.items() if k not in columns}, **columns}
        result = engine.map(pipeline, inputs, list(keys), "zip", output_name)
        return [{name: values[i] for name, values in result.items()} for i in range(len(items))]
    return [engine.run(pipeline, {**shared, **item}, output_name) for item in items]
