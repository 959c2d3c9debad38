"""Functions the dask tests run on the cluster (importable by the cluster's worker processes)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import smartpool


def square(x: int) -> int:
    return x * x


def where(x: int) -> tuple[int, int]:
    return x, os.getpid()


@smartpool.cpu_bound
def crunch(n: int) -> int:
    return sum(i * i for i in range(n))


@smartpool.cpu_bound
def crunch_where(n: int) -> tuple[int, int]:
    return crunch(n), os.getpid()


def slower_first(x: int) -> int:
    """Early items take longest: completion order is the reverse of input order."""
    time.sleep(0.02 * (10 - x))
    return x


def fail_at_five(x: int) -> int:
    if x == 5:
        raise ValueError(f"item {x} is bad")
    return x


class Unpicklable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.handle = lambda: None  # an attribute pickle cannot take

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("cannot pickle this error")


def raise_unpicklable(x: int) -> int:
    raise Unpicklable(f"unpicklable error for {x}")


def record_pid_then_sleep(item: tuple[str, int]) -> int:
    """Item 0 returns at once; the others write their pid to a file and sleep for a minute."""
    folder, x = item
    if x == 0:
        return 0
    Path(folder, f"{x}.pid").write_text(str(os.getpid()))
    time.sleep(60)
    return x


def wait_for(release: smartpool.Event, x: int) -> int:
    assert release.wait(60), "never released"
    return x


@smartpool.io_bound
def meet(item: tuple[smartpool.Value, smartpool.Event, int, int]) -> tuple[int, int]:
    """Wait until ``n`` items arrived (each counts itself in ``arrived``); the process's pid."""
    arrived, everyone, n, x = item
    if arrived.add(1) == n:
        everyone.set()
    assert everyone.wait(60), "the items never all ran at once"
    return x, os.getpid()


#: Data that only the cluster's workers have (set there by install_data).
WORKER_DATA: str | None = None


def install_data(data: str | None) -> None:
    global WORKER_DATA
    WORKER_DATA = data


def read_worker_data(x: int) -> tuple[int, str, int]:
    """Waiting work that needs the workers' data."""
    if WORKER_DATA is None:
        raise KeyError(f"no data here (process {os.getpid()})")
    time.sleep(0.01)
    return x, WORKER_DATA, os.getpid()


def touch(folder: str, name: str) -> bool:
    Path(folder, name).touch()
    return True


def exit_at_three(x: int) -> int:
    if x == 3:
        os._exit(7)
    return x


def fail_twice(item: tuple[str, int]) -> int:
    """Fails the first two attempts at each item (attempts counted in a file per item)."""
    folder, x = item
    log = Path(folder, f"{x}.attempts")
    with log.open("a") as f:
        f.write(".")
    if len(log.read_text()) <= 2:
        raise ConnectionError(f"attempt {len(log.read_text())} at item {x} failed")
    return x


def fail_with_key_error(item: tuple[str, int]) -> int:
    folder, x = item
    with Path(folder, f"{x}.attempts").open("a") as f:
        f.write(".")
    raise KeyError(x)


def nested_backend(x: int) -> tuple[int, str]:
    """A call made inside a task: it runs inline, even when it asks for the cluster."""
    values = smartpool.parallel_map(square, range(x), backend="dask")
    return sum(values), smartpool.explain(square, range(3), backend="dask").backend


def count_into(item: tuple[smartpool.Value, int]) -> int:
    counter, x = item
    counter.add(1)
    return x


@smartpool.io_bound
def count_into_io(item: tuple[smartpool.Value, int]) -> int:
    return count_into(item)


def add_under_locks(item: tuple[Any, Any, Any, Any, int]) -> tuple[int, int]:
    """Read-modify-write a shared total under a lock (an RLock taken twice, a semaphore held)."""
    lock, rlock, gate, total, x = item
    with gate, rlock, rlock, lock:
        total.set(total.get() + 1)
    return x, os.getpid()


def set_event(event: smartpool.Event) -> bool:
    event.set()
    return event.is_set()


def checksum(item: tuple[Any, int]) -> tuple[int, float]:
    data, x = item
    return x, float(data[::4096].sum())


def kill_own_dask_worker_at_two(item: tuple[frozenset[int], str, int]) -> int:
    """Item 2 counts its attempts in a file, kills (SIGKILL) the dask worker it runs under,
    found among the ancestors of this child process, then waits to be stopped."""
    dask_workers, folder, x = item
    if x == 2:
        with Path(folder, "attempts").open("a") as f:
            f.write(".")
        os.kill(ancestor_in(os.getpid(), dask_workers), signal.SIGKILL)
        time.sleep(60)
    return x


def ancestor_in(pid: int, candidates: frozenset[int]) -> int:
    """The nearest ancestor of process ``pid`` among ``candidates`` (a child's dask worker)."""
    while pid not in candidates:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        assert pid > 1, "no ancestor among the candidates"
    return pid
