"""Items for the tests of the last chunks the caller takes (test_tail.py): importable, so that
worker processes load them by reference. Every item claims a file named after its index (a
second run of it fails) holding the process id it ran in; the items synchronise through those
files, never through time."""

from __future__ import annotations

import os
import time
from pathlib import Path

from smartpool._demo_workloads import cpu_python as spin

#: The most an item waits for the last one to start (a failing test, not a hang).
DEADLINE_SECONDS = 30.0
#: ~20 ms of pure-Python work: items long enough for the probe to plan worker processes.
SPIN = 400_000

#: An item: the folder of the claims, its index, and what it does.
Item = tuple[str, int, str]


def items(folder: Path, roles: dict[int, str], n: int) -> list[Item]:
    """``n`` items; item ``i`` does ``roles.get(i, "work")``."""
    return [(str(folder), i, roles.get(i, "work")) for i in range(n)]


def ran_in(folder: Path) -> dict[int, int]:
    """The process each item ran in, by index (for the items that ran)."""
    return {int(path.stem): int(path.read_text()) for path in folder.glob("*.ran")}


def run(item: Item) -> tuple[int, int]:
    """Claim the item's file, then do its part; returns (index, process id).

    ``work``: ~20 ms of pure-Python work. ``hold``: compute until the item named in the folder's
    ``last`` file has started, anywhere (a worker kept busy until then). ``fail``: raise
    ValueError.
    """
    folder, index, role = item
    fd = os.open(os.path.join(folder, f"{index}.ran"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    if role == "hold":
        last = Path(folder, "last").read_text()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not os.path.exists(os.path.join(folder, f"{last}.ran")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"item {last} never started while item {index} held a worker")
            spin(SPIN // 20)
    elif role == "fail":
        raise ValueError(f"item {index} fails")
    else:
        spin(SPIN)
    return index, os.getpid()
