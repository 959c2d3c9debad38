"""Waiting on a named semaphore while watching for dead holders; the abandonment warning.

A blocked acquirer waits on the semaphore in slices of :data:`POLL` seconds. Between slices (and
once before the first) it asks the primitive to ``recover``: look up the holders recorded in
shared memory and, under the meta lock, reclaim what a dead holder still held. So a holder's death
costs waiters at most one slice, and an uncontended acquire never pays for any of this.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from ._proc import token_pid

#: Seconds between two checks for a dead holder while blocked.
POLL = 0.05


class AbandonedLockWarning(UserWarning):
    """A process died while holding a lock or semaphore permit; the next acquirer took it over.

    ``pid`` is the dead holder's process id. Whatever state the lock protected may have been left
    half-updated by the dead holder (a :class:`~smartpool.Value` is not: it commits atomically).
    """

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


def warn_abandoned(what: str, name: str, token: int, stacklevel: int = 4) -> None:
    """Emit :class:`AbandonedLockWarning` for the holder named by ``token``."""
    pid = token_pid(token)
    warnings.warn(
        AbandonedLockWarning(
            f"{what} {name} was abandoned: process {pid} died while holding it; "
            "taking it over (data it protected may be inconsistent)",
            pid,
        ),
        stacklevel=stacklevel,
    )


def check_lock_args(blocking: bool, timeout: float) -> None:
    """Validate like ``threading.Lock.acquire`` (same exceptions and messages)."""
    probe = threading.Lock()
    probe.acquire(blocking, timeout)  # free lock: returns at once, or raises what threading raises


def wait_for_permit(sem: Any, timeout: float | None, recover: Callable[[], bool]) -> bool:
    """Block on ``sem`` for up to ``timeout`` seconds (None: for ever), recovering from deaths.

    ``recover()`` returns True when it handed the caller a dead holder's lock directly.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if recover():
            return True
        if deadline is None:
            wait = POLL
        else:
            wait = min(POLL, deadline - time.monotonic())
            if wait <= 0:
                return bool(sem.acquire(False))
        if sem.acquire(True, wait):
            return True
