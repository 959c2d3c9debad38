"""`python -m benchmarks.paired`: engines timed map by map, in turn, for a close A/B.

The suite (`python -m benchmarks`) runs each cell in a fresh interpreter, a cell after another;
on a machine shared with other work, the load moves between two cells by more than a change
moves the times. Here every engine is one long-lived interpreter with its pool warm, and the
maps alternate: round after round, each engine maps the workload once, in an order that rotates
from round to round, so that the maps compared are seconds apart. Reported per workload: each
engine's median, and the median over the rounds of its time over the first engine's in the same
round. With ``--baseline DIR``, ``smartpool-auto-baseline`` is smartpool-auto imported from DIR
(as in the suite). Results are checked against the serial result once per engine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks.engines import BASELINE, BASELINE_ENV, ENGINES
from benchmarks.report import fmt_seconds
from benchmarks.runner import REPO_ROOT, cell_env
from benchmarks.workloads import MAP_WORKLOADS


def serve() -> None:
    """(In an engine's interpreter.) Map the workload named on each line of stdin; answer the
    seconds it took, as a JSON line."""
    engine = sys.argv[2]
    runner = ENGINES[engine].load()()
    checked: set[str] = set()
    try:
        for line in sys.stdin:
            workload = MAP_WORKLOADS[line.strip()]
            items = workload.items(quick=False)
            if workload.name not in checked:  # warm (untimed), and check the results once
                if runner.map(workload.fn, items) != workload.reference(items):
                    raise SystemExit(f"{engine}: wrong result on {workload.name}")
                checked.add(workload.name)
            start = time.perf_counter()
            runner.map(workload.fn, items)
            print(json.dumps(time.perf_counter() - start), flush=True)
    finally:
        runner.close()


class _Engine:
    def __init__(self, name: str) -> None:
        self.name = name
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.paired", "--serve", name],
            cwd=REPO_ROOT,
            env=cell_env(name),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def map(self, workload: str) -> float:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(workload + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} stopped (exit code {self._proc.wait()})")
        seconds: float = json.loads(line)
        return seconds

    def close(self) -> None:
        stdin: IO[str] | None = self._proc.stdin
        if stdin is not None:
            stdin.close()
        self._proc.wait()


def run(workloads: Sequence[str], engines: Sequence[str], rounds: int) -> dict[str, Any]:
    opened = [_Engine(name) for name in engines]
    times: dict[str, dict[str, list[float]]] = {w: {e: [] for e in engines} for w in workloads}
    loads = [os.getloadavg()[0]]
    try:
        for workload in workloads:
            for r in range(rounds):
                turn = opened[r % len(opened) :] + opened[: r % len(opened)]
                for engine in turn:
                    times[workload][engine.name].append(engine.map(workload))
                loads.append(os.getloadavg()[0])
                print(f"{workload} round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    finally:
        for engine in opened:
            engine.close()
    return {"times": times, "load_average": loads}


def render(results: dict[str, Any], engines: Sequence[str]) -> str:
    first = engines[0]
    lines = [
        f"| workload | {' | '.join(engines)} |",
        "|---|" + "---|" * len(engines),
    ]
    for workload, by_engine in results["times"].items():
        cells = []
        for engine in engines:
            samples = by_engine[engine]
            ratios = [t / f for t, f in zip(samples, by_engine[first], strict=True)]
            ratio = "" if engine == first else f" (x{statistics.median(ratios):.2f})"
            cells.append(f"{fmt_seconds(statistics.median(samples))}{ratio}")
        lines.append(f"| {workload} | {' | '.join(cells)} |")
    loads = results["load_average"]
    lines.append("")
    lines.append(f"load average (1 min) {min(loads):.1f} to {max(loads):.1f} during the run")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paired", description=__doc__)
    parser.add_argument("--workloads", required=True, help="comma-separated map workloads")
    parser.add_argument(
        "--engines",
        default=f"smartpool-auto,{BASELINE}",
        help="comma-separated; ratios are to the first (default: smartpool-auto and the baseline)",
    )
    parser.add_argument("--rounds", type=int, default=10, help="maps per engine (default 10)")
    parser.add_argument("--baseline", type=Path, help="as for python -m benchmarks")
    parser.add_argument("--out", type=Path, help="JSON results path")
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    engines = [e for e in args.engines.split(",") if e]
    unknown = [w for w in workloads if w not in MAP_WORKLOADS] + [
        e for e in engines if e not in ENGINES
    ]
    if unknown:
        parser.error(f"unknown workloads or engines: {', '.join(unknown)}")
    if args.baseline is not None:
        os.environ[BASELINE_ENV] = str(args.baseline.resolve())
    results = run(workloads, engines, args.rounds)
    print(render(results, engines))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    else:
        sys.exit(main())
