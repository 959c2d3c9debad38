"""What ``progress=`` costs a call that does not show it: ``tiny`` with and without its hooks.

``python -m benchmarks.progress_cost [--rounds 30] [--repeats 7] [--items 200000]``

Two variants of the same source, each run in fresh subprocesses, in turn: ``off`` is smartpool
as it is, progress off (the default); ``without`` is the same source with the progress hooks cut
out as it is imported: every ``if self._progress is not None:`` block of the run, and the line
of ``_api.start`` that adds the progress observers. So the two differ by exactly what the
progress machinery adds to a call that shows none, and nothing else (same commit, interpreter,
machine and minute). Each subprocess warms up, then times ``repeats`` calls of
``parallel_map(x * 2, range(items))`` (backend auto, the decision forgotten before each call,
as the suite's ``tiny`` cell does) and reports their median wall time and median CPU time (the
process's, all threads: on a loaded machine it moves less than the wall time, which counts the
time spent waiting for a core); the rounds' medians are pooled, and the ratio of each round's
pair (run back to back) shows the difference without the drift of a shared machine. The load
average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from pathlib import Path
from types import CodeType, ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The progress hooks cut out of each module: how many there must be (so that a change to the
#: source that moved them fails here, rather than comparing a variant with itself).
HOOKS = {"smartpool._run.run": 8, "smartpool._api": 1}


class _WithoutProgress(ast.NodeTransformer):
    """Removes the progress hooks: ``if self._progress is not None:`` blocks, and the statement
    adding the progress observers."""

    def __init__(self) -> None:
        self.removed = 0

    def _cut(self, node: ast.stmt) -> bool:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "self._progress is not None":
            return True
        return isinstance(node, ast.Assign) and "progress.observers_for" in ast.unparse(node)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(statements, list) and statements and isinstance(statements[0], ast.stmt):
                kept = [s for s in statements if not self._cut(s)]
                self.removed += len(statements) - len(kept)
                setattr(node, field, kept or [ast.Pass()])
        return super().generic_visit(node)


class _Loader(SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:  # never the cached bytecode of the original
        tree = ast.parse(self.get_data(self.path), self.path)
        cutter = _WithoutProgress()
        tree = ast.fix_missing_locations(cutter.visit(tree))
        if cutter.removed != HOOKS[fullname]:
            raise RuntimeError(
                f"{fullname}: cut {cutter.removed} progress hooks, expected {HOOKS[fullname]}"
            )
        return compile(tree, self.path, "exec")


class _Finder(MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in HOOKS:
            return None
        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        spec.loader = _Loader(fullname, spec.origin)
        return spec


def _cell(variant: str, items: int, repeats: int) -> dict[str, float]:
    """In a subprocess: the median wall and CPU seconds of ``repeats`` calls."""
    if variant == "without":
        sys.meta_path.insert(0, _Finder())
    import smartpool
    from benchmarks.workloads import double

    data = list(range(items))
    for _ in range(2):  # warm-up: imports, pools, the caches of the first call
        smartpool.forget()
        smartpool.parallel_map(double, data)
    wall, cpu = [], []
    for _ in range(repeats):
        smartpool.forget()
        began, began_cpu = time.perf_counter(), time.process_time()
        smartpool.parallel_map(double, data)
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    smartpool.shutdown()
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def _run(variant: str, items: int, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "benchmarks.progress_cost", "--cell", variant]
    command += ["--items", str(items), "--repeats", str(repeats)]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True, timeout=600
    )
    medians: dict[str, float] = json.loads(done.stdout)
    return medians


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.progress_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--cell", choices=("off", "without"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell is not None:
        print(json.dumps(_cell(args.cell, args.items, args.repeats)))
        return
    load_start = os.getloadavg()
    samples: dict[tuple[str, str], list[float]] = {}
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    for round_ in range(args.rounds):
        order = ("off", "without") if round_ % 2 == 0 else ("without", "off")
        pair = {variant: _run(variant, args.items, args.repeats) for variant in order}
        for variant, medians in pair.items():
            for clock, seconds in medians.items():
                samples.setdefault((clock, variant), []).append(seconds)
        for clock in ratios:
            ratios[clock].append(pair["off"][clock] / pair["without"][clock])
    load_end = os.getloadavg()
    print(
        f"tiny: parallel_map(x * 2, {args.items:,} ints), backend auto, {args.rounds} rounds x "
        f"{args.repeats} calls; load average {load_start[0]:.1f} / {load_start[1]:.1f} / "
        f"{load_start[2]:.1f} at the start, {load_end[0]:.1f} / {load_end[1]:.1f} / "
        f"{load_end[2]:.1f} at the end, on {os.cpu_count()} CPUs"
    )
    for (clock, variant), values in sorted(samples.items()):
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"{clock:4s} {variant:8s} median {_ms(statistics.median(values))}  (quartiles "
            f"{_ms(quartiles[0])} - {_ms(quartiles[2])}, min {_ms(min(values))}, "
            f"max {_ms(max(values))})"
        )
    for clock, values in ratios.items():
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"{clock:4s} off / without, per round: median x{statistics.median(values):.3f} "
            f"(quartiles x{quartiles[0]:.3f} - x{quartiles[2]:.3f})"
        )


if __name__ == "__main__":
    main()
