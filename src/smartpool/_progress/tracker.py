"""From a run's events to :class:`ProgressEvent` s: the estimate of the time left, and a display
that fails (a user's callback raising) without failing the call."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._progress_event import ProgressEvent
from .._run.events import RunEvent

logger = logging.getLogger("smartpool")

#: What shows the events: called with each one; the last has ``finished`` True.
Display = Callable[[ProgressEvent], object]


class Estimate:
    """Seconds left, from the items completed since the run last changed plan.

    Each plan runs at its own pace (a re-plan from the caller to four processes, say), so the
    rate is measured afresh from the change on; until an item completes under the new plan, the
    plan's own measured cost per item (divided among its workers) stands in.
    """

    def __init__(self) -> None:
        self._plan: tuple[int, str, int] | None = None
        self._since_items = 0
        self._since_seconds = 0.0

    def __call__(self, event: RunEvent) -> float | None:
        count = event.done + event.failed
        plan = (event.replans, event.backend, event.workers)
        if plan != self._plan:
            self._plan, self._since_items, self._since_seconds = plan, count, event.elapsed
        if event.total is None:
            return None
        left = max(0, event.total - count)
        if left == 0:
            return 0.0
        items, seconds = count - self._since_items, event.elapsed - self._since_seconds
        if items > 0 and seconds > 0:
            return left * seconds / items
        if event.item_seconds is not None:
            return left * event.item_seconds / max(1, event.workers)
        return None


class Tracker:
    """A run observer: each event becomes a :class:`ProgressEvent` for ``display``.

    A run calls its observers one at a time, so nothing here needs a lock. Should the display
    raise, the error is logged once and the display is dropped: a progress bar must never fail
    (or, called from a pool's thread, break) the work it watches.
    """

    def __init__(self, display: Display) -> None:
        self._display: Display | None = display
        self._estimate = Estimate()

    def __call__(self, event: RunEvent) -> None:
        display = self._display
        if display is None:
            return
        shown = ProgressEvent(
            done=event.done,
            failed=event.failed,
            retried=event.retried,
            total=event.total,
            elapsed=event.elapsed,
            eta=self._estimate(event),
            backend=event.backend,
            workers=event.workers,
            steps=event.steps,
            finished=event.finished,
        )
        try:
            display(shown)
        except Exception:
            self._display = None
            logger.exception(
                "smartpool: the progress display failed; progress is off for this call"
            )
