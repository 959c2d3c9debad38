"""Descriptors smartpool holds in the caller, and forking safely while it holds them.

A worker forked straight from the caller inherits every open descriptor. Those that are ours
(worker sockets, the fork server's control socket, wake-up pipes, pidfds, crash report files)
are listed in ``owned_fds`` so that the child can close them: a worker that kept another
worker's socket open would hide that worker's crash, its caller never seeing end-of-file.
Making a descriptor and listing it, or closing one and unlisting it, happen under ``fork_lock``,
which a "fork" start holds too, so no fork ever sees a descriptor half-registered.

Read ``fork_lock`` and ``owned_fds`` through this module (``descriptors.fork_lock``), never by
``from ... import``: a forked child replaces them (``forget_in_child``).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Protocol

#: Descriptors smartpool itself holds in the caller (worker sockets, the server's control socket,
#: wake-up pipes). A worker forked straight from the caller closes them all, or it would keep other
#: workers' sockets open and they would never see their parent hang up.
owned_fds: set[int] = set()

#: Held while a socket pair is made and registered in ``owned_fds``, and while a "fork" worker
#: reads ``owned_fds`` and forks: otherwise a worker forked by one thread could inherit, untracked,
#: the caller's end of a socket another thread just made, and that worker would then never see
#: its caller hang up (each keeping the other alive at shutdown).
fork_lock = threading.Lock()


class Closable(Protocol):
    def fileno(self) -> int: ...
    def close(self) -> None: ...


def owned_pipe() -> tuple[int, int]:
    """A new pipe, listed in ``owned_fds`` as it is made (see ``fork_lock``)."""
    with fork_lock:
        read, write = os.pipe()
        owned_fds.update((read, write))
    return read, write


def close_owned(*objects: int | Closable) -> None:
    """Close descriptors listed in ``owned_fds`` and drop them from it, as one step.

    Under ``fork_lock``: a "fork" worker started by another thread between the two would inherit
    the descriptor without knowing it was ours, and keep it open. With a worker's end of a socket,
    that worker's crash would then never show as end-of-file, and its chunk would wait for ever.
    """
    with fork_lock:
        for obj in objects:
            if isinstance(obj, int):
                owned_fds.discard(obj)
                os.close(obj)
            else:
                try:
                    owned_fds.discard(obj.fileno())
                except (OSError, ValueError):
                    continue  # closed already
                obj.close()


def open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), listed in ``owned_fds``; None without them
    (not Linux 5.3+, or refused by a sandbox): crashes are then seen by the socket alone.

    A "fork" or "spawn" worker is our child, unreaped, so its pid names it. A fork server's worker
    that died at once may be reaped already: then pidfd_open fails (no sentinel), or, were its
    pid reused within that instant, the sentinel watches a stranger; either way the socket
    still shows the crash, as without pidfds.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:  # pragma: no cover - not Linux
        return None
    with fork_lock:
        try:
            fd: int = pidfd_open(pid)
        except OSError:  # pragma: no cover - old kernel, seccomp
            return None
        owned_fds.add(fd)
    return fd


def flush_std_streams() -> None:
    """Empty the caller's stdio buffers before a fork, or the child would write them out again."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def forget_in_child() -> None:
    """In a forked child: the parent's descriptors are not ours, and its lock may be held."""
    global fork_lock
    fork_lock = threading.Lock()
    owned_fds.clear()


os.register_at_fork(after_in_child=forget_in_child)
