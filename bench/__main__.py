"""Benchmark the hypernodes scheduling core against plain Python.

Usage::

    PYTHONPATH=src python -m bench [SCENARIO ...] [--json] [--repeat N] [--items N] [--quick]

With no scenario names every scenario runs (``overhead-map``, ``overhead-chain``,
``seed``, ``errors``, ...) but ``cache``, which takes minutes, ``dask``, ``hashing`` and ``ml`` (which need
dask, joblib or numpy): those run only when named.
``--repeat N`` sets the timing rounds per measurement (default 7; the fastest round
counts), ``--items N`` the items ``overhead-map`` maps over (default 100,000).
``--json`` prints one JSON object per result row instead of a table. Set
``HYPERNODES_NO_EXTENSIONS=1`` to measure the pure-Python core instead of the
compiled one; the header (or the ``core`` key) says which one ran.

``seed`` replays the workloads of the user's executor-comparison notebook on every
engine it uses, each next to the raw executor it wraps, timed in the same run:
``node-level`` (three independent 0.1 s sleeping nodes and a combine node; baseline
the three calls on a raw ``ThreadPoolExecutor``), ``map-level`` (80 items sleeping
0.05 s; baselines ``ThreadPoolExecutor(100).map`` and loky's ``map`` on the same
workers), ``native-async`` (50 items awaiting 0.1 s; baseline ``asyncio.gather``),
``sync-wrapped`` (40 blocking items under ``AsyncExecutor`` and thread pools; baseline
raw threads), ``cpu-bound`` (20 items of 100,000 chained sha256; baseline loky's
``map``) and ``tiny-items`` (200,000 items of ``x + 1`` on "threaded" and "parallel";
baseline the sequential map, in microseconds per item). Sequential rows are compared
with plain Python. Variants are ``<workload>/<engine>``, metric ``s`` (seconds per
call); the ``baseline is`` column names the baseline. Its workloads sleep for
seconds, so ``seed`` times at most 2 rounds whatever ``--repeat`` says, and
``--quick`` shrinks them 10x for smoke runs. After the table it prints the notebook's
own tables filled with this run's figures, the notebook's beside them.

Each row gives a candidate's cost (``value``), the cost of the equivalent plain
Python (``baseline``) in the same unit, and ``ratio = value / baseline``. Both
figures come from the same run, timed in interleaved rounds, so the *ratio* is the
figure to compare across runs, machines and cores; absolute times move with the
machine's load and clock.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from . import (  # noqa: F401  (register the opt-in scenarios)
    cluster,  # "dask"
    columns,  # "columns"
    hashing,  # "hashing"
    ml,  # "ml"
    telemetry,  # "telemetry"
)
from ._harness import BenchError, Row, Settings, environment
from .scenarios import OPT_IN, SCENARIOS, SEED_NOTEBOOK, SEED_ROUNDS

_COLUMNS = ("scenario", "variant", "metric", "value", "baseline", "ratio", "baseline is")


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
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"one of: {', '.join(SCENARIOS)}; default: all but {', '.join(sorted(OPT_IN))}",
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
        [r.scenario, r.variant, r.metric, f"{r.value:.4f}", f"{r.baseline:.4f}", f"{r.ratio:.2f}", r.against]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    numbers = range(3, 6)  # value, baseline, ratio: right-aligned; text left-aligned
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i in numbers else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in cells
    )


def _notebook_tables(rows: Sequence[Row], settings: Settings) -> str:
    """The notebook's own tables, filled with this run's ``seed`` rows (its figures in brackets)."""
    by_variant = {row.variant: row.value for row in rows if row.scenario == "seed"}
    rounds = min(settings.repeat, SEED_ROUNDS)
    size = ", --quick: 10x smaller than the notebook's" if settings.quick else ""
    lines = [
        f"The notebook's tables, this run (best of {rounds}, {os.cpu_count()} CPUs{size}); "
        "[the notebook's own figures: one cold run, about 10 CPUs]:"
    ]
    for title, workload, entries in SEED_NOTEBOOK:
        found = [(label, by_variant[f"{workload}/{v}"], theirs) for label, v, theirs in entries]
        if len(found) != len(entries) or not found:
            continue
        lines.append(f"  {title}")
        lines.append("    " + "   ".join(f"{label} {ours:.3f}s [{theirs:.3f}]" for label, ours, theirs in found))
        (_, sequential, their_sequential), *others = found
        if others and entries[0][1] == "sequential":
            speedups = "  ".join(
                f"{label} {sequential / ours:.1f}x [{their_sequential / theirs:.1f}x]" for label, ours, theirs in others
            )
            lines.append(f"    speedup vs sequential: {speedups}")
    return "\n".join(lines)


def _speedups(rows: Sequence[Row]) -> str:
    """The ``freethreading`` rows as speeds: threaded against the raw pool, and each against sequential."""
    ours = [row for row in rows if row.scenario == "freethreading"]
    (threaded,) = (r for r in ours if r.variant.startswith("cpu-map/threaded, ") and "None" not in r.variant)
    speedups = ", ".join(
        f"{r.variant.removeprefix('speedup/')} {1 / r.ratio:.2f}x" for r in ours if r.variant.startswith("speedup/")
    )
    return (
        f"freethreading: threaded runs at {1 / threaded.ratio:.2f}x the speed of {threaded.against} "
        f"(target: at least 0.95x); faster than the sequential map: {speedups}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios and print their rows; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from: {', '.join(SCENARIOS)}")
    names = list(dict.fromkeys(args.scenarios)) or [n for n in SCENARIOS if n not in OPT_IN]
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
            if not args.json:  # a scenario takes seconds to a minute: say which one runs
                print(f"running {name} ...", file=sys.stderr, flush=True)
            scenario_rows = SCENARIOS[name](settings)
            if args.json:
                for row in scenario_rows:
                    print(json.dumps({**row.as_dict(), **env, "quick": settings.quick}), flush=True)
            elif scenario_rows:  # each scenario's rows as soon as it finishes, not the whole table at the end
                print(_table(scenario_rows), flush=True)
            rows.extend(scenario_rows)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    if not args.json and "seed" in names:
        print(_notebook_tables(rows, settings))
    if not args.json and any(row.scenario == "freethreading" for row in rows):
        print(_speedups(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
