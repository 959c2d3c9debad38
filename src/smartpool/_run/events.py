"""What a run tells its observers: how far it got, where it runs, what it re-planned.

An observer is any callable taking a :class:`RunEvent`. It is called from whichever thread saw
the change (the caller during the probe, a worker or pool thread when a chunk completes), one call
at a time per run, so it must be quick and thread-safe. With no observer, a run builds no events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from .._work.task import ChunkResult


@dataclass(frozen=True)
class RunEvent:
    """A snapshot of a run's progress, counted in items, in completion order."""

    #: Items that ran to a result.
    done: int
    #: Items that failed (after their retries).
    failed: int
    #: Attempts that failed and were run again.
    retried: int
    #: Items in the input, or None when its length is unknown (a generator).
    total: int | None
    #: Seconds since the run started.
    elapsed: float
    #: The backend the run submits to now ("serial" while the probe runs).
    backend: str
    #: Workers of that backend.
    workers: int
    #: How many times the run changed plan after it started.
    replans: int
    #: True for the last event of a run (done, failed or cancelled).
    finished: bool = False
    #: Steps the function reported (``smartpool.report_progress``), over all its items.
    steps: int = 0
    #: The current plan's estimate of an item's cost, in seconds (None: not measured).
    item_seconds: float | None = None


Observer = Callable[[RunEvent], None]

#: Steps reported by the function make at most one event per this many seconds (the counts stay
#: exact: the next event, and the last, carry them).
STEP_EVENT_SECONDS = 0.05


class Progress:
    """A run's counters, and the observers they are reported to."""

    def __init__(self, observers: tuple[Observer, ...], total: int | None) -> None:
        self.observers = observers
        self.total = total
        self.done = self.failed = self.retried = self.replans = self.steps = 0
        self.backend, self.workers = "serial", 1
        self.item_seconds: float | None = None
        self._began = self._stepped = time.perf_counter()
        self._lock = threading.Lock()
        #: Chunks to count when they complete, each left out once counted: a long ``imap``
        #: must not hold every result it gave.
        self._watched: set[Future[ChunkResult]] = set()
        self._finished = False

    def chunk_done(self, result: ChunkResult, ran: int | None = None) -> None:
        """Count a settled chunk (``ran``: how many of its items it ran, if not all it holds);
        nothing counts after the last event."""
        with self._lock:
            if self._finished:
                return
            self.done += len(result.values) if ran is None else ran
            self.failed += result.error is not None
            self.retried += result.retried
            self._emit(False)

    def add(self, done: int, failed: int, retried: int) -> None:
        """Count items settled one call at a time (``Executor.map``), each counted by its caller
        once; nothing counts after the last event."""
        with self._lock:
            if self._finished:
                return
            self.done += done
            self.failed += failed
            self.retried += retried
            self._emit(False)

    def begin(self) -> None:
        """Tell the observers that the run starts working (nothing done yet)."""
        with self._lock:
            if not self._finished:
                self._emit(False)

    def step(self, n: int) -> None:
        """Count ``n`` steps the function reported (``smartpool.report_progress``); from any
        thread, at most one event per ``STEP_EVENT_SECONDS``."""
        with self._lock:
            if self._finished:
                return
            self.steps += n
            now = time.perf_counter()
            if now - self._stepped >= STEP_EVENT_SECONDS:
                self._stepped = now
                self._emit(False)

    def watch(self, future: Future[ChunkResult]) -> None:
        """Count the chunk of ``future`` when it completes (unless cancelled or failed)."""
        with self._lock:
            self._watched.add(future)
        future.add_done_callback(self._count)

    def _count(self, future: Future[ChunkResult]) -> None:
        """Count ``future``'s chunk once: from its callback, which can run after the caller
        already woke, or from the run's end, whichever comes first."""
        with self._lock:
            if future not in self._watched:
                return
            self._watched.discard(future)
        if not future.cancelled() and future.exception() is None:
            self.chunk_done(future.result())

    def moved(
        self, backend: str, workers: int, replanned: bool, item_seconds: float | None = None
    ) -> None:
        with self._lock:
            self.backend, self.workers = backend, workers
            self.replans += replanned
            self.item_seconds = item_seconds

    def finish(self) -> None:
        """The last event; first the chunks whose callbacks have not run yet, though the
        caller saw their results."""
        with self._lock:
            watched = list(self._watched)
        for future in watched:
            if future.done():
                self._count(future)
        with self._lock:
            if not self._finished:
                self._finished = True
                self._emit(True)

    def _emit(self, finished: bool) -> None:
        event = RunEvent(
            self.done,
            self.failed,
            self.retried,
            self.total,
            time.perf_counter() - self._began,
            self.backend,
            self.workers,
            self.replans,
            finished,
            self.steps,
            self.item_seconds,
        )
        for observer in self.observers:
            observer(event)
