"""`python -m benchmarks.dask_bench`: smartpool's dask backend against raw ``Client.map`` and
joblib's dask backend, on one LocalCluster, for a CPU workload and for many tiny items.

All three engines use the same cluster and client (started by ``smartpool.using("local")``: 2
worker processes of 1 thread each by default, TLS between its parts), so only the way work is
handed to it differs: one task per item for ``Client.map``; batches chosen by joblib
(``batch_size="auto"``); chunks sized by smartpool. Every engine runs each workload once to warm
up (imports, the workers' child processes), then ``--repeat`` times; the median is reported, with
each engine's time as a multiple of smartpool's. Needs ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import smartpool
from benchmarks.workloads import cpu_py, double

#: workload -> (function, number of items)
WORKLOADS: dict[str, tuple[Callable[[int], int], int]] = {
    "cpu (15 ms items)": (cpu_py, 120),
    "tiny (x * 2)": (double, 10_000),
}


def run_smartpool(client: Any, fn: Callable[[int], int], items: list[int]) -> list[int]:
    return smartpool.parallel_map(fn, items, backend="dask")


def run_client_map(client: Any, fn: Callable[[int], int], items: list[int]) -> list[int]:
    futures = client.map(fn, items, pure=False)
    return list(client.gather(futures))


def run_joblib(client: Any, fn: Callable[[int], int], items: list[int]) -> list[int]:
    import joblib

    with joblib.parallel_config(backend="dask", client=client):
        return list(joblib.Parallel()(joblib.delayed(fn)(x) for x in items))


ENGINES: dict[str, Callable[[Any, Callable[[int], int], list[int]], list[int]]] = {
    "smartpool (dask)": run_smartpool,
    "Client.map": run_client_map,
    "joblib (dask)": run_joblib,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="dask worker processes")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per cell")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with smartpool.using("local", n_workers=args.workers) as client:
        print(f"cluster: {client.scheduler.address}, threads {sum(client.nthreads().values())}")
        for workload, (fn, n) in WORKLOADS.items():
            items = list(range(n))
            expected = [fn(x) for x in items[:3]]
            times: dict[str, float] = {}
            for engine, run in ENGINES.items():
                assert run(client, fn, items)[:3] == expected  # warm-up, and a check
                samples = []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    run(client, fn, items)
                    samples.append(time.perf_counter() - began)
                times[engine] = statistics.median(samples)
            base = times["smartpool (dask)"]
            print(f"\n{workload}, {n} items (median of {args.repeat})")
            for engine, seconds in times.items():
                print(f"  {engine:18} {seconds * 1e3:9.1f} ms   {seconds / base:6.2f}x smartpool")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
