"""Benchmark the hypernodes scheduling core against plain Python.

Usage::

    PYTHONPATH=src python -m bench [SCENARIO ...] [--json] [--repeat N] [--items N] [--quick]

With no scenario names every scenario runs (``overhead-map``, ``overhead-chain``,
``seed``). ``--repeat N`` sets the timing rounds per measurement (default 7; the
fastest round counts), ``--items N`` the items ``overhead-map`` maps over (default
100,000). ``--json`` prints one JSON object per result row instead of a table. Set
``HYPERNODES_NO_EXTENSIONS=1`` to measure the pure-Python core instead of the
compiled one; the header (or the ``core`` key) says which one ran.

``seed`` replays the workloads of the user's executor-comparison notebook
(``node-level``: three independent 0.1 s sleeping nodes and a combine node;
``map-level``: 80 items sleeping 0.05 s; ``native-async``: 50 items of an
``async def`` node awaiting 0.1 s; ``cpu-bound``: 20 items of 100,000 chained
sha256), one row per workload and engine, variant ``<workload>/<engine>``, metric
``s`` (seconds per call). Only the sequential engine exists today. Its workloads
sleep for seconds, so ``seed`` times at most 2 rounds whatever ``--repeat`` says,
and ``--quick`` shrinks them 10x (8, 5 and 2 items; 0.01 s node sleeps) for smoke
runs. After the table it prints the notebook's own sequential figures for
reference; JSON rows carry ``quick``.

Each row gives a candidate's cost (``value``), the cost of the equivalent plain
Python (``baseline``) in the same unit, and ``ratio = value / baseline``. Both
figures come from the same run, timed in interleaved rounds, so the *ratio* is the
figure to compare across runs, machines and cores; absolute times move with the
machine's load and clock.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._harness import BenchError, Row, Settings, environment
from .scenarios import SCENARIOS, SEED_NOTEBOOK_S, SEED_ROUNDS

_COLUMNS = ("scenario", "variant", "metric", "value", "baseline", "ratio")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time hypernodes against plain Python; compare the ratios, not the absolute times.",
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"one of: {', '.join(SCENARIOS)}; default: all"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per result row")
    parser.add_argument(
        "--repeat", type=_positive_int, default=Settings.repeat, help="timing rounds; default: %(default)s"
    )
    parser.add_argument(
        "--items", type=_positive_int, default=Settings.items, help="items for overhead-map; default: %(default)s"
    )
    parser.add_argument("--quick", action="store_true", help="shrink the seed workloads 10x, for smoke runs")
    return parser


def _table(rows: Sequence[Row]) -> str:
    """The rows as an aligned table: text columns left-aligned, numbers right-aligned."""
    cells = [list(_COLUMNS)] + [
        [r.scenario, r.variant, r.metric, f"{r.value:.4f}", f"{r.baseline:.4f}", f"{r.ratio:.2f}"] for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    n_text = 3  # scenario, variant, metric: left-aligned; the numbers after them right-aligned
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < n_text else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    )


def _seed_reference(settings: Settings) -> str:
    """Two lines to read beside the ``seed`` rows: its rounds, and the notebook's own sequential figures."""
    rounds = min(settings.repeat, SEED_ROUNDS)
    size = "--quick rows are 10x smaller" if settings.quick else "same sizes as the rows above"
    figures = ", ".join(f"{workload} {seconds:.3f} s" for workload, seconds in SEED_NOTEBOOK_S.items())
    return (
        f"seed: best of {rounds} round(s). The notebook's sequential figures (one cold run each; {size}):\n"
        f"  {figures} (its native-async row ran the sync twin)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios and print their rows; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from: {', '.join(SCENARIOS)}")
    names = list(dict.fromkeys(args.scenarios)) or list(SCENARIOS)
    settings = Settings(repeat=args.repeat, items=args.items, quick=args.quick)
    env = environment()

    if not args.json:
        quick = ", quick" if settings.quick else ""
        print(
            f"hypernodes bench: core={env['core']}, Python {env['python']}, repeat={settings.repeat}{quick}", flush=True
        )
    rows: list[Row] = []
    try:
        for name in names:
            scenario_rows = SCENARIOS[name](settings)
            if args.json:
                for row in scenario_rows:
                    print(json.dumps({**row.as_dict(), **env, "quick": settings.quick}), flush=True)
            rows.extend(scenario_rows)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(_table(rows))
        if "seed" in names:
            print(_seed_reference(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
