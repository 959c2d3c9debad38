"""The workloads ``smartpool demo`` measures; importable, so process workers load them by name."""

from __future__ import annotations

import hashlib
import time

_BLOCK = bytes(range(256)) * 4096  # 1 MiB


def cpu_python(n: int) -> int:
    """Pure-Python arithmetic: holds the GIL, so only processes run it in parallel."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


def hash_blocks(megabytes: int) -> str:
    """sha256 over large buffers: hashlib releases the GIL, so threads run it in parallel."""
    digest = hashlib.sha256()
    for _ in range(megabytes):
        digest.update(_BLOCK)
    return digest.hexdigest()


def wait_io(seconds: float) -> float:
    """A stand-in for a network call: the thread waits, the CPU is idle."""
    time.sleep(seconds)
    return seconds
