"""Per-thread clocks that tell computing, waiting and being crowded out apart.

Wall time minus CPU time is not all waiting: on a busy machine a runnable thread also loses time
queued for a core. Linux reports that queueing per thread (``/proc/thread-self/schedstat``), so
``blocked = wall - cpu - queued`` is the time the thread really waited (I/O, sleep, a lock, the
GIL). Elsewhere ``queued`` reads as zero. (The stats files themselves are read in ``_work``,
where every chunk reports its own queued time.)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from .._work.schedstat import STEAL_STEP, host_stolen_seconds, own_stats
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


class Overlap:
    """The most two threads computed at once, per second of a short window, read from their
    CPU clocks by a third thread (the GIL sampler) at each of its wake-ups.

    Code that holds the GIL never computes on two threads at the same moment, so in no window
    can the two clocks together advance faster than the wall clock: above ``PEAK_FREE`` in any
    window, both ran GIL-free code at once. On a crowded machine two threads seldom get cores
    at the same time, and an average over the whole pair hides the moments they did.
    """

    #: Windows shorter than this are not compared (the reads themselves take microseconds).
    MIN_WINDOW = 50e-6

    def __init__(self) -> None:
        self._clocks: list[int] = []
        self._last: tuple[float, float, float] | None = None
        self.peak = 0.0

    def watch(self) -> None:
        """Called by each of the two threads: watch the calling thread's CPU clock."""
        try:
            self._clocks.append(time.pthread_getcpuclockid(threading.get_ident()))
        except (AttributeError, OSError):  # pragma: no cover - not on this platform
            pass

    def read(self) -> None:
        """Read both clocks (from a third thread); the window since the last read counts."""
        if len(self._clocks) < 2:
            return
        first, second = self._clocks[0], self._clocks[1]
        try:
            began = time.perf_counter()
            a, b = time.clock_gettime(first), time.clock_gettime(second)
            ended = time.perf_counter()
        except OSError:  # pragma: no cover - a thread is gone
            self._clocks.clear()
            return
        if self._last is not None:
            # From before the last reads to after these: each clock's window lies within it.
            since, a0, b0 = self._last
            wall = ended - since
            if wall >= self.MIN_WINDOW:
                self.peak = max(self.peak, (a - a0 + b - b0) / wall)
        self._last = (began, a, b)


#: From this share of the machine's CPU time taken by the host (see ``HostSteal``), what was
#: timed meanwhile is in doubt.
HOST_STOLE = 0.05


class HostSteal:
    """How much of the machine's CPU time the host (hypervisor) took since this was made.

    A virtual machine's core taken away by its host stops the thread running on it, and the
    guest sees neither computing nor queueing: the time reads as a wait, for I/O or for the GIL.
    (sha256 looked held in 29 of 30 fresh probes during one bad minute on this project's 2-core
    VM.) The guest counts it machine-wide in 10 ms steps, and a step can complete time stolen
    long before: only what is beyond one step is known to be taken meanwhile, and over a few
    milliseconds that is a sign, not a measure.
    """

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._stolen = host_stolen_seconds()

    def share(self) -> float:
        """The share of all CPUs' time since this was made that the host took (0.0: none, or
        the system does not tell)."""
        if self._stolen is None:
            return 0.0
        now = host_stolen_seconds()
        if now is None:
            return 0.0
        wall = max(time.perf_counter() - self._wall, 1e-9)
        return max(0.0, now - self._stolen - STEAL_STEP) / ((os.cpu_count() or 1) * wall)

    def stole(self) -> bool:
        """Whether the host took enough to put what was timed meanwhile in doubt."""
        return self.share() >= HOST_STOLE
