"""What a run decides as it goes: the first items timed in the caller, the plan made from
them, and a new plan when the items turn out far costlier or cheaper than planned. The decisions
themselves are the planner's; this is where a run asks for them."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .._options import Options
from .._routing import planner
from .._routing.beside import Elsewhere
from .._routing.measurement import Measurement
from .._routing.memory import remember
from .._routing.probe import ProbeRun, probe_items
from .._work.chunking import Feed
from .._work.task import Call, ChunkResult

logger = logging.getLogger("smartpool")

#: Observe at least this much work before asking for a new plan.
REPLAN_MIN_SECONDS = 0.02


def probe(
    fn: Callable[..., Any],
    call: Call,
    feed: Feed,
    options: Options,
    n_items: int | None,
    elsewhere: Elsewhere | None = None,
) -> ProbeRun:
    """Time the first items of ``feed`` in the caller, keeping their results; the measurement
    is kept for ``fn``'s later calls. An input read ahead is never waited on past its first item:
    what it has not given within a moment is left for the run (its results may feed it). Items
    after a long first one may run ``elsewhere`` meanwhile (see ``_routing.beside``)."""
    ran = probe_items(
        call.fn,
        _Paused(feed) if feed.reading else feed,
        retry=call.retry,
        gil_matters=lambda m: planner.gil_matters(m, options, n_items),
        elsewhere=elsewhere,
        take_now=feed.take_ready,
    )
    if ran.failed is None:
        remember(fn, ran.measurement)
        logger.debug(
            "probe: %s on %d items%s: %s",
            name(fn),
            len(ran.values),
            f" ({len(ran.sent)} more sent to worker processes meanwhile)" if ran.sent else "",
            described(ran.measurement),
        )
    return ran


def plan_measured(
    fn: Callable[..., Any], options: Options, n_left: int | None, measurement: Measurement
) -> tuple[planner.Plan, Measurement]:
    """The planner's plan from a measurement; its warnings (a fallback from processes) are
    raised at the user's line."""
    plan, measurement = planner.plan_measured(fn, options, n_left, measurement)
    for reason in plan.reasons:
        if reason.startswith("WARNING: "):
            warnings.warn(
                reason.removeprefix("WARNING: "), RuntimeWarning, stacklevel=_user_frame()
            )
    return plan, measurement


class Replanner:
    """Watches what the items of a measured run cost, and asks the planner for a new plan once
    enough work was seen (the planner answers None when the plan still holds)."""

    def __init__(self, probed: Measurement, options: Options, n_items: int | None) -> None:
        self._probed, self._options, self._n_items = probed, options, n_items
        self.reset()

    def reset(self) -> None:
        """Forget what was observed (a new plan starts afresh)."""
        self._items, self._seconds, self._cpu = 0, 0.0, 0.0

    def observe(
        self, plan: planner.Plan, result: ChunkResult, n: int, done: int
    ) -> planner.Plan | None:
        """``n`` items of ``result`` ran, ``done`` items were sent so far: a new plan, or None."""
        if n == 0:
            return None
        self._items += n
        self._seconds += result.seconds
        self._cpu += result.cpu_seconds
        if self._seconds < REPLAN_MIN_SECONDS:
            return None
        measurement = Measurement(
            call_seconds=self._seconds / self._items,
            cpu_fraction=min(1.0, self._cpu / self._seconds) if self._seconds > 0 else 1.0,
            releases_gil=None,
            picklable=None,
            transfer_seconds=0.0,
            samples=self._items,
        )
        self.reset()
        left = None if self._n_items is None else self._n_items - done
        return planner.replan(
            plan, measurement, self._probed, self._options, n_left=left, done=done
        )


class _Paused:
    """The input as the probe sees it while it is read ahead: after the first item, what the
    input has not given within a moment counts as its end, so that the probe never waits on an
    input fed by the results it holds back. The run plans then, and goes on with the rest."""

    #: How long the probe waits for an item after the first.
    PATIENCE_SECONDS = 0.01

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._started = False

    def take(self, n: int) -> Sequence[Any]:
        if not self._started:
            self._started = True
            return self._feed.take(n)
        return self._feed.take_ready(n, self.PATIENCE_SECONDS) or ()

    def give_back(self, rest: Sequence[Any]) -> None:
        self._feed.give_back(rest)


#: Frames of files under this folder are smartpool's own.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_frame() -> int:
    """The ``stacklevel`` of the nearest caller outside smartpool, for its caller's warning:
    the user's line, whichever entry point (``parallel_map``, ``imap``, ``.map``) led here."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def described(m: Measurement) -> str:
    gil = {True: "releases the GIL", False: "holds the GIL", None: "GIL not measured"}
    pickles = {  # (the function itself is checked only when processes are planned)
        True: "it, its items and results pickle",
        False: "it, its items or results cannot be pickled",
        None: "its items and results pickle",
    }
    return (
        f"{m.call_seconds * 1e3:.3g} ms a call, {m.cpu_fraction:.0%} CPU, "
        f"{gil[m.releases_gil]}, {pickles[m.picklable]}"
    )


def log_end(
    fn: Callable[..., Any],
    outcome: str,
    items: int,
    began: float,
    plan: planner.Plan | None,
    replans: int,
) -> None:
    """One readable DEBUG line when a call ends: what it did, where, how long."""
    logger.debug(
        "%s %s: %d items read in %.3f s, on %s x%d%s",
        name(fn),
        outcome,
        items,
        time.perf_counter() - began,
        "serial (probe)" if plan is None else plan.backend,
        1 if plan is None else plan.max_workers,
        {0: ", not re-planned", 1: ", re-planned once"}.get(
            replans, f", re-planned {replans} times"
        ),
    )


def name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))
