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

from .. import _cluster
from .._backends import registry
from .._backends.base import Backend
from .._options import Options
from .._routing import planner
from .._routing.beside import Elsewhere
from .._routing.cost import Environment, cpu_count
from .._routing.load import MOST_QUEUED, SATURATED, SATURATED_SECONDS
from .._routing.measurement import Measurement
from .._routing.memory import remember
from .._routing.probe import ProbeRun, probe_items
from .._work import context
from .._work.chunking import ChunkSizer
from .._work.feed import Feed, ItemSource
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
    what it has not given within a moment is left for the run (its results may feed it). With a
    Dask cluster attached, the items run on a worker instead (see ``_run.cluster_probe``);
    otherwise items after a long first one may run ``elsewhere`` meanwhile (see
    ``_routing.beside``)."""
    source = _Paused(feed) if feed.reading else feed
    ran = on_cluster(call, source, options)
    if ran is None:
        ran = probe_items(
            call.fn,
            source,
            retry=call.retry,
            gil_matters=lambda m: planner.gil_matters(m, options, n_items),
            elsewhere=elsewhere,
            take_now=feed.take_ready,
        )
    if ran.failed is None:
        if not ran.measurement.stolen:  # (else the host skewed it: the next call measures again)
            remember(fn, ran.measurement)
        if logger.isEnabledFor(logging.DEBUG):  # (its words cost a tiny job's microseconds)
            logger.debug(
                "probe: %s on %d items%s: %s",
                name(fn),
                len(ran.values),
                f" ({len(ran.sent)} more sent to worker processes meanwhile)" if ran.sent else "",
                described(ran.measurement),
            )
    return ran


def on_cluster(call: Call, source: ItemSource, options: Options) -> ProbeRun | None:
    """The probe run on a worker of the attached Dask cluster (automatic calls only), or None:
    no cluster, or the call cannot be sent to one."""
    if options.backend != "auto" or context.in_worker():
        return None
    client = _cluster.attached_client()
    if client is None:
        return None
    from .cluster_probe import probe_on_cluster

    return probe_on_cluster(client, call, source)


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
    enough work was seen (the planner answers None when the plan still holds).

    A chunk's wall time less its CPU time is not all waiting: on a saturated machine a worker
    spends much of a chunk queued for a core, and pure-Python work would look like I/O (and be
    sent to many threads, where it gains nothing). Chunks report that queued time; it is left
    out of the items' cost and counts as crowding instead: fewer cores, the same kind of work.
    """

    def __init__(
        self,
        probed: Measurement,
        options: Options,
        n_items: int | None,
        env: Environment | None = None,
    ) -> None:
        self._probed, self._options, self._n_items, self._env = probed, options, n_items, env
        #: The cores this run's threads and other programs share (not capped by ``max_cpus``).
        self._cores = cpu_count() if env is None else env.cores
        self.reset()

    def reset(self) -> None:
        """Forget what was observed (a new plan starts afresh)."""
        self._items, self._seconds, self._cpu, self._queued = 0, 0.0, 0.0, 0.0

    def observe(
        self, plan: planner.Plan, result: ChunkResult, n: int, done: int
    ) -> planner.Plan | None:
        """``n`` items of ``result`` ran, ``done`` items were sent so far: a new plan, or None."""
        if n == 0:
            return None
        self._items += n
        self._seconds += result.seconds
        self._cpu += result.cpu_seconds
        self._queued += min(result.queued_seconds, result.seconds)
        active = max(self._cpu, self._seconds - self._queued)
        if active < REPLAN_MIN_SECONDS:
            return None
        measurement = Measurement(
            call_seconds=active / self._items,
            cpu_fraction=min(1.0, self._cpu / active) if active > 0 else 1.0,
            releases_gil=None,
            picklable=None,
            transfer_seconds=0.0,
            samples=self._items,
            crowding=crowding(
                self._queued, self._seconds, _runnable(plan, self._cores), self._cores
            ),
        )
        self.reset()
        left = None if self._n_items is None else self._n_items - done
        return planner.replan(
            plan, measurement, self._probed, self._options, n_left=left, done=done, env=self._env
        )


def crowding(queued: float, wall: float, ours: int, cores: int) -> float:
    """Other programs' threads wanting a core, from the share of ``wall`` that ``ours`` threads
    of this run, all computing, spent ``queued`` for one: with ``cores`` shared evenly by them
    and ``S`` others, each runs ``cores / (ours + S)`` of the time. 0.0 when the machine had
    room (or too little was timed). The probe's estimate, for a run's workers."""
    share = queued / wall if wall >= SATURATED_SECONDS else 0.0
    if share < SATURATED:
        return 0.0
    return max(0.0, cores / (1.0 - min(share, MOST_QUEUED)) - ours)


def _runnable(plan: planner.Plan, cores: int) -> int:
    """How many of the run's own threads compete for the ``cores``: the caller's, inline; else
    the workers, up to twice the cores (a busy machine's share: see ``cost.process_workers``;
    the many threads of I/O-bound work compute seldom, and queue seldom)."""
    if registry.traits(plan.backend).runs_inline:
        return 1
    return max(1, min(plan.max_workers, 2 * cores))


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
    if not logger.isEnabledFor(logging.DEBUG):
        return
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


def sizing(plan: planner.Plan, backend: Backend, n_left: int | None) -> tuple[ChunkSizer, int]:
    """How a run following ``plan`` on ``backend`` sizes its chunks for the ``n_left`` items
    still to hand out (None: unknown), and how many chunks it keeps running or queued."""
    traits = registry.traits(plan.backend)
    sizer = ChunkSizer.for_run(
        chunksize=plan.chunksize,
        n_items=n_left,
        workers=plan.max_workers,
        target_seconds=traits.chunk_seconds,
        item_seconds=plan.item_seconds,
        inline=traits.runs_inline,
        limit=backend.chunk_limit(),
    )
    return sizer, traits.window_per_worker * plan.max_workers
