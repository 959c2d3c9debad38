"""`python -m benchmarks.interpreters`: the interpreter backend against the process backend, A/B.

Python 3.14+ only (``backend="interpreter"``). For each workload, both backends run alternately,
round after round, cold (``smartpool.shutdown()`` first: the call starts its interpreters or
processes) and warm (the pool kept from the call before). Workloads:

* ``cpu_py``: 32 pure-Python loops of ~5 ms (CPU parallelism, little to move);
* ``tiny_calls``: 8 trivial items (the fixed cost of one call on a warm pool);
* ``big_items``: 16 items of 1 MiB of bytes, ``len`` of each (moving data).

It also times the parts the planner's estimates use: creating an interpreter and importing
smartpool's worker side there, and one chunk's round trip into a warm interpreter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.report import fmt_seconds


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _double(x: int) -> int:
    return 2 * x


WORKLOADS: dict[str, tuple[Callable[[Any], Any], Callable[[], list[Any]]]] = {
    "cpu_py": (spin, lambda: [60_000] * 32),
    "tiny_calls": (_double, lambda: list(range(8))),
    "big_items": (len, lambda: [bytes(1 << 20)] * 16),
}


def _timed(fn: Callable[[Any], Any], items: list[Any], backend: str, cold: bool) -> float:
    import smartpool

    if cold:
        smartpool.shutdown()
    start = time.perf_counter()
    smartpool.parallel_map(fn, items, backend=backend, max_workers=2)
    return time.perf_counter() - start


def parts(repeats: int) -> dict[str, float]:
    """Median start of one interpreter (with smartpool's worker side imported), and median
    round trip of a trivial call into a warm one."""
    from concurrent import interpreters  # type: ignore[import-not-found,unused-ignore]

    from smartpool._backends import interpreter_entry as interpreter

    starts, trips = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        interp = interpreters.create()
        interp.call(interpreter.loads_here, b"", b"")
        starts.append(time.perf_counter() - began)
        for _ in range(20):
            began = time.perf_counter()
            interp.call(interpreter.loads_here, b"", b"")
            trips.append(time.perf_counter() - began)
        interp.close()
    return {"start": statistics.median(starts), "round_trip": statistics.median(trips)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.interpreters", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds (default 5)")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 14):
        print("the interpreter backend needs Python 3.14+", file=sys.stderr)
        return 2
    import smartpool

    measured = parts(args.rounds)
    print(
        f"interpreter start (create + import): {fmt_seconds(measured['start'])}; "
        f"round trip of a call into a warm one: {fmt_seconds(measured['round_trip'])}"
    )
    print("| workload | pool | interpreter | process | ratio | ratio per round |")
    print("|---|---|---|---|---|---|")
    for name, (fn, make) in WORKLOADS.items():
        items = make()
        for cold in (True, False):
            samples: dict[str, list[float]] = {"interpreter": [], "process": []}
            for r in range(args.rounds):
                order = ["interpreter", "process"] if r % 2 == 0 else ["process", "interpreter"]
                for backend in order:
                    if not cold:
                        _timed(fn, items, backend, cold=False)  # warm this backend's pool
                    samples[backend].append(_timed(fn, items, backend, cold))
            a, b = statistics.median(samples["interpreter"]), statistics.median(samples["process"])
            per = [x / y for x, y in zip(samples["interpreter"], samples["process"], strict=True)]
            print(
                f"| {name} | {'cold' if cold else 'warm'} | {fmt_seconds(a)} | {fmt_seconds(b)} "
                f"| x{a / b:.2f} | x{min(per):.2f}-x{max(per):.2f} |",
                flush=True,
            )
    smartpool.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
