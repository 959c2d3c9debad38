"""Per-thread clocks that tell computing, waiting and being crowded out apart.

Wall time minus CPU time is not all waiting: on a busy machine a runnable thread also loses time
queued for a core. Linux reports that queueing per thread (``/proc/thread-self/schedstat``), so
``blocked = wall - cpu - queued`` is the time the thread really waited (I/O, sleep, a lock, the
GIL). Elsewhere ``queued`` reads as zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_SCHEDSTAT = "/proc/thread-self/schedstat"


@dataclass(frozen=True)
class Reading:
    wall: float
    cpu: float
    queued: float

    def until(self, later: Reading) -> Span:
        return Span(later.wall - self.wall, later.cpu - self.cpu, later.queued - self.queued)


@dataclass(frozen=True)
class Span:
    """Seconds between two readings on the same thread."""

    wall: float
    cpu: float
    queued: float

    @property
    def active(self) -> float:
        """Wall time less time spent queued for a core: what the thread would take on its own."""
        return max(self.cpu, self.wall - self.queued)

    @property
    def blocked(self) -> float:
        """Time the thread waited of its own accord (I/O, sleep, locks, the GIL)."""
        return max(0.0, self.wall - self.cpu - self.queued)


class ThreadClock:
    """Readings for the thread that opens it (keeps the stats file open between readings)."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(_SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> Reading:
        return Reading(time.perf_counter(), time.thread_time(), self.queued())

    def queued(self) -> float:
        """Seconds this thread has spent runnable but waiting for a core, so far."""
        if self._fd is None:
            return 0.0
        try:
            return int(os.pread(self._fd, 64, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ThreadClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
