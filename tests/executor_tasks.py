"""Importable functions and context variables for the Executor and asyncio tests."""

from __future__ import annotations

import contextvars
import os
import time
from pathlib import Path

import smartpool

#: Carried into workers by its home, ``tests.executor_tasks.request_id``.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")
#: Holds a value that cannot be pickled in one test: it stays behind.
handle: contextvars.ContextVar[object] = contextvars.ContextVar("handle", default="unset")


@smartpool.cpu_bound
def pid_cpu(_: object = None) -> int:
    return os.getpid()


@smartpool.io_bound
def pid_io(_: object = None) -> int:
    return os.getpid()


def pid(_: object = None) -> int:
    return os.getpid()


def read_request_id(_: object = None) -> tuple[str, int]:
    return request_id.get(), os.getpid()


def read_handle(_: object = None) -> object:
    value = handle.get()
    return value if isinstance(value, str) else "not a str"


def set_request_id(value: str) -> str:
    """Sets the variable in the worker's context; the caller's must not change."""
    request_id.set(value)
    return request_id.get()


def write_pid_then_sleep(path: str) -> None:
    """Announce this worker's pid in ``path``, then run far longer than any test waits."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def spin(n: int) -> int:
    """Pure-Python CPU work that holds the GIL."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def crash() -> None:
    os._exit(3)


@smartpool.cpu_bound
def write_pid_then_sleep_cpu(path: str) -> None:
    """``write_pid_then_sleep``, hinted CPU-bound: submitted, it runs in a worker process."""
    write_pid_then_sleep(path)
