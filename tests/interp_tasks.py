"""Functions the interpreter-backend tests run in subinterpreters: a module of their own, since
each interpreter imports the module a function lives in (and the test module imports one that
refuses subinterpreters)."""

from __future__ import annotations

from typing import Any


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i % 7
    return total


def where(x: int) -> tuple[int, int]:
    """``x * x`` and the id of the interpreter that computed it."""
    from concurrent import interpreters  # type: ignore[import-not-found,unused-ignore]

    return x * x, int(interpreters.get_current().id)


def accelerated() -> bool:
    from smartpool._sync import _lock

    return bool(_lock.ACCELERATED)


def wait_for(event: Any) -> bool:
    return bool(event.wait(30))
