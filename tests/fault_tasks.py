"""Task functions that misbehave on purpose, importable by worker processes.

Attempts and pids are recorded in files, so a test can see what happened in any worker process
without relying on timing.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
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


#: How long a child started by :class:`ChildThenCrash` lives if nobody kills it.
HOLDER_SECONDS = 30
#: Ways for a task to leave a child behind that may hold the worker's socket: "fork" (os.fork),
#: "fork-holding" (os.fork with every socket of the worker duplicated first, so the child keeps
#: them whatever the worker does), "exec" (a program started with ``close_fds=False``).
HOLDERS = ("fork", "fork-holding", "exec")
_children: list[subprocess.Popen[bytes]] = []  # kept, or Popen would warn that they still run


def _socket_copies() -> list[int]:
    copies = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                copies.append(os.dup(int(name)))
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return copies


def start_holder(how: str, directory: str) -> None:
    """Start a child that outlives this task (``how`` in ``HOLDERS``), running when this returns;
    record its pid as ``child-<pid>`` in ``directory``."""
    if how == "exec":
        child = subprocess.Popen(["sleep", str(HOLDER_SECONDS)], close_fds=False)
        _children.append(child)  # Popen returns once the program runs
        pid = child.pid
    else:
        copies = _socket_copies() if how == "fork-holding" else []
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(ready_w, b"x")
            time.sleep(HOLDER_SECONDS)  # the long-lived child itself, not synchronisation
            os._exit(0)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        for fd in copies:
            os.close(fd)
    Path(directory, f"child-{pid}").touch()


@dataclass(frozen=True)
class ChildThenCrash:
    """Returns items; item 0 leaves a child behind (see ``start_holder``), item 1 exits (3)."""

    how: str
    directory: str

    def __call__(self, x: int) -> int:
        if x == 0:
            start_holder(self.how, self.directory)
        elif x == 1:
            crash("exit")
        return x


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
