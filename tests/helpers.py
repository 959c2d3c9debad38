"""Importable task functions for the tests (process workers load them by reference)."""

from __future__ import annotations

import os
import threading
import time


def double(x: int) -> int:
    return x * 2


def where(_: object) -> tuple[int, int]:
    """The process and thread that ran the item."""
    return os.getpid(), threading.get_ident()


def sleep_then_return(pair: tuple[int, float]) -> int:
    index, seconds = pair
    time.sleep(seconds)
    return index


class CustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def fail_on(bad: int):  # type: ignore[no-untyped-def]
    def check(x: int) -> int:
        if x == bad:
            raise CustomError(x, f"item {x} is bad")
        return x

    return check


def raise_chained(x: int) -> int:
    try:
        raise KeyError(f"inner {x}")
    except KeyError as inner:
        raise ValueError(f"outer {x}") from inner


def raise_in_handler(x: int) -> int:
    try:
        {}["missing"]
    except KeyError:
        raise RuntimeError("context kept")  # noqa: B904 - the implicit context is the point
    return x


class Unpicklable(Exception):
    """An exception holding a lock: it cannot be pickled back from a worker."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(x: int) -> int:
    raise Unpicklable(f"cannot travel {x}")


def return_lock(x: int) -> object:
    return threading.Lock() if x == 3 else x


def first_then_wait(pair: tuple[int, object]) -> int:
    """Item 0 returns at once; the others wait on the ``smartpool.Event`` they carry (or 60 s)."""
    index, event = pair
    if index:
        event.wait(60)  # type: ignore[attr-defined]
    return index


def wait_for(event: object) -> str:
    """Wait for a ``smartpool.Event`` (60 s at most) and say whether it was set."""
    return "set" if event.wait(60) else "timed out"  # type: ignore[attr-defined]


def log_run(item: tuple[str, int, float]) -> int:
    """Append ``index`` to the log file ``path`` (one line per execution), after ``seconds``."""
    path, index, seconds = item
    if seconds:
        time.sleep(seconds)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{index}\n".encode())
    finally:
        os.close(fd)
    return index


class ItemFailed(Exception):
    """Raised by :func:`log_run_or_fail` for the item told to fail."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def log_run_or_fail(item: tuple[str, int, float, bool]) -> int:
    """:func:`log_run`, then raise :class:`ItemFailed` if the item's flag says so."""
    path, index, seconds, fail = item
    log_run((path, index, seconds))
    if fail:
        raise ItemFailed(index)
    return index


def signal_then_wait(item: tuple[object, object, str]) -> str:
    """Set ``started``, note the run in the file ``path``, then wait for ``gate`` (60 s at most)."""
    started, gate, path = item
    started.set()  # type: ignore[attr-defined]
    log_run((path, 0, 0.0))
    return wait_for(gate)


def nested_sum(n: int) -> int:
    """A task that itself maps over a pool of the backend smartpool gives it."""
    import smartpool

    return sum(smartpool.parallel_map(double, range(n), backend="thread", max_workers=2))


def fail_first_attempt(item: tuple[str, int]) -> int:
    """Raise OSError the first time an item runs (a marker file remembers it), then return it."""
    folder, index = item
    try:
        os.close(os.open(os.path.join(folder, str(index)), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return index
    raise OSError(f"first attempt at {index}")


def recurse(depth: int) -> int:
    """Calls itself until Python's recursion limit stops it with a RecursionError."""
    return recurse(depth + 1)


def report_steps(item: tuple[int, int]) -> int:
    """Report ``steps`` steps (``smartpool.report_progress``), one at a time; return ``x``."""
    import smartpool

    x, steps = item
    for _ in range(steps):
        smartpool.report_progress()
    return x


def blas_library_threads(_: object) -> list[int]:
    """The thread counts of the BLAS libraries loaded here (OpenMP's count is per thread)."""
    import numpy
    import threadpoolctl

    numpy.ones(2) @ numpy.ones(2)  # the BLAS is loaded and used
    infos = threadpoolctl.threadpool_info()
    return sorted({int(info["num_threads"]) for info in infos if info["user_api"] == "blas"})


def blas_threads(_: object) -> list[int]:
    """The thread counts of the BLAS/OpenMP libraries loaded here (threadpoolctl's view)."""
    import numpy
    import threadpoolctl

    numpy.ones(2) @ numpy.ones(2)  # the BLAS is loaded and used
    return sorted({int(info["num_threads"]) for info in threadpoolctl.threadpool_info()})


def openmp_threads(_: object) -> list[int]:
    """The thread counts the OpenMP runtimes loaded here give this thread (a per-thread
    setting; scikit-learn loads one)."""
    import threadpoolctl

    infos = threadpoolctl.threadpool_info()
    return sorted({int(info["num_threads"]) for info in infos if info["user_api"] == "openmp"})


def nested_with_progress(n: int) -> int:
    """A nested call that asks for progress (drawn nowhere: it runs inside a worker)."""
    import smartpool

    return sum(smartpool.parallel_map(double, range(n), progress="log"))
