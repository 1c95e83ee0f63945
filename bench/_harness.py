"""What the scenarios share: settings, result rows, interleaved timing, the correctness check."""

from __future__ import annotations

import gc
import math
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

__all__ = ["BenchError", "Row", "Settings", "best_of", "check", "environment"]


class BenchError(RuntimeError):
    """A scenario could not produce a trustworthy figure (e.g. the pipeline's result is wrong)."""


@dataclass(frozen=True)
class Settings:
    """Knobs from the command line, passed to every scenario.

    Attributes:
        repeat: timing rounds per measurement; the minimum round is reported.
        items: items mapped over by scenarios that map (``overhead-map``).
        quick: shrink the slow ``seed`` workloads 10x, for smoke runs.
    """

    repeat: int = 7
    items: int = 100_000
    quick: bool = False


@dataclass(frozen=True)
class Row:
    """One result: a candidate's cost and its baseline's, in the same unit and run."""

    scenario: str
    variant: str
    metric: str
    value: float
    baseline: float
    against: str = "plain Python"
    """What ``baseline`` measured: plain Python, or the raw executor the variant wraps."""

    @property
    def ratio(self) -> float:
        """``value / baseline``: how many times the baseline's cost the candidate pays."""
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        """The row's fields plus ``ratio``, as a JSON-ready dict."""
        return {
            "scenario": self.scenario,
            "variant": self.variant,
            "metric": self.metric,
            "value": self.value,
            "baseline": self.baseline,
            "against": self.against,
            "ratio": self.ratio,
        }


def environment() -> dict[str, str]:
    """Which scheduling core is loaded (``cython`` or ``python``) and the Python version."""
    from hypernodes._core import IMPLEMENTATION

    return {"core": IMPLEMENTATION, "python": platform.python_version()}


def best_of(contenders: Mapping[str, Callable[[], object]], repeat: int, loops: int = 1) -> dict[str, float]:
    """Time each contender, interleaved, and keep its fastest round.

    Every round times each contender once, in order (``loops`` calls back to back),
    so a noisy stretch of the machine hits all of them alike; the minimum over
    ``repeat`` rounds is the least disturbed figure. The garbage collector is off
    while a contender is timed, as in :mod:`timeit`.

    Returns:
        contender name -> seconds for its fastest round of ``loops`` calls.
    """
    best = dict.fromkeys(contenders, math.inf)
    gc_was_enabled = gc.isenabled()
    for _ in range(repeat):
        for name, fn in contenders.items():
            gc.disable()
            try:
                start = perf_counter()
                for _ in range(loops):
                    fn()
                elapsed = perf_counter() - start
            finally:
                if gc_was_enabled:
                    gc.enable()
            best[name] = min(best[name], elapsed)
    return best


def check(scenario: str, variant: str, got: object, expected: object) -> None:
    """Raise :class:`BenchError` unless the pipeline's result ``got`` equals the baseline's."""
    if got != expected:
        raise BenchError(
            f"{scenario} [{variant}]: the pipeline's result differs from the baseline's; "
            f"got {got!r:.200}, expected {expected!r:.200}"
        )
