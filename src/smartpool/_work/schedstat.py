"""Time a thread spent queued for a core, read from Linux's ``/proc/thread-self/schedstat``,
and time the host took from the whole machine (``/proc/stat``'s steal time).

On a busy machine a runnable thread loses time waiting for a core: neither computing nor
waiting of its own accord. Each chunk reports it (``run_chunk``), and the probe's clocks
(``_routing.clock``) take it off. Where the file is missing, it reads as zero.

On a virtual machine, the host can also take a core away from the guest while a thread runs on
it (steal time): the thread then neither computes nor waits for a core in the guest's eyes,
and the time reads as a wait (for I/O, or for the GIL). The guest only tells that machine-wide,
per 10 ms, so it serves to notice the host stealing, not to take it off each thread's time.
"""

from __future__ import annotations

import os
import threading

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


def own_stats() -> int | None:
    """The calling thread's open stats file, for ``queued_seconds`` (None: the system does not
    tell)."""
    stats: _StatsFile | None = getattr(_threads, "stats", None)
    if stats is None:
        stats = _threads.stats = _StatsFile()
    return stats.fd


def _forget_after_fork() -> None:
    # An inherited descriptor still names the parent's thread: the child opens its own.
    global _threads
    _threads = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)


def queued_seconds(fd: int | None) -> float:
    """Seconds the thread whose stats file ``fd`` is has spent queued for a core, so far."""
    if fd is None:
        return 0.0
    try:
        return int(os.pread(fd, 64, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


_STAT = "/proc/stat"
_stat_fd: list[int | None] = []
#: Clock ticks per second, the unit of ``/proc/stat``...
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: ...so one step of the steal counter: the time stolen since a reading is known to within it.
STEAL_STEP = 1.0 / _TICKS


def host_stolen_seconds() -> float | None:
    """CPU seconds the host (hypervisor) has taken from this machine's CPUs so far, summed over
    them; None where the system does not tell. (A read costs ~5 us: the file stays open.)"""
    if not _stat_fd:
        try:
            _stat_fd.append(os.open(_STAT, os.O_RDONLY))
        except OSError:
            _stat_fd.append(None)
    fd = _stat_fd[0]
    if fd is None:
        return None
    try:
        # "cpu  user nice system idle iowait irq softirq steal ...": the first line, all CPUs.
        return int(os.pread(fd, 256, 0).split(b"\n", 1)[0].split()[8]) / _TICKS
    except (OSError, IndexError, ValueError):
        return None
