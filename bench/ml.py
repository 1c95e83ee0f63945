"""The ``ml`` scenario: "parallel" as ML work uses it, against joblib and against itself.

Opt-in (``python -m bench ml``; needs numpy and joblib). Rows:

- ``blas-matmul``: 16 matrix products (numpy's BLAS) on ``"parallel"`` with 2 workers,
  against ``joblib.Parallel(n_jobs=2)`` on the same items (joblib caps each worker's
  BLAS threads at cores // workers; so do we).
- ``shared-200MB``: a 200 MB array shared by a map over 8 items, against the same map
  over 1 item (the array travels once per call, not once per task).
- ``cached-map``: a fully cached map of 1,000 items on ``"parallel"`` against the same
  map sequential (no worker starts when the cache holds every item).
- ``resource-load``: a :class:`~hypernodes.Resource` whose factory sleeps 0.5 s, given to
  1,000 items of 1 ms each on 2 fresh workers, against the same map with a plain input plus
  the two loads (0.5 s: one per worker, at once). The factory runs once per worker; the
  variant names how often it ran in the last round.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from hypernodes import DiskCache, HypernodesEngine, Pipeline, Resource, node

from ._harness import BenchError, Row, Settings, best_of, check
from .scenarios import register

__all__ = ["MATMUL_ITEMS", "MATMUL_SIZE", "SHARED_MB"]

MATMUL_ITEMS = 16
MATMUL_SIZE = 600  # a 600 x 600 float64 product: ~0.43 GFLOP, tens of ms on one core
SHARED_MB = 200
CACHED_ITEMS = 1_000
RESOURCE_ITEMS = 1_000
LOAD_S = 0.5
ITEM_S = 0.001


def matmul(seed: int, size: int) -> float:
    """The sum of ``a @ a`` for a random ``size`` x ``size`` matrix ``a`` (BLAS-bound)."""
    import numpy

    a = numpy.random.default_rng(seed).random((size, size))
    return float((a @ a).sum())


def pick(x: int, arr: Any) -> float:
    """One element of the shared array."""
    return float(arr[x])


def scaled(x: int) -> int:
    """A cheap node to cache."""
    return 3 * x


def load_model(log: str) -> str:
    """A slow factory: sleeps :data:`LOAD_S`, logs one line per run (across processes)."""
    time.sleep(LOAD_S)
    with open(log, "a") as f:
        f.write("load\n")
    return "model"


def predict(x: int, model: str) -> int:
    """One item's work: :data:`ITEM_S` of sleep."""
    time.sleep(ITEM_S)
    return x


def _fresh_map(inputs: dict[str, Any]) -> Any:
    """The map on a fresh 2-worker "parallel" pool (so each round loads the resource anew)."""
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        return Pipeline([node(predict, output_name="y")], backend=engine).map(inputs, "x")


def _plain_plus_loads(inputs: dict[str, Any]) -> Any:
    result = _fresh_map(inputs)
    time.sleep(LOAD_S)  # the two workers' loads, which run at once
    return result


def _joblib_map(parallel: Any, delayed: Any, seeds: list[int]) -> list[float]:
    return list(parallel(delayed(matmul)(s, MATMUL_SIZE) for s in seeds))


@register("ml")
def ml_scenario(settings: Settings) -> list[Row]:
    """BLAS-bound items against joblib, a 200 MB shared input over 8 items against 1, a fully
    cached map on processes against the sequential one."""
    try:
        import joblib
        import numpy
    except ImportError as exc:
        raise BenchError("the ml scenario needs numpy and joblib: pip install numpy joblib") from exc

    repeat = min(settings.repeat, 5)
    rows = []
    with HypernodesEngine(map_executor="parallel", max_workers=2) as engine, joblib.Parallel(n_jobs=2) as parallel:
        blas = Pipeline([node(matmul, output_name="total")], backend=engine)
        seeds = list(range(MATMUL_ITEMS))
        inputs = {"seed": seeds, "size": MATMUL_SIZE}
        check("ml", "blas", blas.map(inputs, "seed"), {"total": _joblib_map(parallel, joblib.delayed, seeds)})
        best = best_of(
            {"baseline": partial(_joblib_map, parallel, joblib.delayed, seeds),
             "engine": partial(blas.map, inputs, "seed")},
            repeat,
        )  # fmt: skip
        rows.append(Row("ml", f"blas-matmul/{MATMUL_ITEMS}x{MATMUL_SIZE}/2-workers", "s", best["engine"],
                        best["baseline"], "joblib.Parallel(n_jobs=2)"))  # fmt: skip

        arr = numpy.ones(SHARED_MB * (1 << 20) // 8)
        shared = Pipeline([node(pick, output_name="y")], backend=engine)
        one, eight = {"x": [0], "arr": arr}, {"x": list(range(8)), "arr": arr}
        check("ml", "shared", shared.map(eight, "x"), {"y": [1.0] * 8})
        best = best_of({"baseline": partial(shared.map, one, "x"), "engine": partial(shared.map, eight, "x")}, repeat)
        rows.append(Row("ml", f"shared-{SHARED_MB}MB/8-items", "s", best["engine"], best["baseline"],
                        "the same map over 1 item"))  # fmt: skip
        del arr, one, eight

    with tempfile.TemporaryDirectory() as where, HypernodesEngine(map_executor="parallel", max_workers=2) as engine:
        cache = DiskCache(where)
        xs = {"x": list(range(CACHED_ITEMS))}
        sequential = Pipeline([node(scaled, output_name="y")], cache=cache)
        on_processes = Pipeline([node(scaled, output_name="y")], backend=engine, cache=cache)
        check("ml", "cached", on_processes.map(xs, "x"), sequential.map(xs, "x"))
        best = best_of(
            {"baseline": partial(sequential.map, xs, "x"), "engine": partial(on_processes.map, xs, "x")}, repeat
        )
        rows.append(Row("ml", f"cached-map/{CACHED_ITEMS}-items/parallel", "s", best["engine"], best["baseline"],
                        "the same map, sequential"))  # fmt: skip

    with tempfile.TemporaryDirectory() as where:
        log = Path(where) / "loads"
        numbers = list(range(RESOURCE_ITEMS))
        plain = {"x": numbers, "model": "model"}
        with_resource = {"x": numbers, "model": Resource(load_model, str(log))}
        check("ml", "resource", _fresh_map(with_resource), {"y": numbers})
        best = best_of(
            {"baseline": partial(_plain_plus_loads, plain), "engine": partial(_fresh_map, with_resource)},
            min(repeat, 3),
        )
        log.write_text("")
        _fresh_map(with_resource)
        loads = len(log.read_text().split())
        rows.append(Row("ml", f"resource-load/{RESOURCE_ITEMS}-items/2-workers/{loads}-loads", "s", best["engine"],
                        best["baseline"], "a plain input, plus two loads"))  # fmt: skip
    return rows
