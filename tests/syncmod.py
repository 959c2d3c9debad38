"""A module with shared objects created at import time, before any pool starts."""

from __future__ import annotations

import smartpool

LOCK = smartpool.Lock()
TOTAL = smartpool.Value(0)


def try_global_lock(timeout: float) -> bool:
    """Whether this worker could take the module-level lock within ``timeout`` seconds."""
    got = LOCK.acquire(timeout=timeout)
    if got:
        LOCK.release()
    return got


def add_to_global(n: int) -> int:
    for _ in range(n):
        TOTAL.add(1)
    return n
