"""Time a thread spent queued for a core, read from Linux's ``/proc/thread-self/schedstat``,
time the host took from the whole machine (``/proc/stat``'s steal time), and how many threads
want a core right now (``/proc/loadavg``).

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
_LOADAVG = "/proc/loadavg"
_kept: dict[str, int | None] = {}
#: Clock ticks per second, the unit of ``/proc/stat``...
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: ...so one step of the steal counter: the time stolen since a reading is known to within it.
STEAL_STEP = 1.0 / _TICKS


def _kept_open(path: str) -> int | None:
    """A machine-wide stats file, opened once and kept (None where the system has none)."""
    if path not in _kept:
        try:
            _kept[path] = os.open(path, os.O_RDONLY)
        except OSError:
            _kept[path] = None
    return _kept[path]


def host_stolen_seconds() -> float | None:
    """CPU seconds the host (hypervisor) has taken from this machine's CPUs so far, summed over
    them; None where the system does not tell. (A read costs ~5 us: the file stays open.)"""
    fd = _kept_open(_STAT)
    if fd is None:
        return None
    try:
        # "cpu  user nice system idle iowait irq softirq steal ...": the first line, all CPUs.
        return int(os.pread(fd, 256, 0).split(b"\n", 1)[0].split()[8]) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def runnable_threads() -> int | None:
    """Threads on the whole machine running or ready to run right now, the calling one
    included; None where the system does not tell. (A read costs ~1 us: the file stays open.)

    Time queued for a core shows other programs only once they want more cores than there are
    beside the caller's; this count shows them from the first: a program spinning on one of
    two cores leaves the caller its own core, and halves what a second worker would get."""
    fd = _kept_open(_LOADAVG)
    if fd is None:
        return None
    try:
        # "0.52 0.61 0.70 2/183 4567": the fourth field is runnable/all threads.
        return int(os.pread(fd, 128, 0).split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return None
