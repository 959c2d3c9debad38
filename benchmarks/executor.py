"""`python -m benchmarks.executor`: smartpool.Executor against the stdlib executors, and amap.

Measured in one run, on warm pools, with the same number of workers on both sides:

* latency: submit one trivial call and wait for its result, one call at a time (median);
* throughput: submit 10,000 trivial calls, then wait for all of them (best of the rounds);
* asyncio: ``await smartpool.amap(fn, items)`` over 1,000 trivial items against
  ``asyncio.gather`` over ``loop.run_in_executor`` (the default executor), best of the rounds.

Each pair is measured in alternation, round after round, so that a machine busy with something
else slows both sides alike. Ratios are smartpool's time over the stdlib's: below 1 is faster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from functools import partial

import smartpool

LATENCY_CALLS = 1000
THROUGHPUT_CALLS = 10_000
AMAP_ITEMS = 1000


def trivial(x: int) -> int:
    return x


def latency(executor: Executor, calls: int) -> float:
    """Median seconds from submit to result of one call."""
    times = []
    for n in range(calls):
        began = time.perf_counter()
        executor.submit(trivial, n).result()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def throughput(executor: Executor, calls: int) -> float:
    """Seconds to submit ``calls`` calls and have every result."""
    began = time.perf_counter()
    futures = [executor.submit(trivial, n) for n in range(calls)]
    wait(futures)
    return time.perf_counter() - began


async def _gather(items: int) -> list[int]:
    loop = asyncio.get_running_loop()
    return await asyncio.gather(*(loop.run_in_executor(None, trivial, n) for n in range(items)))


def amap_seconds(items: int) -> float:
    began = time.perf_counter()
    asyncio.run(smartpool.amap(trivial, range(items)))
    return time.perf_counter() - began


def gather_seconds(items: int) -> float:
    began = time.perf_counter()
    asyncio.run(_gather(items))
    return time.perf_counter() - began


def best_of(
    rounds: int, ours: Callable[[], float], theirs: Callable[[], float]
) -> tuple[float, float]:
    """(smartpool, stdlib): each side's best, measured in alternation."""
    mine, stdlib = [], []
    for _ in range(rounds):
        mine.append(ours())
        stdlib.append(theirs())
    return min(mine), min(stdlib)


def measure(rounds: int) -> list[tuple[str, float, float]]:
    threads = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default
    processes = os.cpu_count() or 1
    rows: list[tuple[str, float, float]] = []
    pairs = [
        ("threads", smartpool.Executor(threads, backend="thread"), ThreadPoolExecutor(threads)),
        (
            "processes",
            smartpool.Executor(processes, backend="process"),
            ProcessPoolExecutor(processes),
        ),
    ]
    for kind, ours, theirs in pairs:
        with ours, theirs:
            throughput(ours, 200), throughput(theirs, 200)  # start the workers
            lat = best_of(
                rounds,
                partial(latency, ours, LATENCY_CALLS),
                partial(latency, theirs, LATENCY_CALLS),
            )
            rows.append((f"latency of one call, {kind}", *lat))
            tput = best_of(
                rounds,
                partial(throughput, ours, THROUGHPUT_CALLS),
                partial(throughput, theirs, THROUGHPUT_CALLS),
            )
            rows.append((f"{THROUGHPUT_CALLS:,} submits, {kind}", *tput))
    amap_seconds(10), gather_seconds(10)
    ours_amap, gather = partial(amap_seconds, AMAP_ITEMS), partial(gather_seconds, AMAP_ITEMS)
    rows.append((f"amap of {AMAP_ITEMS:,} items (vs gather)", *best_of(rounds, ours_amap, gather)))
    return rows


def report(rows: Sequence[tuple[str, float, float]]) -> str:
    lines = [f"{'measure':<40} {'smartpool':>12} {'stdlib':>12} {'ratio':>7}"]
    for name, ours, theirs in rows:
        lines.append(f"{name:<40} {_fmt(ours):>12} {_fmt(theirs):>12} {ours / theirs:>6.2f}x")
    return "\n".join(lines)


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.executor", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measure (default 5)")
    args = parser.parse_args(argv)
    version = sys.version.split()[0]
    print(f"python {version}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(report(measure(args.rounds)))


if __name__ == "__main__":
    main()
