"""Process identity tokens and liveness checks for owner-death detection.

A holder is recorded in shared memory as one 64-bit *token*: its pid in the low 22 bits and
its start time (clock ticks since boot, from ``/proc/<pid>/stat``) above. Pids get reused;
the pair (pid, start time) does not, so a token names exactly one process for ever.
A zombie counts as dead: it can no longer release anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable

PID_BITS = 22
PID_MASK = (1 << PID_BITS) - 1


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name, or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may itself contain ") "; split at the last one.
    return raw[raw.rindex(b")") + 2 :].decode("ascii", "replace").split()


_HAVE_PROC = _stat_fields(os.getpid()) is not None


def _start_time(pid: int) -> int:
    fields = _stat_fields(pid) if _HAVE_PROC else None
    # Field 22 of stat is starttime; fields[0] here is field 3 (state).
    return int(fields[19]) if fields is not None else 0


def make_token(pid: int, start: int) -> int:
    """Pack a pid and a start time into one positive int64 (never 0)."""
    return ((start & ((1 << 40) - 1)) << PID_BITS) | (pid & PID_MASK)


def token_pid(token: int) -> int:
    """The pid a token names."""
    return token & PID_MASK


def is_alive(token: int) -> bool:
    """Whether the process named by ``token`` still runs (zombies and reused pids are dead)."""
    pid = token & PID_MASK
    start = token >> PID_BITS
    if _HAVE_PROC:
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X", "x"):
            return False
        return start == 0 or int(fields[19]) & ((1 << 40) - 1) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_token() -> int:
    """The token of the calling process (recomputed after fork)."""
    return _current[0]


_current = [make_token(os.getpid(), _start_time(os.getpid()))]
_child_callbacks: list[Callable[[], None]] = []


def on_fork_in_child(callback: Callable[[], None]) -> None:
    """Run ``callback`` in every forked child, after the process token was refreshed."""
    _child_callbacks.append(callback)


def _refresh_after_fork() -> None:
    pid = os.getpid()
    _current[0] = make_token(pid, _start_time(pid))
    for callback in _child_callbacks:
        callback()


os.register_at_fork(after_in_child=_refresh_after_fork)
