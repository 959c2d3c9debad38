"""`python -m benchmarks`: run every (workload, engine) cell, print the tables, write JSON.

Each cell runs in its own fresh subprocess with a time limit; a cell that fails, times out or
whose engine is missing is recorded with its message and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report, targets
from benchmarks.busy import spinning
from benchmarks.engines import BASELINE, BASELINE_ENV, DEFAULT_ENGINES, ENGINES
from benchmarks.machine import machine_info
from benchmarks.runner import REPO_ROOT, run_cell
from benchmarks.workloads import ALL_WORKLOADS, LOCK, LOCK_KINDS

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def _names(text: str | None, known: Sequence[str], what: str) -> list[str]:
    if text is None:
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--workloads", help=f"comma-separated, default all: {','.join(ALL_WORKLOADS)}"
    )
    parser.add_argument(
        "--engines", help=f"comma-separated, default all: {','.join(DEFAULT_ENGINES)}"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help=f"a folder holding another (built) smartpool package, e.g. src/ of an earlier "
        f"commit: adds the engine {BASELINE}, smartpool-auto imported from there, for an A/B "
        "of a change in one run (it is not ranked against the other engines)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed maps per cell (default 3)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every cell this many times, in turn, and pool the samples (default 1)",
    )
    parser.add_argument(
        "--focus-rounds",
        type=int,
        default=3,
        help="extra rounds, after the others, for the cells the targets turn on: auto, engines "
        "within 1.5x of the best, the targets' references (default 3; 0 for none)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="run with this many other processes spinning (pure-Python loops), as on a machine "
        "shared with other programs (default 0)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per cell before it is killed"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.focus_rounds < 0:
        parser.error("--focus-rounds must be at least 0")
    if args.busy < 0:
        parser.error("--busy must be at least 0")
    if args.baseline is not None and not (args.baseline / "smartpool" / "__init__.py").exists():
        parser.error(f"--baseline {args.baseline}: no smartpool package there")
    return args


def plan(workloads: Sequence[str], engines: Sequence[str]) -> list[tuple[str, str]]:
    """Cells in run order; the lock workload runs once per lock kind instead of per engine."""
    cells = []
    for workload in workloads:
        columns = LOCK_KINDS if workload == LOCK else engines
        cells += [(workload, column) for column in columns]
    return cells


def pool_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell's runs from every round as one record: samples pooled, medians over the pool.

    Rounds spread each cell's samples over the whole run, so a slow spell of the machine (other
    tenants on a VM) weighs on every engine alike instead of on the cells it happened to hit.
    A cell that failed in any round is reported with that round's error.
    """
    failed = [run for run in runs if run["status"] != "ok"]
    if failed:
        record = dict(failed[0])
    else:
        record = dict(runs[0])
        samples: dict[str, list[float]] = {}
        for run in runs:
            for metric, values in run["samples"].items():
                samples.setdefault(metric, []).extend(values)
        record["samples"] = samples
        record["medians"] = {k: statistics.median(v) for k, v in samples.items()}
        record["value"] = record["medians"].get(record["metric"])
    record["wall_s"] = sum(run["wall_s"] for run in runs)
    record["runs"] = len(runs)
    return record


def _progress(i: int, total: int, cell: dict[str, Any]) -> str:
    value = cell.get("value")
    shown = report.fmt_seconds(value) if value is not None else (cell.get("error") or "")
    shown = shown.strip().splitlines()[0] if shown.strip() else ""
    return (
        f"[{i:>3}/{total}] {cell['workload']:<12} {cell['engine']:<22} {cell['status']:<11} "
        f"{shown[:70]}  ({cell['wall_s']:.1f} s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with spinning(args.busy) as spinners:
        if spinners:
            print(f"{len(spinners)} busy processes spinning: {spinners}", file=sys.stderr)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    workloads = _names(args.workloads, ALL_WORKLOADS, "workloads")
    engines = list(DEFAULT_ENGINES)
    if args.engines is not None:
        engines = _names(args.engines, list(ENGINES), "engines")
    if args.baseline is not None:
        os.environ[BASELINE_ENV] = str(args.baseline.resolve())  # for the cells (runner)
        if BASELINE not in engines:
            engines.append(BASELINE)
    todo = plan(workloads, engines)
    started = time.perf_counter()
    machine = machine_info(REPO_ROOT)
    if machine["load_average_at_start"][0] > 0.5:
        print(
            f"warning: load average {machine['load_average_at_start'][0]:.2f} at start; "
            "other work on the machine skews the numbers",
            file=sys.stderr,
        )
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in todo}
    total = len(todo) * args.rounds
    step = 0

    def run_rounds(count: int, keys: list[tuple[str, str]]) -> None:
        nonlocal step
        for _ in range(count):
            for key in keys:
                cell = run_cell(*key, repeats=args.repeats, quick=args.quick, timeout=args.timeout)
                runs[key].append(cell)
                step += 1
                print(_progress(step, total, cell), file=sys.stderr, flush=True)

    def pooled() -> list[dict[str, Any]]:
        cells = [pool_rounds(runs[key]) for key in todo]
        report.add_ratios(cells)
        return cells

    run_rounds(args.rounds, todo)
    # Close verdicts get more samples: the contenders run more rounds, in turn, as before.
    focus = targets.contenders(pooled())
    total += len(focus) * args.focus_rounds
    run_rounds(args.focus_rounds, focus)
    cells = pooled()
    verdicts = targets.evaluate(cells)
    print(report.render(cells, workloads, engines, LOCK_KINDS))
    print(targets.render(verdicts))
    results = {
        "machine": machine,
        "config": {
            "workloads": workloads,
            "engines": engines,
            "repeats": args.repeats,
            "rounds": args.rounds,
            "focus_rounds": args.focus_rounds,
            "focused": [list(key) for key in focus],
            "quick": args.quick,
            "busy": args.busy,
            "baseline": None if args.baseline is None else str(args.baseline),
            "timeout_s": args.timeout,
            "total_wall_s": time.perf_counter() - started,
            "load_average_at_end": os.getloadavg(),
        },
        "cells": cells,
        "targets": targets.summary(verdicts),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.out}  (plot: python -m benchmarks.plot {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
