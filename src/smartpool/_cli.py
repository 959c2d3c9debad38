"""The ``smartpool`` command: ``smartpool demo`` measures real workloads on every backend."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import _api, _demo_workloads
from ._planner import cpu_count

BACKENDS = ("serial", "thread", "process")


def _workloads(quick: bool) -> list[tuple[str, Callable[[Any], Any], list[Any]]]:
    scale = 1 if quick else 4
    return [
        ("pure-Python CPU", _demo_workloads.cpu_python, [150_000 * scale] * 16),
        ("sha256 (releases GIL)", _demo_workloads.hash_blocks, [4 * scale] * 16),
        ("I/O waits", _demo_workloads.wait_io, [0.02] * (25 * scale)),
    ]


def _timed(fn: Callable[[Any], Any], items: list[Any], backend: str) -> float:
    began = time.perf_counter()
    _api.parallel_map(fn, items, backend=backend)
    return time.perf_counter() - began


def demo(quick: bool = False, out: Any = None) -> list[dict[str, Any]]:
    """Run each workload on each backend; print a table; return the rows."""
    out = out or sys.stdout
    print(f"smartpool demo on {cpu_count()} core(s); times are wall-clock seconds.\n", file=out)
    header = f"{'workload':<24}" + "".join(f"{b:>16}" for b in BACKENDS)
    print(header + f"{'best':>10}{'smartpool picks':>18}", file=out)
    print("-" * (len(header) + 28), file=out)
    rows = []
    for name, fn, items in _workloads(quick):
        for backend in ("thread", "process"):  # warm the pools: start-up is not the workload
            _api.parallel_map(fn, items[:2], backend=backend)
        times = {backend: _timed(fn, items, backend) for backend in BACKENDS}
        best = min(times, key=lambda b: times[b])
        plan = _api.explain(fn, items)
        cells = "".join(
            f"{times[b]:.3f}s ({times['serial'] / times[b]:.1f}x)".rjust(16) for b in BACKENDS
        )
        print(f"{name:<24}{cells}{best:>10}{plan.backend:>18}", file=out)
        rows.append({"workload": name, "seconds": times, "best": best, "picked": plan.backend})
    print(
        "\nNx = speed-up over serial. 'smartpool picks' is what backend='auto' would use.", file=out
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartpool", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="measure three workloads on every backend")
    demo_parser.add_argument("--quick", action="store_true", help="smaller workloads (seconds)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(quick=args.quick)
    return 0
