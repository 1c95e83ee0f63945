"""The ``hashing`` scenario: the cache's value keys (``hash_value``) against ``dask.base.tokenize`` and ``joblib.hash``.

Opt-in (``python -m bench hashing``): it needs dask and joblib (``pip install dask joblib``),
which hypernodes does not. Three values: a 100 MB float64 array, a 1,000,000-row frame
(int64, float64, categorical and string columns) and a dict of 10,000 small items (a str
key to a list of an int, a float and a str). Each row is hash_value's time against one
library's on the same value, timed in interleaved rounds: a ratio under 1 means our key
is the faster.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from hypernodes.cache import hash_value

from ._harness import BenchError, Row, Settings, best_of
from .scenarios import register

__all__ = ["ARRAY_BYTES", "DICT_ITEMS", "FRAME_ROWS"]

ARRAY_BYTES = 100_000_000
FRAME_ROWS = 1_000_000
DICT_ITEMS = 10_000

_MS = 1e3


def _values(quick: bool) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    shrink = 10 if quick else 1
    rng = np.random.default_rng(0)
    rows = FRAME_ROWS // shrink
    frame = pd.DataFrame(
        {
            "i": rng.integers(0, 1000, rows),
            "f": rng.random(rows),
            "c": pd.Categorical(rng.choice(["red", "green", "blue"], rows)),
            "s": pd.array([f"s{i % 977}" for i in range(rows)], dtype="str"),
        }
    )
    return {
        f"array-{ARRAY_BYTES // shrink // 1_000_000}MB": rng.random(ARRAY_BYTES // shrink // 8),
        f"frame-{rows}-rows": frame,
        f"dict-{DICT_ITEMS}-items": {f"item{i}": [i, i * 0.5, f"v{i}"] for i in range(DICT_ITEMS)},
    }


@register("hashing")
def hashing_scenario(settings: Settings) -> list[Row]:
    """hash_value on a 100 MB array, a 1M-row frame and a 10,000-item dict, against dask's and joblib's hashes."""
    try:
        import joblib
        from dask.base import tokenize
    except ImportError as exc:
        raise BenchError("the hashing scenario needs dask and joblib: pip install dask joblib") from exc
    rows = []
    repeat = min(settings.repeat, 5)
    for name, value in _values(settings.quick).items():
        if hash_value(value) != hash_value(value):
            raise BenchError(f"hashing/{name}: hash_value is not deterministic")
        best = best_of(
            {
                "ours": partial(hash_value, value),
                "dask": partial(tokenize, value),
                "joblib": partial(joblib.hash, value),
            },
            repeat,
        )
        for other, label in (("dask", "dask.base.tokenize"), ("joblib", "joblib.hash")):
            rows.append(Row("hashing", f"{name}/{other}", "ms", best["ours"] * _MS, best[other] * _MS, label))
    return rows
