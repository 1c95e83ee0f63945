"""Why each node of a call would hit or miss its cache: :func:`explain`.

A lookup stores, once per call and node, what the node's key is made of
(:meth:`CallKeys.described`: its code's parts by name, each input's kind and digest)
beside its entries. A miss is explained by comparing that record with what the
call's key is made of now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._call import prepare_map, prepare_run
from ._code import _differs_on_disk, _functions
from ._keys import DEFER, CallKeys
from ._where import _name_of
from .storage import Cache

__all__ = ["explain"]


def explain(
    pipeline: Any,
    inputs: Mapping[str, Any] | None = None,
    output_name: Any = None,
    map_over: str | Sequence[str] | None = None,
    map_mode: str = "zip",
) -> Any:
    """Why each node of ``pipeline.run(inputs, output_name)`` (or of each item of
    ``pipeline.map(inputs, map_over, map_mode, output_name)``) would hit or miss its cache.

    Returns:
        For a run: ``{node name: "hit" | "miss: ..." | "not cached: ..."}``; a miss
        names each part of the key that changed since that node was last stored, once:
        ``its code``, ``helper `util.norm```, ``global `THRESHOLD` (read by its code)``,
        ``closure value `k```, ``default `k```, ``version``, ``input `x```, or
        ``upstream node `a``` (never an upstream node that hits). With ``map_over``: one
        such dict per item, where a node whose code and broadcast inputs are unchanged
        and whose upstream nodes hit says ``"miss: not stored for this item's `x`"``.
        A node whose code (or a helper's) differs from its file on disk (edited after
        import, not reloaded) gets a note saying so: its key follows the running code.

    Raises:
        ValueError: the pipeline has no cache.
        The errors of ``run()`` / ``map()`` for bad inputs, before anything is hashed.
    """
    cache = getattr(pipeline, "effective_cache", None) or getattr(pipeline, "cache", None)
    if cache is None:
        raise ValueError("explain() needs a pipeline with a cache: Pipeline(..., cache=DiskCache(path)).")
    if map_over is None:
        call = prepare_run(pipeline.plans, inputs or {}, output_name)
        (why,) = _explained(cache, CallKeys(call.plan, call.values, None), [call.values])
        notes = _on_disk_notes(call.plan)
        return {name: reason + notes.get(name, "") for name, reason in why.items()}
    mcall = prepare_map(pipeline.plans, inputs or {}, map_over, map_mode, output_name)
    items = mcall.items
    per_item = []
    for i in range(items.lo, items.hi):
        values = list(mcall.values)
        items.fill(values, i)
        per_item.append(values)
    notes = _on_disk_notes(mcall.plan)
    return [
        {name: reason + notes.get(name, "") for name, reason in why.items()}
        for why in _explained(cache, CallKeys(mcall.plan, mcall.values, items.map_slots), per_item)
    ]


def _explained(cache: Cache, call: CallKeys, items: Sequence[Sequence[Any]]) -> list[dict[str, str]]:
    """Per item (its slot values), per node: ``"hit"`` or why it misses; the entries read in one query."""
    keyed = [call.keys(values) for values in items]
    blobs = cache.get_blobs([k for keys in keyed for k in keys if k is not None and k is not DEFER])
    metas: dict[int, Any] = {}
    return [_explain_keys(cache, call, keys, blobs, metas) for keys in keyed]


def _explain_keys(
    cache: Cache, call: CallKeys, keys: Sequence[str | None], blobs: Mapping[str, bytes], metas: dict[int, Any]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, name in enumerate(call.names):
        key = keys[k]
        if call.code[k] is None:
            out[name] = call.unkeyed.get(k, "not cached: cache=False")
        elif key is None:
            out[name] = "not cached: an input cannot be hashed"
        elif key is DEFER:
            out[name] = "decided when it runs: it reads an uncached node's output"
        elif key in blobs:
            out[name] = "hit"
        else:
            if k not in metas:
                metas[k] = cache.get(call.meta_key(k))
            out[name] = _why(call, k, keys, metas[k], out)
    return out


def _why(call: CallKeys, k: int, keys: Sequence[str | None], meta: Any, so_far: Mapping[str, str]) -> str:
    if not isinstance(meta, dict):
        return "miss: never stored"
    now = call.described(k, keys)
    old_parts = meta.get("parts")
    if isinstance(old_parts, dict):
        changed = _changed_parts(old_parts, now["parts"])
    else:  # stored by a version that kept two digests
        changed = ["its code"] if meta.get("code") != now["code"] else []
        if meta.get("closure") != now["closure"]:
            changed.append("a value its code reads")
    old_inputs = meta.get("inputs", {})
    unstored = []
    for name, (kind, up, digest) in now["inputs"].items():
        old = old_inputs.get(name)
        if kind == "mapped":  # stored by a run() or another map: its value is this item's own
            if old is None:
                changed.append(f"input `{name}`")
            else:
                unstored.append(name)
        elif kind == "upstream":
            # An upstream node that hits is never to blame: the entry is missing for its
            # current result (per item, upstream keys differ by design).
            if old is None or old[:2] != (kind, up):
                changed.append(f"input `{name}`")
            elif so_far.get(str(up), "hit") != "hit":
                changed.append(f"upstream node `{up}`")
            elif old != (kind, up, digest) or call.is_map:
                unstored.append(name)
        elif old != (kind, up, digest):
            changed.append(f"input `{name}`")
    if changed:
        return "miss: changed since last stored: " + ", ".join(dict.fromkeys(changed))
    if unstored:
        names = ", ".join(f"`{m}`" for m in unstored)
        return f"miss: not stored for this item's {names}" if call.is_map else f"miss: not stored for this {names}"
    return "miss: the entry was removed (cleared or evicted)"


def _changed_parts(old: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """What changed between two named code keys, each reason once: `its code`, `helper `util.f``,
    `global `K` (read by its code)`, `closure value `k``, `version`, ..."""
    reasons: dict[str, None] = {}
    for label in [*now, *(label for label in old if label not in now)]:
        if old.get(label) != now.get(label):
            reasons[label.split(" #", 1)[0]] = None
    return list(reasons)


def _on_disk_notes(plan: Any) -> dict[str, str]:
    """Per node whose code (or a helper's) no longer matches its file on disk (edited after import,
    not reloaded), the note :func:`explain` adds."""
    notes = {}
    for name, node in zip(plan.node_names, plan.nodes):
        if not getattr(node, "cache", True):
            continue
        stale = dict.fromkeys(_name_of(f) for f in _functions(node) if _differs_on_disk(f))
        if stale:
            notes[name] = (
                " (the source on disk differs from the code that runs: "
                + ", ".join(f"`{f}`" for f in stale)
                + "; key follows the running code)"
            )
    return notes
