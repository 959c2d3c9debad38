"""Progress of ``Executor.map``: calls counted as they settle, not a run's chunks.

``Executor.map`` is made of single calls (see ``_run.calls``), not a
:class:`~smartpool._run.run.Run`, so no run reports its events. A :class:`MapProgress` counts
each call's Future when it settles (its done callback: completion order), and the results
iterator counts a Future again before it hands out its result (counted once), since a Future
wakes its waiter before it runs its callbacks. The progress ends when the results iterator ends
(exhausted, failed, closed, interrupted) or, for a map whose results nobody reads, once every
call was sent and has settled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any, Protocol

from .._routing.planner import Plan
from .._run.events import Observer, Progress


class Counted(Protocol):
    """A call's Future, as far as progress is concerned."""

    #: Whether it was counted already (it may be counted from two threads, see ``count``).
    counted: bool
    #: The items the call runs (several with ``chunksize``).
    items: int
    #: Attempts that failed and were run again.
    retried: int

    def cancelled(self) -> bool: ...
    def exception(self, timeout: float | None = None) -> BaseException | None: ...
    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...


class MapProgress:
    """Counts one ``Executor.map``'s calls for its observers; each call's Future counts once."""

    def __init__(self, observers: tuple[Observer, ...], total: int | None) -> None:
        self._progress = Progress(observers, total)
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._unsettled = 0  # calls sent and not settled yet
        self._all_sent = False

    def watch(self, future: Counted, plan: Plan) -> None:
        """Count ``future``'s call, sent on ``plan`` (a learning route's plan changes), when it
        settles."""
        with self._lock:
            self._unsettled += 1
            moved = plan is not self._plan
            replanned = self._plan is not None
            self._plan = plan
        if moved:
            self._progress.moved(plan.backend, plan.max_workers, replanned, plan.item_seconds)
            if not replanned:
                self._progress.begin()  # the first event: nothing done yet, where it runs
        future.add_done_callback(self.count)

    def count(self, future: Counted) -> None:
        """Count ``future``'s settled call once: from its done callback, and from the results
        iterator before it hands the result out (a Future wakes its waiter before it runs its
        callbacks, so the caller could otherwise hold a result not counted yet)."""
        with self._lock:
            if future.counted:
                return
            future.counted = True
            self._unsettled -= 1
            ended = self._all_sent and self._unsettled == 0
        if future.cancelled():
            pass
        else:
            error = future.exception()
            if not isinstance(error, CancelledError):  # a running call stopped: not counted
                failed = error is not None
                self._progress.add(0 if failed else future.items, int(failed), future.retried)
        if ended:
            self.finish()

    def all_sent(self) -> None:
        """No more calls will be sent: the progress ends when the last one settles."""
        with self._lock:
            self._all_sent = True
            ended = self._unsettled == 0
        if ended:
            self.finish()

    def finish(self) -> None:
        """The last event (once); calls settling after it are not counted."""
        self._progress.finish()
