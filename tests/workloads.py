"""Importable workloads with clear characters, for the routing tests."""

from __future__ import annotations

import os
import threading
import time

# The demo's workloads: pure-Python arithmetic (holds the GIL) and sha256 over megabyte buffers
# (releases it while hashing).
from smartpool._demo_workloads import cpu_python as spin
from smartpool._demo_workloads import hash_blocks as sha

#: Something ``smartpool advise`` must refuse to call.
NOT_A_FUNCTION = 42

__all__ = ["NOT_A_FUNCTION", "mark_once", "nap", "sha", "spin", "spin_on", "spin_where"]


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def spin_where(n: int) -> tuple[int, int]:
    """CPU work that reports where it ran."""
    spin(n)
    return os.getpid(), threading.get_ident()


def mark_once(args: tuple[str, int]) -> int:
    """CPU work that claims a file per item: a second run of the same item raises."""
    directory, index = args
    fd = os.open(os.path.join(directory, f"{index}.done"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    spin(30_000)
    return index


def spin_on(cpu: int, n: int) -> int:
    """Pure-Python work run on core ``cpu`` only (the thread is moved back where it may run
    afterwards): beside programs kept on that core, the thread spends most of a call queued."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # 0: the calling thread
    try:
        return spin(n)
    finally:
        os.sched_setaffinity(0, allowed)
