"""Tasks for the joblib tests, in a module light to import in a worker process (no sklearn)."""

from __future__ import annotations

import os
import threading

import joblib


def where() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


def inner_where(_: int) -> set[tuple[int, str]]:
    """Where a nested ``Parallel`` inside a worker runs its tasks, and where the task runs."""
    inner = joblib.Parallel(n_jobs=2)(joblib.delayed(where)() for _ in range(4))
    return {*inner, where()}


def parse(text: str) -> int:
    return int(text)


def blas_threads() -> int:
    """The most threads a native pool (NumPy's BLAS) of this process may use."""
    import numpy  # noqa: F401  # its BLAS is the pool looked at
    from threadpoolctl import threadpool_info

    return max(int(pool["num_threads"]) for pool in threadpool_info())
