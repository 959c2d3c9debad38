"""A module that refuses to load in a subinterpreter, as NumPy and other single-phase extension
modules do (their ImportError says "does not support loading in subinterpreters")."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 14):
    from concurrent import interpreters  # type: ignore[import-not-found,unused-ignore]

    if interpreters.get_current().id != interpreters.get_main().id:
        raise ImportError(
            f"module {__name__} does not support loading in subinterpreters (a stand-in for an "
            "extension module such as NumPy)"
        )


def spin_here(n: int) -> int:
    """Pure-Python CPU work, in a module that only the main interpreter can import."""
    total = 0
    for i in range(n):
        total += i % 7
    return total
