"""Task functions that misbehave on purpose, importable by worker processes.

Attempts and pids are recorded in files, so a test can see what happened in any worker process
without relying on timing.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CRASHES = ("exit", "sigkill", "segfault")


def count_attempt(directory: str, item: object) -> int:
    """Record one attempt at ``item``; return how many attempts were recorded so far."""
    path = Path(directory, f"attempt-{item}")
    with path.open("a") as file:
        file.write(f"{os.getpid()}\n")
    return len(path.read_text().split())


def attempts(directory: str, item: object) -> int:
    path = Path(directory, f"attempt-{item}")
    return len(path.read_text().split()) if path.exists() else 0


def crash(how: str) -> None:
    """End the current process the way a buggy extension or the OOM killer would."""
    sys.stderr.flush()
    if how == "exit":
        os._exit(3)
    if how == "sigkill":  # what the out-of-memory killer sends
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segfault":
        ctypes.string_at(0)
    raise ValueError(f"unknown crash {how!r}")


@dataclass(frozen=True)
class CrashOn:
    """Doubles items; crashes the worker at ``bad`` for its first ``times`` attempts."""

    bad: int
    how: str
    directory: str = ""
    times: int = 1_000_000

    def __call__(self, x: int) -> int:
        if x == self.bad:
            attempt = count_attempt(self.directory, x) if self.directory else 1
            if attempt <= self.times:
                crash(self.how)
        return 2 * x


@dataclass(frozen=True)
class HangOn:
    """Returns items; at ``bad`` records its pid and sleeps ``seconds`` on its first attempts."""

    bad: int
    directory: str
    times: int = 1_000_000
    seconds: float = 1000.0

    def __call__(self, x: int) -> int:
        if x == self.bad:
            Path(self.directory, f"pid-{os.getpid()}").touch()
            if count_attempt(self.directory, x) <= self.times:
                time.sleep(self.seconds)  # the work that overruns, not synchronisation
        return x


@dataclass(frozen=True)
class Flaky:
    """Raises ``error`` on the first ``failures`` attempts at each item, then returns 10 x item."""

    directory: str
    failures: int
    error: type[BaseException] = ValueError

    def __call__(self, x: int) -> int:
        attempt = count_attempt(self.directory, x)
        if attempt <= self.failures:
            raise self.error(f"attempt {attempt} at item {x}")
        return 10 * x


_first_draws: tuple[int, int] | None = None


def first_draws(_: object) -> tuple[int, tuple[int, int]]:
    """This worker's pid and the first random numbers it drew (``random``, then NumPy)."""
    global _first_draws
    if _first_draws is None:
        import numpy

        _first_draws = (random.getrandbits(64), int(numpy.random.randint(0, 2**62)))
    return os.getpid(), _first_draws


def draw_together(args: tuple[object, object, int]) -> tuple[int, tuple[int, int]]:
    """``first_draws``, once ``n`` tasks are all running: each on a worker of its own."""
    counter, everyone, n = args
    if counter.add(1) >= n:  # type: ignore[attr-defined]
        everyone.set()  # type: ignore[attr-defined]
    if not everyone.wait(60):  # type: ignore[attr-defined]
        raise TimeoutError("the other tasks never started")
    return first_draws(None)


def big_bytes(megabytes: int) -> bytes:
    return b"x" * (megabytes * 1024 * 1024)
