"""Per-thread clocks that tell computing, waiting and being crowded out apart.

Wall time minus CPU time is not all waiting: on a busy machine a runnable thread also loses time
queued for a core. Linux reports that queueing per thread (``/proc/thread-self/schedstat``), so
``blocked = wall - cpu - queued`` is the time the thread really waited (I/O, sleep, a lock, the
GIL). Elsewhere ``queued`` reads as zero.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

_SCHEDSTAT = "/proc/thread-self/schedstat"


class _StatsFile:
    """One thread's open stats file: opening it costs ~40 us, so each thread keeps its own
    for as long as it lives (closed when the thread's locals go away)."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open(_SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self.fd = None

    def __del__(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass


_threads = threading.local()


def _stats_fd() -> int | None:
    stats: _StatsFile | None = getattr(_threads, "stats", None)
    if stats is None:
        stats = _threads.stats = _StatsFile()
    return stats.fd


def _forget_after_fork() -> None:
    # An inherited descriptor still names the parent's thread: the child opens its own.
    global _threads
    _threads = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)


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


def queued_seconds(fd: int | None) -> float:
    """Seconds the thread whose stats file ``fd`` is has spent queued for a core, so far."""
    if fd is None:
        return 0.0
    try:
        return int(os.pread(fd, 64, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class ThreadClock:
    """Readings for the thread that creates it (the thread's stats file stays open)."""

    def __init__(self) -> None:
        self._fd = _stats_fd()

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
