"""Where the current code is running: the caller, a smartpool worker thread, or a worker process.

The planner reads this to run nested ``parallel_map`` calls in-process instead of starting pools
inside pools (which would oversubscribe the machine or deadlock a full pool).
"""

from __future__ import annotations

import threading

_state = threading.local()
_in_worker_process = False


def in_worker() -> bool:
    """True inside a task run by smartpool on a worker thread or in a worker process."""
    return _in_worker_process or getattr(_state, "depth", 0) > 0


def may_be_ctrl_c() -> bool:
    """Whether a KeyboardInterrupt raised here may be the user's Ctrl-C.

    Python raises it for SIGINT on the main thread only, and worker processes ignore SIGINT: on
    a pool thread or in a worker, a KeyboardInterrupt was raised by the running function.
    """
    return not _in_worker_process and threading.current_thread() is threading.main_thread()


def mark_worker_process() -> None:
    global _in_worker_process
    _in_worker_process = True


def mark_worker_thread() -> None:
    """The current thread is a smartpool worker thread for good: it runs nothing but tasks.
    (Marked once, rather than around each task: a submitted call is a few microseconds.)"""
    _state.depth = 1


class running_task:
    """Context manager marking the current thread as running a smartpool task."""

    def __enter__(self) -> None:
        _state.depth = getattr(_state, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _state.depth -= 1
