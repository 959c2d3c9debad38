"""What a test left behind: worker processes, threads, shared-memory files, held locks.

The ``smartpool_clean`` fixture takes a :class:`Census` before the test and, after it, shuts
smartpool's pools down (pools are kept warm between calls on purpose; a test must not leave
one running) and waits, up to :data:`GRACE_SECONDS`, for everything the test started to go.
What is still there then was left behind: processes below this one, threads, files in
``/dev/shm`` that this process made or maps, smartpool locks held.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: How long the things a test started may take to go once its pools are shut down.
GRACE_SECONDS = 10.0
#: Threads smartpool keeps for the life of the process, started on first use (the deadline
#: watcher, the probe's spare threads, the writers of large buffers): not left behind by a test.
SERVICE_THREADS = ("smartpool-deadlines", "smartpool-probe", "smartpool-copy")
SHM = "/dev/shm"
#: Processes that serve this one for its whole life: Python's resource tracker, which unlinks
#: what a process that dies leaves in /dev/shm (started by the first shared object).
SERVICE_PROCESSES = ("multiprocessing.resource_tracker",)


@dataclass(frozen=True)
class Census:
    """What this process has now, each thing by a key and a description."""

    processes: dict[int, str]
    threads: dict[int, str]
    files: dict[str, str]
    locks: dict[str, str]

    @classmethod
    def take(cls) -> Census:
        return cls(_processes(), _threads(), _files(), _held_locks())

    def new_since(self, before: Census) -> list[str]:
        """Descriptions of what is here now and was not in ``before``."""
        pairs = (
            (self.processes, before.processes),
            (self.threads, before.threads),
            (self.files, before.files),
            (self.locks, before.locks),
        )
        return [
            description
            for now, then in pairs
            for key, description in now.items()
            if key not in then
        ]


def check(before: Census, grace: float = GRACE_SECONDS) -> list[str]:
    """Shut smartpool's pools down, then what is still left (after up to ``grace`` seconds) of
    what was not there in ``before``; an empty list when the test left nothing behind."""
    if "smartpool" in sys.modules:
        import smartpool

        smartpool.shutdown(wait=True)
    deadline = time.monotonic() + grace
    while True:
        left = Census.take().new_since(before)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)  # polling for processes and threads to end, up to a deadline


def _processes() -> dict[int, str]:
    """The processes below this one, at any depth, by pid."""
    parents: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                command, rest = stat.read().rsplit(")", 1)
        except OSError:
            continue  # it exited while we looked
        fields = rest.split()
        parents[int(name)] = (int(fields[1]), f"{command.split('(', 1)[-1]} ({fields[0]})")
    found: dict[int, str] = {}
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, (parent, _) in parents.items() if parent in frontier} - set(found)
        for pid in frontier:
            found[pid] = f"process {pid} {parents[pid][1]}"
    return {pid: what for pid, what in found.items() if not _serves(pid)}


def _serves(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().decode(errors="replace")
    except OSError:
        return False
    return any(name in command for name in SERVICE_PROCESSES)


def _threads() -> dict[int, str]:
    return {
        thread.ident or 0: f"thread {thread.name!r}"
        for thread in threading.enumerate()
        if thread.is_alive() and not thread.name.startswith(SERVICE_THREADS)
    }


def _files() -> dict[str, str]:
    """smartpool's files in /dev/shm that this process made (buffers) or maps (shared objects)."""
    if not os.path.isdir(SHM):
        return {}
    mine = f"smartpool-{os.getpid()}-"  # large buffers sent to workers
    try:
        names: set[str] = {name for name in os.listdir(SHM) if name.startswith(mine)}
    except OSError:
        names = set[str]()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").rpartition(" ")[2]
                name = os.path.basename(path)
                if path.startswith(f"{SHM}/") and "smartpool-" in name:
                    names.add(name)
    except OSError:
        pass
    return {name: f"shared-memory file {SHM}/{name}" for name in names if _exists(name)}


def _exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM, name))


def _held_locks() -> dict[str, str]:
    """smartpool locks alive in this process and held (by any process), by repr."""
    sync = sys.modules.get("smartpool._sync")
    if sync is None:  # never imported: no smartpool lock exists
        return {}
    kinds = (sync.Lock, sync.RLock)
    locked: Callable[[object], bool] = lambda lock: bool(lock.locked())  # type: ignore[attr-defined]  # noqa: E731
    held: dict[str, str] = {}
    for obj in gc.get_objects():
        try:
            if isinstance(obj, kinds) and locked(obj):
                held[repr(obj)] = f"held {type(obj).__name__} {obj!r}"
        except Exception:
            continue  # one whose shared memory is gone
    return held
