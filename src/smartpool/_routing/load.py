"""Other programs wanting the cores while the probe ran, from what it saw: the threads that
wanted a core between its items, which scheduling groups they are in, and how long the caller
itself was queued for one. The planner counts them as fewer cores for every backend
(``cost.effective_cores``), not as a different kind of work."""

from __future__ import annotations

import os
from collections.abc import Sequence

from . import gil_probe, neighbours

#: The calling thread must have been queued for a core this share of its items' time for the
#: machine to count as saturated (less is noise: a wake-up here and there), over items that
#: took this long at least (over a few microseconds, one preemption would say anything)...
SATURATED = 0.05
SATURATED_SECONDS = 0.002
#: ...and a share above this counts as this (one long preemption is not a hundred programs).
MOST_QUEUED = 0.8


def busy(
    queued: float, wall: float, counted: Sequence[int], sent: int
) -> tuple[float, tuple[int, ...]]:
    """Other programs' threads wanting a core while the probe ran: how many share this
    program's scheduling group, and how many each other busy group had (see ``neighbours``).

    Counted between the caller's items (``probe._Timing._look_around``); when any were, ``/proc``
    tells which groups they are in (less the ``sent`` items running in this program's worker
    processes, which are in its group). Where it cannot (not Linux, or CPUs this process may not
    use, which take their share of the others first), they count as sharing this program's
    group, as does what the caller's time queued for a core says: unless a count found no
    thread of any other program wanting a core. The caller was then queued behind passing
    wake-ups (its own threads', its worker processes' as they start or finish), not a load:
    on a quiet machine, 7 of 25 probes read 1.3 to 1.7 threads that way, from 11 to 25 % of
    the caller's time queued, and planned three or four worker processes on two cores."""
    if counted and min(counted) == 0:
        return 0.0, ()
    seen = others(counted)
    if seen > 0 and _all_cpus():
        found = neighbours.neighbours()
        if found is not None:
            return float(max(0, found.same_group - sent)), found.other_groups
    return max(from_queued(queued, wall), seen), ()


def _all_cpus() -> bool:
    return (os.cpu_count() or 1) <= gil_probe.cores()


def others(counted: Sequence[int]) -> float:
    """Other threads wanting a core while the probe ran (``probe._Timing._look_around``): the fewest
    counted (a program that ran for a moment is no load), less those that the CPUs this process
    may not use can take (they are not shared with it)."""
    if not counted or min(counted) == 0:
        return 0.0
    elsewhere = max(0, (os.cpu_count() or 1) - gil_probe.cores())
    return float(max(0, min(counted) - elsewhere))


def from_queued(queued: float, wall: float) -> float:
    """Other programs' threads wanting a core, from the share of ``wall`` the calling thread
    spent ``queued`` for one: with ``C`` cores shared evenly by it and ``S`` others, it runs
    ``C / (1 + S)`` of the time. 0.0 when the machine had room (or too little was timed)."""
    share = queued / wall if wall >= SATURATED_SECONDS else 0.0
    if share < SATURATED:
        return 0.0
    return max(0.0, gil_probe.cores() / (1.0 - min(share, MOST_QUEUED)) - 1.0)
