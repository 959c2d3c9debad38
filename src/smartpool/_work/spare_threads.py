"""Daemon threads kept for the probe's brief side jobs: the GIL sampler and the item run beside.

Starting a thread costs ~0.1 ms, and a GIL sample of short items needs two: a tenth of what the
sample takes. Finished jobs leave their thread waiting here for the next one instead.

A waiting thread holds no lock and runs nothing, so forking while it waits is as safe as with
the deadline watcher alone: ``_process.forkserver`` forks its server inside
:meth:`SpareThreads.quiet`, which names the waiting threads and keeps them waiting until the
fork is done. A thread that is running a job (an item, which could hold any lock) is not named,
and the fork is not made.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager

from .limits import start_thread

#: Threads kept waiting at most; more are only started while more jobs run at once.
MAX_WAITING = 4


class Job:
    """A target handed to a kept thread."""

    __slots__ = ("_done", "_error", "_target")

    def __init__(self, target: Callable[[], object]) -> None:
        self._target = target
        self._done = threading.Event()
        self._error: BaseException | None = None

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to end (True), or ``timeout`` seconds (False); re-raise its error."""
        if not self._done.wait(timeout):
            return False
        if self._error is not None:
            raise self._error
        return True

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # a bug in a side job: the caller's join() raises it
            self._error = exc


class SpareThreads:
    """The kept threads of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Thread] = []

    def start(self, target: Callable[[], object]) -> Job:
        """Run ``target()`` on a waiting thread, or a new one; ``join`` the job to wait for it.
        Raises :class:`~smartpool.ResourceLimitError` (a ``RuntimeError`` no more) if no thread
        could be started."""
        job = Job(target)
        with self._lock:
            thread = self._waiting.pop() if self._waiting else None
        if thread is None:
            thread = _Thread(self)
        thread.jobs.put(job)
        return job

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    @contextmanager
    def quiet(self) -> Generator[set[int], None, None]:
        """The native ids of the waiting threads, which stay waiting until the block ends (no
        job can start on them): fork inside the block, and they cannot hold anything then."""
        with self._lock:
            yield {t.native_id for t in self._waiting if t.native_id is not None}

    def _wait_for_work(self, thread: _Thread) -> bool:
        """(On ``thread``, its job done.) Whether it should stay, waiting for the next job."""
        with self._lock:
            if len(self._waiting) >= MAX_WAITING:
                return False
            self._waiting.append(thread)
            return True

    def forget(self) -> None:
        """In a forked child: the parent's threads do not exist here."""
        self._lock = threading.Lock()
        self._waiting = []


class _Thread:
    def __init__(self, owner: SpareThreads) -> None:
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.native_id: int | None = None
        thread = threading.Thread(
            target=self._serve, args=(owner,), name="smartpool-probe", daemon=True
        )
        start_thread(thread, "a thread to time the function on")

    def _serve(self, owner: SpareThreads) -> None:
        self.native_id = threading.get_native_id()
        while True:
            job = self.jobs.get()
            job._run()
            # Back among the waiting before the job is seen done: the caller that joined it
            # finds this thread free for its next job.
            stay = owner._wait_for_work(self)
            job._done.set()
            if not stay:
                return


spare = SpareThreads()
os.register_at_fork(after_in_child=spare.forget)
