"""Every routing decision: hint + options + environment -> a :class:`Plan`.

Backends never decide anything; the engine only executes a plan. Automatic classification by a
probe plugs in here, in :func:`make_plan`, without touching either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import _context

BackendName = Literal["serial", "thread", "process"]
Hint = Literal["cpu", "io"]
BACKENDS: tuple[str, ...] = ("auto", "serial", "thread", "process")

#: Threads for I/O-bound work when neither the user nor a measurement says otherwise.
DEFAULT_IO_WORKERS = 32
#: Work per chunk the adaptive sizer aims at, per backend: long enough to hide dispatch cost.
TARGET_CHUNK_SECONDS: dict[str, float] = {"serial": 0.002, "thread": 0.002, "process": 0.02}


@dataclass(frozen=True)
class Options:
    """What the caller asked for; validated on construction so bad input fails before any work."""

    backend: str = "auto"
    max_workers: int | None = None
    chunksize: int | None = None
    ordered: bool = True
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(
                f"unknown backend {self.backend!r}; valid backends are: "
                + ", ".join(repr(b) for b in BACKENDS)
            )
        for name in ("max_workers", "chunksize"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.timeout is not None:
            if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)):
                raise TypeError(f"timeout must be a number of seconds, got {self.timeout!r}")
            if not self.timeout > 0:
                raise ValueError(
                    f"timeout must be a positive number of seconds, got {self.timeout}"
                )
            if self.backend == "serial":
                raise ValueError(
                    "timeout= cannot be enforced on the serial backend (a running call cannot be "
                    "interrupted); use backend='thread' or 'process'"
                )
            if self.chunksize is not None and self.chunksize > 1:
                raise ValueError(
                    "timeout= applies to each item, so it needs chunksize=1 (or None); "
                    f"got chunksize={self.chunksize}"
                )
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {self.retries!r}")
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            object.__setattr__(self, "retry_on", (retry_on,))
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on):
            raise TypeError(f"retry_on must be exception types, got {self.retry_on!r}")

    def merged(self, **overrides: Any) -> Options:
        """These options with the given keywords (as passed by a caller) taking precedence."""
        return replace(self, **overrides)


@dataclass(frozen=True)
class Plan:
    """How a call will run: the backend, how many workers, how items are chunked, and why."""

    backend: BackendName
    max_workers: int
    chunksize: int | None
    reasons: tuple[str, ...] = field(default=())

    @property
    def target_chunk_seconds(self) -> float:
        return TARGET_CHUNK_SECONDS[self.backend]

    def __str__(self) -> str:
        chunks = "adaptive" if self.chunksize is None else str(self.chunksize)
        why = "; ".join(self.reasons)
        return f"{self.backend} x{self.max_workers} (chunksize {chunks}): {why}"


def cpu_count() -> int:
    """Cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_plan(
    fn: Callable[..., Any], options: Options, *, hint: Hint | None, n_items: int | None
) -> Plan:
    """Decide backend, workers and chunking for running ``fn`` over ``n_items`` items."""
    reasons: list[str] = []
    backend: BackendName
    if options.backend != "auto":
        backend = options.backend  # type: ignore[assignment]
        reasons.append(f"backend={backend!r} was requested")
    elif _context.in_worker():
        backend = "serial"
        reasons.append("nested call inside a smartpool worker runs in-process")
    elif n_items is not None and n_items <= 1:
        backend = "serial"
        reasons.append(f"{n_items} item(s): nothing to parallelise")
    elif hint == "io":
        backend = "thread"
        reasons.append("hinted I/O-bound: threads overlap the waits")
    elif hint == "cpu":
        if cpu_count() > 1:
            backend = "process"
            reasons.append(f"hinted CPU-bound: processes use the {cpu_count()} cores")
        else:
            backend = "serial"
            reasons.append("hinted CPU-bound but only one core is usable")
    else:
        backend = "thread"
        reasons.append("no hint: threads are the safe default (nothing needs pickling)")
    if options.timeout is not None and backend == "serial" and options.backend == "auto":
        backend = "thread"
        reasons.append("timeout= needs an interruptible backend")

    workers = _workers(backend, options.max_workers, hint)
    chunksize = options.chunksize
    if options.timeout is not None:
        chunksize = 1
    return Plan(backend, workers, chunksize, tuple(reasons))


def _workers(backend: BackendName, requested: int | None, hint: Hint | None) -> int:
    if backend == "serial":
        return 1
    if requested is not None:
        return requested
    if backend == "thread" and hint != "cpu":
        return DEFAULT_IO_WORKERS
    return cpu_count()
