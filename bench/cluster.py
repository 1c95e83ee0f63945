"""The ``dask`` scenario: DaskEngine on a 2-worker LocalCluster (loopback) against plain ``client.map``.

Opt-in (``python -m bench dask``): starting a cluster takes seconds, and the
default run stays about this machine's own executors. Needs ``hypernodes[dask]``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from hypernodes import Pipeline, node

from ._harness import BenchError, Row, Settings, best_of, check
from .scenarios import register

__all__ = ["DASK_CPU_ITEMS", "DASK_CPU_SECONDS", "DASK_TINY_ITEMS"]

DASK_TINY_ITEMS = 20_000
DASK_CPU_ITEMS = 200
DASK_CPU_SECONDS = 0.010  # of CPU per item

_US = 1e6


def _inc(x: int) -> int:
    return x + 1


def _burn(x: int) -> int:
    end = time.process_time() + DASK_CPU_SECONDS
    while time.process_time() < end:
        pass
    return x


def _burn_batch(xs: list[int]) -> list[int]:
    return [_burn(x) for x in xs]


def _client_map(client: Any, fn: Any, xs: list[Any]) -> list[Any]:
    return list(client.gather(client.map(fn, xs, pure=False)))


@register("dask")
def dask_scenario(settings: Settings) -> list[Row]:
    """20,000 tiny items (per item, against ``client.map`` per item) and 200 items of 10 ms of CPU
    (against ``client.map`` over the same batches the engine sends), on 2 worker processes."""
    try:
        import distributed
    except ImportError as exc:
        raise BenchError("the dask scenario needs distributed: pip install 'hypernodes[dask]'") from exc
    from hypernodes.engines import DaskEngine

    repeat = min(settings.repeat, 3)
    n_tiny = DASK_TINY_ITEMS // 10 if settings.quick else DASK_TINY_ITEMS
    rows = []
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
        DaskEngine(client) as engine,
    ):
        tiny = Pipeline([node(_inc, output_name="y")], backend=engine)
        xs = list(range(n_tiny))
        check("dask", "tiny", tiny.map(inputs={"x": xs}, map_over="x"), {"y": _client_map(client, _inc, xs)})
        best = best_of(
            {"baseline": partial(_client_map, client, _inc, xs),
             "engine": partial(tiny.map, inputs={"x": xs}, map_over="x")},
            repeat,
        )  # fmt: skip
        rows.append(Row("dask", f"{n_tiny}-tiny-items/2-workers", "us/item", best["engine"] * _US / n_tiny,
                        best["baseline"] * _US / n_tiny, "client.map, one task per item"))  # fmt: skip

        cpu = Pipeline([node(_burn, output_name="y")], backend=engine)
        ys = list(range(DASK_CPU_ITEMS))
        n_slices = engine.dask.workers(engine.dask.executor()) * engine.dask.tasks_per_worker
        size = -(-len(ys) // n_slices)
        batches = [ys[i : i + size] for i in range(0, len(ys), size)]
        check("dask", "cpu", cpu.map(inputs={"x": ys}, map_over="x"), {"y": ys})
        best = best_of(
            {"baseline": partial(_client_map, client, _burn_batch, batches),
             "engine": partial(cpu.map, inputs={"x": ys}, map_over="x")},
            repeat,
        )  # fmt: skip
        rows.append(Row("dask", f"{DASK_CPU_ITEMS}x10ms-cpu/2-workers", "s", best["engine"], best["baseline"],
                        f"client.map over the same {len(batches)} batches"))  # fmt: skip
    return rows
