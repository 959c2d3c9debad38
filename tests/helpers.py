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


def recurse(depth: int) -> int:
    """Calls itself until Python's recursion limit stops it with a RecursionError."""
    return recurse(depth + 1)
