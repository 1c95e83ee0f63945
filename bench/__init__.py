"""Benchmark harness for hypernodes: the scheduling core's overhead against plain Python.

Run it with ``python -m bench`` (see :mod:`bench.__main__`). Scenarios live in
:mod:`bench.scenarios`, registered by name in :data:`bench.scenarios.SCENARIOS`;
the timing and result plumbing they share lives in :mod:`bench._harness`.
"""

from __future__ import annotations

from ._harness import BenchError, Row, Settings, environment
from .scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "BenchError", "Row", "Scenario", "Settings", "environment"]
