"""Keeping Ctrl-C away from worker processes while they start.

A terminal sends SIGINT to its whole foreground process group, so workers receive every Ctrl-C
meant for the caller. Running workers ignore it (the caller kills them), but a worker caught in
the middle of starting (Python's after-fork hooks, interpreter start-up for "spawn") would die
with a traceback or, worse, keep half-reset locks and hang. So SIGINT is blocked in the starting
thread around every fork and exec (children inherit the mask, through exec too) and the child
unblocks it only after ignoring it: a Ctrl-C that arrives meanwhile is simply discarded.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Generator


@contextlib.contextmanager
def sigint_blocked() -> Generator[None, None, None]:
    """Block SIGINT in this thread; children forked or spawned meanwhile start with it blocked."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_sigint() -> None:
    """In a worker or the fork server: ignore SIGINT for good, then let it through."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
