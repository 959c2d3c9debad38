"""Functions for the tests of ``smartpool.testing``, importable by worker processes."""

from __future__ import annotations

import os
import random
import threading

COUNTER = 0
TOTAL = [0]
CACHE: dict[int, int] = {}


def square(x: int) -> int:
    return x * x


def pid(_: object) -> int:
    return os.getpid()


def pid_from_six(x: int) -> int:
    """The item itself below 6, else the id of the process that ran it."""
    return x if x < 6 else os.getpid()


def draw(_: object) -> float:
    return random.random()


def bump(x: int) -> int:
    """A read-modify-write of a module global (the result itself is fine)."""
    global COUNTER
    value = COUNTER
    COUNTER = value + 1
    return x


def running_total(x: int) -> int:
    TOTAL[0] += x
    return TOTAL[0]


def cached_square(x: int) -> int:
    """Memoised in a module-level dict: filled once, then only read."""
    if x not in CACHE:
        CACHE[x] = x * x
    return CACHE[x]


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three", x)
    return x


def fail_on_three_with_pid(x: int) -> int:
    """Raises on 3 like ``fail_on_three``, but with the id of the process in its args."""
    if x == 3:
        raise ValueError("three", os.getpid())
    return x


def closure_over_lock():  # type: ignore[no-untyped-def]
    lock = threading.Lock()

    def guarded(x: int) -> int:
        with lock:
            return x

    return guarded


class Row:
    """An item that cannot be pickled: it holds a lock."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.lock = threading.Lock()
