"""The lock workload: uncontended acquire/release pairs, timed in one thread."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.engines import EngineUnavailable

MIN_SAMPLE_S = 0.1  # grow the batch until one sample takes at least this long


def make_lock(kind: str) -> Any:
    if kind == "threading.Lock":
        import threading

        return threading.Lock()
    if kind == "multiprocessing.Lock":
        import multiprocessing

        return multiprocessing.Lock()
    if kind == "smartpool.Lock":
        try:
            import smartpool
        except Exception as exc:
            raise EngineUnavailable(f"cannot import smartpool: {exc}") from exc
        lock_type = getattr(smartpool, "Lock", None)
        if lock_type is None:
            raise EngineUnavailable("smartpool has no Lock yet")
        return lock_type()
    raise ValueError(f"unknown lock kind {kind!r}")


def _time_pairs(lock: Any, pairs: int) -> float:
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter()
    for _ in range(pairs):
        acquire()
        release()
    return time.perf_counter() - start


def _time_blocks(lock: Any, pairs: int) -> float:
    start = time.perf_counter()
    for _ in range(pairs):
        with lock:
            pass
    return time.perf_counter() - start


def seconds_per_pair(kind: str, repeats: int) -> dict[str, list[float]]:
    """`repeats` samples of the mean time of one acquire()+release() pair, called explicitly
    (``pair``) and as a ``with lock:`` block (``with``), the form users write."""
    lock = make_lock(kind)
    pairs = 1000
    while _time_pairs(lock, pairs) < MIN_SAMPLE_S:
        pairs *= 2
    return {
        "pair": [_time_pairs(lock, pairs) / pairs for _ in range(repeats)],
        "with": [_time_blocks(lock, pairs) / pairs for _ in range(repeats)],
    }
