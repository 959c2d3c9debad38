"""Per-thread clocks that tell computing, waiting and being crowded out apart.

Wall time minus CPU time is not all waiting: on a busy machine a runnable thread also loses time
queued for a core. Linux reports that queueing per thread (``/proc/thread-self/schedstat``), so
``blocked = wall - cpu - queued`` is the time the thread really waited (I/O, sleep, a lock, the
GIL). Elsewhere ``queued`` reads as zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

_SCHEDSTAT = "/proc/thread-self/schedstat"


@dataclass(frozen=True)
class Reading:
    wall: float
    cpu: float
    queued: float

    @classmethod
    def now(cls) -> Reading:
        return cls(time.perf_counter(), time.thread_time(), _queued())

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


def _queued() -> float:
    try:
        with open(_SCHEDSTAT, "rb") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
