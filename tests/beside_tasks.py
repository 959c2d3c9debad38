"""Items for the tests of work sent beside the probe (test_probe_beside.py): importable, so that
worker processes load them by reference. Every item claims a file named after its index (a
second run of it fails) holding the process id it ran in; the items then synchronise through
those files, never through time."""

from __future__ import annotations

import os
import time
from pathlib import Path

from smartpool._demo_workloads import cpu_python as spin

#: The most any item waits for another (a failing test, not a hang).
DEADLINE_SECONDS = 30.0
#: Pure-Python work between two looks at the files: long enough that the item holds the GIL
#: nearly all the time (a look makes system calls, which release it), ~20 ms.
SPIN = 400_000

#: An item: the folder of the claims, its index, and what it does.
Item = tuple[str, int, str]


def items(folder: Path, roles: dict[int, str], n: int) -> list[Item]:
    """``n`` items; item ``i`` does ``roles.get(i, "work")``."""
    return [(str(folder), i, roles.get(i, "work")) for i in range(n)]


def ran_in(folder: Path) -> dict[int, int]:
    """The process each item ran in, by index (for the items that ran)."""
    found: dict[int, int] = {}
    for path in folder.glob("*.ran"):
        text = path.read_text()
        if text:
            found[int(path.stem)] = int(text)
    return found


def _started_elsewhere(folder: str) -> bool:
    me = str(os.getpid())
    for name in os.listdir(folder):
        if name.endswith(".ran"):
            text = Path(folder, name).read_text()
            if text and text != me:
                return True
    return False


def _compute_until_started_elsewhere(folder: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not _started_elsewhere(folder):
        if time.monotonic() > deadline:
            raise TimeoutError("no item started in another process while this one ran")
        spin(SPIN)


def run(item: Item) -> tuple[int, int]:
    """Claim the item's file, then do its part; returns (index, process id).

    ``wait``: compute (holding the GIL) until another process has started an item.
    ``interrupt``: the same, then raise KeyboardInterrupt (Ctrl-C, when in the caller).
    ``fail``: raise ValueError. ``block``: wait (sleeping) for a ``release`` file.
    ``work``: ~20 ms of pure-Python work.
    """
    folder, index, role = item
    fd = os.open(os.path.join(folder, f"{index}.ran"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    if role in ("wait", "interrupt"):
        _compute_until_started_elsewhere(folder)
        if role == "interrupt":
            raise KeyboardInterrupt
    elif role == "fail":
        raise ValueError(f"item {index} fails")
    elif role == "block":
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not os.path.exists(os.path.join(folder, "release")):
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.01)
    else:
        spin(SPIN)
    return index, os.getpid()


_paid: list[bool] = []


def reset_once() -> None:
    """Make the next call of ``once_then_cheap`` in this process pay its one-time cost again."""
    _paid.clear()


def once_then_cheap(x: int) -> int:
    """The first call in each process computes ~100 ms (a cache filled, say); later ones
    take microseconds."""
    if not _paid:
        _paid.append(True)
        spin(5 * SPIN)
    return x + 1
