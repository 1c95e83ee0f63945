"""The ``columns`` scenario: numpy columns into a process map, and map results out as a frame.

Opt-in (``python -m bench columns``): it maps 10,000,000 items and needs numpy and pandas.

* ``numpy-in/parallel``: 10,000,000 float64 items from a numpy array through ``x * 2`` on
  ``"parallel"`` with 2 workers, against the same map over the array's list (what a user
  passed before columns were accepted), and against a hand-written
  ``ProcessPoolExecutor`` that sends each worker a numpy chunk and calls the node's
  function on each of its elements as Python floats, its results coming back as lists
  (the same per-item work, with no pipeline); and against the same pool computing
  ``x * 2`` inline, with no call per item (a floor, for reference: the target is the former).
* ``to_pandas``: ``MapResult.to_pandas()`` of a 1,000,000-item, 3-output result against
  ``pd.DataFrame(result)``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any

from hypernodes import HypernodesEngine, MapResult, Pipeline, node

from ._harness import BenchError, Row, Settings, best_of, check
from .scenarios import register

__all__ = ["COLUMN_ITEMS", "FRAME_ITEMS"]

COLUMN_ITEMS = 10_000_000
FRAME_ITEMS = 1_000_000


def _double(x: float) -> float:
    return x * 2


def _double_chunk(chunk: Any) -> list[float]:
    return [_double(x) for x in chunk.tolist()]  # the node's function, called per item as the map calls it


def _double_chunk_inline(chunk: Any) -> list[float]:
    return [x * 2 for x in chunk.tolist()]  # no call per item: a floor no per-item map reaches


def _pool_map(pool: ProcessPoolExecutor, array: Any, n_chunks: int, work: Any = _double_chunk) -> list[float]:
    import numpy as np

    out: list[float] = []
    for part in pool.map(work, np.array_split(array, n_chunks)):
        out.extend(part)
    return out


@register("columns")
def columns_scenario(settings: Settings) -> list[Row]:
    """A numpy column through a 2-process map (against its list and a raw process pool), and to_pandas()."""
    try:
        import numpy as np
        import pandas as pd
    except ImportError as exc:
        raise BenchError("the columns scenario needs numpy and pandas: pip install numpy pandas") from exc
    repeat = min(settings.repeat, 3)
    n = COLUMN_ITEMS // 10 if settings.quick else COLUMN_ITEMS
    array = np.random.default_rng(0).random(n)
    as_list = array.tolist()
    rows = []
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine, ProcessPoolExecutor(2) as pool:
        pipeline = Pipeline([node(_double, output_name="y")], backend=engine)
        want = _pool_map(pool, array, 8)
        check("columns", "numpy-in", pipeline.map({"x": array}, map_over="x")["y"], want)
        best = best_of(
            {
                "list": partial(pipeline.map, {"x": as_list}, map_over="x"),
                "numpy": partial(pipeline.map, {"x": array}, map_over="x"),
                "pool": partial(_pool_map, pool, array, 8),
                "inline": partial(_pool_map, pool, array, 8, _double_chunk_inline),
            },
            repeat,
        )
    rows.append(Row("columns", f"{n}-floats/vs-list", "s", best["numpy"], best["list"], "the map over a list"))
    rows.append(Row("columns", f"{n}-floats/vs-pool", "s", best["numpy"], best["pool"], "ProcessPoolExecutor"))
    rows.append(
        Row("columns", f"{n}-floats/vs-pool-inline", "s", best["numpy"], best["inline"], "the pool, x * 2 inlined")
    )

    m = FRAME_ITEMS // 10 if settings.quick else FRAME_ITEMS
    result = MapResult({"a": list(range(m)), "b": np.arange(m, dtype=float).tolist(), "c": [f"s{i}" for i in range(m)]})
    if not result.to_pandas().equals(pd.DataFrame(result)):
        raise BenchError("columns [to_pandas]: the frame differs from pd.DataFrame(result)")
    best = best_of({"frame": result.to_pandas, "pandas": partial(pd.DataFrame, result)}, repeat)
    rows.append(Row("columns", f"{m}-items/to_pandas", "s", best["frame"], best["pandas"], "pd.DataFrame(result)"))
    return rows
