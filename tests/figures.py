"""Figures the reliability tests record (examples run, faults injected, calls under
load, peak memory), printed at the end of the pytest run by ``conftest``."""

from __future__ import annotations

import threading
from collections import Counter


class Figures:
    """Thread-safe counters and measured values, keyed by a description."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.values: dict[str, str] = {}

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def record(self, what: str, value: str) -> None:
        with self._lock:
            self.values[what] = value

    def lines(self) -> list[str]:
        with self._lock:
            return [f"{what}: {n}" for what, n in sorted(self.counts.items())] + [
                f"{what}: {value}" for what, value in sorted(self.values.items())
            ]


FIGURES = Figures()
