"""Other programs that want the cores: how many of their threads, and in which scheduling
groups, since that decides what this program's workers get beside them.

Linux shares the cores fairly between scheduling groups first, then between the threads of a
group: a cgroup (a container, a systemd service) and, within one, a session (``autogroup``:
each terminal, each program started with its own session). So beside one program spinning in
another session, this program gets one of two cores however many workers it starts (measured:
2 worker processes ran 64 items of ~15 ms in 1.34 s where the caller alone took 1.35 s); beside
one spinning in its own session, two workers get 4/3 of a core, three get 1.5 (1.28x and 1.56x
over serial).

The threads that want a core are found in ``/proc`` (a task's state ``R``): about 2 ms for 120
processes, so the answer is kept for a few seconds. This process's own threads are left out;
its worker processes are not (they are idle unless they run items, of this call or another).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

#: How long a look at the machine stands: programs come and go more slowly than calls.
KEEP_SECONDS = 2.0
_PROC = "/proc"


@dataclass(frozen=True)
class Neighbours:
    """Threads of other programs that wanted a core when the machine was looked at."""

    #: In this program's own scheduling group: they share its part of the cores thread by thread.
    same_group: int
    #: How many each other busy group had: each group gets an equal part of the cores (no more
    #: than it wants), whatever its number of threads.
    other_groups: tuple[int, ...]


_kept: tuple[float, Neighbours | None] | None = None
_lock = threading.Lock()


def neighbours() -> Neighbours | None:
    """The other programs' threads that want a core now (a look at most ``KEEP_SECONDS`` old);
    None where ``/proc`` does not tell."""
    global _kept
    now = time.monotonic()
    with _lock:
        if _kept is not None and now - _kept[0] < KEEP_SECONDS:
            return _kept[1]
    found = look(_PROC)
    with _lock:
        _kept = (now, found)
    return found


def forget() -> None:
    """Look afresh next time (tests)."""
    global _kept
    with _lock:
        _kept = None


def look(proc: str) -> Neighbours | None:
    """Read ``proc`` (``/proc``, or a fake one in tests) for runnable threads not this
    program's, grouped as the scheduler groups them."""
    me = os.getpid()
    try:
        names = os.listdir(proc)
        own_group = _group(proc, str(me))
    except OSError:
        return None
    if own_group is None:
        return None
    groups: Counter[str] = Counter()
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        stat = _stat(f"{proc}/{name}/stat")
        if stat is None:
            continue
        state, threads = stat
        runnable = int(state == "R") if threads <= 1 else _runnable_threads(proc, name)
        if runnable:
            group = _group(proc, name)
            if group is not None:
                groups[group] += runnable
    same = groups.pop(own_group, 0)
    return Neighbours(same, tuple(sorted(groups.values())))


def _stat(path: str) -> tuple[str, int] | None:
    """A task's state and thread count, from its ``stat`` file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[0].decode(), int(fields[17])
    except (OSError, ValueError, IndexError):
        return None


def _runnable_threads(proc: str, pid: str) -> int:
    """How many threads of a multi-threaded process want a core."""
    try:
        tids = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return 0
    count = 0
    for tid in tids:
        stat = _stat(f"{proc}/{pid}/task/{tid}/stat")
        count += stat is not None and stat[0] == "R"
    return count


def _group(proc: str, pid: str) -> str | None:
    """The scheduling group of a process: its CPU cgroup and its autogroup (session)."""
    try:
        with open(f"{proc}/{pid}/cgroup") as f:
            cgroup = _cpu_cgroup(f.read())
    except OSError:
        return None
    try:
        with open(f"{proc}/{pid}/autogroup") as f:
            session = f.read().split()[0]
    except (OSError, IndexError):  # no autogroup scheduling: the cgroup alone
        session = ""
    return f"{cgroup} {session}"


def _cpu_cgroup(text: str) -> str:
    """The cgroup that sets a process's CPU share: v1's ``cpu`` controller, else v2's."""
    unified = ""
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
        if controllers == "":
            unified = path
    return unified


def fair_share(cores: float, wanted: float, others: tuple[int, ...]) -> float:
    """Cores' worth a group wanting ``wanted`` threads' worth gets beside busy groups wanting
    ``others``: each group an equal part, a group wanting less leaving the rest to the others
    (what the kernel's fair scheduler does, group by group)."""
    demands = sorted([*others, wanted])
    if sum(demands) <= cores:
        return min(wanted, cores)
    left = float(cores)
    for i, demand in enumerate(demands):
        level = left / (len(demands) - i)
        if demand >= level:
            return min(wanted, level)
        left -= demand
    return min(wanted, cores)  # pragma: no cover - the sum exceeds the cores


def described(same_group: float, other_groups: tuple[int, ...]) -> str:
    """Who else wants the cores, for a plan's reasons."""
    said: list[str] = []
    if same_group > 0.0:
        said.append(f"~{same_group:.2g} threads of other programs in this one's group")
    if other_groups:
        threads = " + ".join(str(n) for n in other_groups)
        groups = len(other_groups)
        plural = "s" * (groups > 1 or other_groups[0] > 1)
        said.append(f"{groups} other busy group{'s' * (groups > 1)} ({threads} thread{plural})")
    return " and ".join(said)
