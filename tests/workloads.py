"""Importable workloads with clear characters, for the routing tests."""

from __future__ import annotations

import hashlib
import os
import threading
import time

_MEGABYTE = b"\x5a" * (1 << 20)


def spin(n: int) -> int:
    """Pure-Python arithmetic: holds the GIL."""
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1_000_003
    return total


def sha(megabytes: int) -> str:
    """hashlib over megabyte buffers: releases the GIL while hashing."""
    digest = hashlib.sha256()
    for _ in range(megabytes):
        digest.update(_MEGABYTE)
    return digest.hexdigest()


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
