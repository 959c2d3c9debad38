"""Per-thread clocks that tell computing, waiting and being crowded out apart.

Wall time minus CPU time is not all waiting: on a busy machine a runnable thread also loses time
queued for a core. Linux reports that queueing per thread (``/proc/thread-self/schedstat``), so
``blocked = wall - cpu - queued`` is the time the thread really waited (I/O, sleep, a lock, the
GIL). Elsewhere ``queued`` reads as zero. (The stats files themselves are read in ``_work``,
where every chunk reports its own queued time.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .._work.schedstat import own_stats
from .._work.schedstat import queued_seconds as queued_seconds


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
    """Readings for the thread that creates it (the thread's stats file stays open)."""

    def __init__(self) -> None:
        self._fd = own_stats()

    def read(self) -> Reading:
        return Reading(time.perf_counter(), time.thread_time(), self.queued())

    def queued(self) -> float:
        """Seconds this thread has spent runnable but waiting for a core, so far."""
        return queued_seconds(self._fd)

    @property
    def stats_fd(self) -> int | None:
        """The thread's open stats file: another thread may read it with ``queued_seconds``."""
        return self._fd

    def close(self) -> None:
        """Stop reading queued time (the file itself belongs to the thread)."""
        self._fd = None

    def __enter__(self) -> ThreadClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CpuClock:
    """The CPU time a thread used since this was made, readable from any thread."""

    def __init__(self, clock_id: int) -> None:
        self._clock_id = clock_id
        self._cpu = time.clock_gettime(clock_id)
        self._wall = time.perf_counter()

    @classmethod
    def of_this_thread(cls) -> CpuClock | None:
        try:
            return cls(time.pthread_getcpuclockid(threading.get_ident()))
        except (AttributeError, OSError):  # pragma: no cover - not on this platform
            return None

    def fraction(self, queued: float = 0.0) -> float:
        """CPU time / wall time since made, less ``queued``, the thread's time queued for a
        core meanwhile (neither computing nor waiting)."""
        try:
            cpu = time.clock_gettime(self._clock_id) - self._cpu
        except OSError:  # pragma: no cover - the thread is gone
            return 0.0
        return cpu / max(time.perf_counter() - self._wall - queued, 1e-9)
