"""How smartpool decides: explain() and classify() on three kinds of work."""

from __future__ import annotations

import hashlib
import time

import smartpool as sp


def crunch(n: int) -> int:
    """Pure Python: holds the GIL, wants processes."""
    return sum(i * i for i in range(n))


_BLOCK = bytes(range(256)) * 4096  # 1 MiB, built once


def digest(megabytes: int) -> str:
    """hashlib over big buffers: releases the GIL while it hashes."""
    h = hashlib.sha256()
    for _ in range(megabytes):
        h.update(_BLOCK)
    return h.hexdigest()


def wait(seconds: float) -> float:
    """A stand-in for a network call: wants many threads."""
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":
    for fn, items in ((crunch, [200_000] * 32), (digest, [8] * 32), (wait, [0.01] * 200)):
        print(f"{fn.__name__}: {sp.classify(fn, items[0]).reason}")
        plan = sp.explain(fn, items)  # probes a few items; the real call reuses the decision
        print(f"  plan: {plan.backend} x{plan.max_workers}")
        for reason in plan.reasons:
            print(f"    - {reason}")
        began = time.perf_counter()
        sp.parallel_map(fn, items)
        print(f"  ran {len(items)} items in {time.perf_counter() - began:.2f}s\n")
