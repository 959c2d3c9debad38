"""Process-wide settings: ``smartpool.configure(start_method=...)``, also read from the environment.

``SMARTPOOL_START_METHOD`` sets the default start method for worker processes.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, replace

START_METHODS = ("forkserver", "spawn", "fork")


@dataclass(frozen=True)
class Config:
    """Settings that apply to every call in this process."""

    #: How worker processes start. "forkserver" (default on POSIX): workers are forked from a
    #: single-threaded server process, which is safe even when the caller runs threads. "spawn":
    #: each worker is a fresh interpreter. "fork": workers are forked from the caller directly,
    #: fastest but unsafe when the caller has threads.
    start_method: str = "forkserver"


def _from_environment() -> Config:
    method = os.environ.get("SMARTPOOL_START_METHOD", "").strip().lower()
    if sys.platform == "win32":  # pragma: no cover - POSIX only for now
        return Config(start_method="spawn")
    if method and method not in START_METHODS:
        warnings.warn(
            f"SMARTPOOL_START_METHOD={method!r} is not one of "
            + ", ".join(repr(m) for m in START_METHODS)
            + "; using 'forkserver'",
            RuntimeWarning,
            stacklevel=2,
        )
        return Config()
    return Config(start_method=method) if method else Config()


_current = _from_environment()


def current() -> Config:
    return _current


def configure(*, start_method: str | None = None) -> Config:
    """Change process-wide settings; returns the new configuration.

    Example:
        >>> import smartpool
        >>> smartpool.configure(start_method="spawn").start_method
        'spawn'
        >>> _ = smartpool.configure(start_method="forkserver")
    """
    global _current
    if start_method is not None and start_method not in START_METHODS:
        raise ValueError(
            f"unknown start_method {start_method!r}; valid start methods are: "
            + ", ".join(repr(m) for m in START_METHODS)
        )
    if start_method is not None:
        _current = replace(_current, start_method=start_method)
    return _current
