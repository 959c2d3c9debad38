"""A first look: the same map on a CPU-bound and an I/O-bound function."""

from __future__ import annotations

import time

import smartpool as sp


@sp.cpu_bound
def crunch(n: int) -> int:
    return sum(i * i for i in range(n))


@sp.io_bound(max_workers=32)
def wait_a_bit(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":
    began = time.perf_counter()
    totals = crunch.map([200_000] * 16)
    print(f"crunch on processes: {len(totals)} results in {time.perf_counter() - began:.2f}s")

    began = time.perf_counter()
    waited = wait_a_bit.map([0.05] * 64)
    print(f"64 waits of 50 ms on threads: {time.perf_counter() - began:.2f}s (serial: 3.2s)")
