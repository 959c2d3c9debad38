"""Measuring a function on real items: how long a call takes, how much of it is CPU, and whether
it holds the GIL while it runs.

The probe runs in the caller on the first items of the job and keeps their results, so no item is
computed twice and side effects happen once per item. It stops early: a few items or a few
milliseconds, whichever comes later, within a hard time budget. Whether a call holds the GIL is
measured by :mod:`smartpool._gil` while a few more items run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._work import deadline as _deadline
from .._work.feed import ItemSource
from .._work.schedstat import runnable_threads
from .._work.task import NO_RETRY, ChunkResult, RetryPolicy, run_chunk
from . import first_item, load
from . import gil as _gil
from .beside import SEND_BESIDE_CPU, Elsewhere, Sender
from .clock import HostSteal, ThreadClock
from .gil_probe import ALIKE_CPU, sample_gil, with_steal
from .measurement import Measurement
from .numbered import Numbered
from .probe_run import ProbeRun as ProbeRun
from .probe_run import failed_run
from .transfer_cost import SHARED_MEMORY_SECONDS_PER_BYTE as SHARED_MEMORY_SECONDS_PER_BYTE
from .transfer_cost import SHARING_SAMPLE
from .transfer_cost import pickling_cost as _pickling_cost

#: The sequential phase stops once it has this many items and this much time (half a
#: millisecond: thousands of tiny items, two of a third of a millisecond, while a core idles)...
MIN_ITEMS = 2
MIN_SECONDS = 0.0005
#: ...or one item that took ``first_item.LONG_ITEM_SECONDS``...
#: ...or at this much time, whatever the item count.
MAX_SECONDS = 0.02
#: Each batch of items timed is at most this many times the last (and aimed at the time still
#: wanted): few batches, each costing a few system calls, over items that cost nanoseconds.
GROWTH = 16


def probe_items(
    fn: Callable[[Any], Any],
    feed: ItemSource,
    *,
    retry: RetryPolicy = NO_RETRY,
    max_items: int | None = None,
    max_seconds: float = MAX_SECONDS,
    gil_matters: Callable[[Measurement], bool] = lambda _: True,
    elsewhere: Elsewhere | None = None,
    take_now: Callable[[int], Sequence[Any] | None] | None = None,
) -> ProbeRun:
    """Run the first items of ``feed`` in the caller, timing them; then, if ``gil_matters`` for
    what was measured, a few more while a sampler thread measures the GIL. Items taken but not
    run go back to ``feed``; ``max_items`` bounds how many run (for a dry run like ``explain``).
    Given ``elsewhere`` (and ``take_now``, which takes the items of ``feed`` that are ready at
    once), items after a long first one run there meanwhile (see ``beside``).

    Three steps: time the first items (``_Timing.run``); turn what they took into a
    measurement, a one-time first call and time queued for a core left out, with the cost of
    moving items to a process (``_Timing.measurement``); sample the GIL (``gil_probe.sample_gil``).
    """
    limit = max_items if max_items is not None else sys.maxsize
    _deadline.watcher.start()  # thread start-up must not count as the first items' cost
    _gil.DuringItem.prepare()
    numbered = Numbered(feed, take_now)
    sender = None if elsewhere is None or take_now is None else Sender(elsewhere, numbered)
    host = HostSteal()  # (read once: the first item starts within microseconds)
    timing = _Timing(fn, numbered, retry, limit, max_seconds, sender, host)
    failed = True
    try:
        ran = timing.run() or sample_gil(
            fn, numbered, retry, limit, timing, timing.measurement(), gil_matters
        )
        failed = ran.failed is not None
        if not failed:
            ran.measurement = with_steal(ran.measurement, host.share())
    finally:  # (on Ctrl-C too: nothing is sent once the caller has stopped)
        sent = [] if sender is None else sender.stop()
        taken = numbered.close(failed)
    ran.segments, ran.sent, ran.taken = timing.segments, sent, taken
    return ran


class _Timing:
    """The first items, run and timed in the caller: what they took, and what the first one
    (a one-time cost? sampled for the GIL while it ran?) says."""

    def __init__(
        self,
        fn: Callable[[Any], Any],
        feed: Numbered,
        retry: RetryPolicy,
        limit: int,
        max_seconds: float,
        sender: Sender | None,
        host: HostSteal,
    ) -> None:
        self.fn, self.feed, self.retry, self.sender = fn, feed, retry, sender
        self.host = host  # the host's steal time since the first item started
        self.segments: list[tuple[int, int]] = []  # see ``ProbeRun``
        self.limit, self.max_seconds = limit, max_seconds
        self.values: list[Any] = []
        self.wall = self.cpu = 0.0
        self.batch, self.exhausted, self.first_stands = 1, False, False
        self.restarted = self.first_long = self.first_stolen = False
        # The first item's (and helper's) time, CPU time, and the caller's time queued for a
        # core while it ran.
        self.first_wall = self.first_cpu = self.first_queued = 0.0
        # The calling thread's time queued for a core while the items it timed ran (each chunk's
        # own count: not the time between them, nor while the GIL is sampled after them).
        self.queued = 0.0
        # The CPU time the probe's sender (see ``beside``) took while the caller's items ran, up
        # to what those items did not compute nor spend queued: GIL it may have taken from
        # them, not the calls' own waits. (The first item's share apart.)
        self.helped = self.first_helped = 0.0
        # Other threads wanting a core, counted between the caller's items (see ``_look_around``).
        self.others: list[int] = []
        self.sample_items: list[Any] = []
        self.rest: Sequence[Any] = ()
        self.first_sample: _gil.DuringItem | None = None
        self.clock = ThreadClock()
        self.began = self.first_ended = time.perf_counter()

    def run(self) -> ProbeRun | None:
        """Time items until enough is known (or the budget is spent); the failed run if an
        item raised, else None. Items sent elsewhere meanwhile stop being sent then."""
        try:
            return self._run()
        finally:
            if self.sender is not None:
                self.sender.stop()

    def ran(self, start: int, count: int) -> None:
        """Note that the caller ran ``count`` items from input index ``start``."""
        if self.segments and sum(self.segments[-1]) == start:
            start, count = self.segments[-1][0], self.segments.pop()[1] + count
        if count:
            self.segments.append((start, count))

    def _sender_cpu(self) -> float | None:
        return None if self.sender is None else self.sender.cpu_spent

    def _count_helped(self, result: ChunkResult, since: float | None, first: bool) -> None:
        """Count the CPU time the sender used ``since`` against the caller's ``result``: while
        it ran Python (getting ready, pickling and sending items) the caller's items could not,
        and read as waits (a first call's items read 93 % CPU, not 100, and got three workers
        on two cores). No more than the items did not compute nor spend queued for a core."""
        if since is None or self.sender is None:
            return
        idle = max(0.0, result.seconds - result.cpu_seconds - result.queued_seconds)
        helped = min(idle, max(0.0, self.sender.cpu_spent - since))
        self.helped += helped
        if first:
            self.first_helped = helped

    def _look_around(self) -> None:
        """Count the threads of other programs (or of this one, beside the probe) that want a
        core now, between two of the caller's items: the machine's runnable threads less the
        caller and the items it sent to worker processes."""
        runnable = runnable_threads()
        if runnable is not None:
            ours = 1 + (self.sender.running if self.sender is not None else 0)
            self.others.append(max(0, runnable - ours))

    def _run(self) -> ProbeRun | None:
        self._look_around()
        while True:
            n = min(self.batch, self.limit - len(self.values))
            if n > 1 and self.sender is not None:  # what is given back must come back in turn
                self.sender.stop()
            items = self.feed.take(n)
            start = self.feed.start
            if not items:
                self.exhausted = True
                break
            # A deadline can only stop a batch between items: a single item needs none.
            budget = (
                max(self.max_seconds - (time.perf_counter() - self.began), 0.0)
                if len(items) > 1
                else None
            )
            before = len(self.values)
            spent = self._sender_cpu()
            if before:
                result = run_chunk(
                    self.fn, items, start, self.retry, budget, after=self.values
                )  # appends
                ran = len(self.values) - before
                self.queued += result.queued_seconds
                self._look_around()
                if self.sender is not None and result.cpu_seconds < first_item.LONG_ITEM_SECONDS:
                    # Short items: the plan may well be serial, and the next ones are timed
                    # best once the items sent have come back (if they are short too).
                    self.sender.stop(settle=first_item.LONG_ITEM_SECONDS)
            else:
                result, self.first_sample, self.first_queued, own = first_item.run_first(
                    self.fn,
                    items,
                    self.feed,
                    self.retry,
                    self.limit,
                    self.values,
                    self.clock,
                    self.sender,
                )
                ran = 1 if result.error is None else 0
                self.first_wall, self.first_cpu = (
                    own.seconds,
                    own.cpu_seconds,
                )  # (not the one beside it)
                self.queued = self.first_queued
                # Did the host take the cores meanwhile? Its GIL sample would then tell nothing.
                # (Asked only of an item long enough to be sampled: a reading costs ~20 us.)
                self.first_stolen = (
                    self.first_wall - self.first_queued >= _gil.SAMPLE_AFTER and self.host.stole()
                )
            self.ran(start, len(self.values) - before)
            self.wall, self.cpu = self.wall + result.seconds, self.cpu + result.cpu_seconds
            self._count_helped(result, spent, first=not before)
            if len(self.sample_items) < 16:
                self.sample_items.extend(list(items[: 16 - len(self.sample_items)]))
            if result.error is not None:
                self.clock.close()
                return failed_run(self.values, result, self.wall, self.cpu)
            self.rest = items[ran:] if ran < len(items) else ()
            if not before:
                self.first_ended = time.perf_counter()
            later = len(self.values) - 1
            if (
                later
                and not self.restarted
                and self.first_wall - self.first_queued > first_item.ONE_TIME_SECONDS
            ):
                # A first call often pays once for an import or a cache. Far above the calls after
                # it, it is left out (see below), and the timing starts again from the second.
                later_active = self.wall - self.first_wall - (self.queued - self.first_queued)
                if first_item.far_above(self.first_wall - self.first_queued, later_active, later):
                    self.restarted, self.began = True, self.first_ended
            elapsed = time.perf_counter() - self.began
            if (
                len(self.values) == 1
            ):  # is one item enough? Only if it was long, not counting time queued
                enough = self.first_long = first_item.long_enough(elapsed, self.first_queued)
            else:
                enough = (
                    later if self.restarted else len(self.values)
                ) >= MIN_ITEMS and elapsed >= MIN_SECONDS
            # (Nor is a first call trusted before it is compared with a later one, whatever the
            # time budget; nor one found far above it before two later ones are timed.)
            compared = later >= (MIN_ITEMS if self.restarted else 1)
            if (
                self.rest
                or len(self.values) >= self.limit
                or ((enough or elapsed >= self.max_seconds) and compared)
            ):
                # Does the first item's GIL sample speak for all the items timed? It does if the
                # timing needed no more than the first item (and helper), or if the ones after it
                # computed, as it did. (Time queued for a core is neither computing nor waiting.)
                # A first item that ran less than the sampler waits before it starts was only
                # sampled because it lost its core meanwhile, still holding the GIL: that sample
                # says nothing about the function; nor does one of a first call far above the
                # calls after it (its one-time cost was sampled). (A long first item computed long
                # enough to be told by itself; the items after it must compute too.)
                self.first_stands = (
                    self.first_wall - self.first_queued >= _gil.SAMPLE_AFTER
                    and not self.restarted
                    and not self.first_stolen
                )
                if before and self.first_stands:
                    later_queued = self.queued - self.first_queued
                    self.first_stands = (
                        self.first_long
                        or self.first_cpu >= ALIKE_CPU * (self.first_wall - self.first_queued)
                    ) and (
                        self.cpu - self.first_cpu
                        >= ALIKE_CPU * (self.wall - self.first_wall - later_queued)
                    )
                break
            if len(self.values) == 1 and self.sender is not None:
                self._send_from_now()
            # Grow fast, but aim the next batch at the time still wanted, not past it.
            timed, timed_wall = (
                (later, self.wall - self.first_wall)
                if self.restarted
                else (len(self.values), self.wall)
            )
            per_item = max(timed_wall / timed, 1e-9)
            wanted = int((MIN_SECONDS - elapsed) / per_item * 1.25) + 1
            self.batch = min(self.batch * GROWTH, 1 << 16, max(wanted, MIN_ITEMS - timed, 1))
        return None

    def _send_from_now(self) -> None:
        """After a long first item that computed alone (it holds the GIL) while no worker was
        there to take items beside it: start workers and send the items after the next one
        while the caller times the next, if more than one is left."""
        assert self.sender is not None and self.first_sample is not None
        active = self.first_wall - self.first_queued
        if (
            active < first_item.LONG_ITEM_SECONDS
            or self.first_sample.helped
            or self.first_cpu < SEND_BESIDE_CPU * active
            or not self.feed.more_than(1)
        ):
            return
        self.sender.start_now()

    def measurement(self) -> Measurement:
        """What the timed items say, in the planner's units."""
        # Time spent queued for a core (a busy machine) is not the calls' cost. (Counted within
        # each chunk: read later, the clock would also count the time queued while the GIL was
        # sampled, and on a crowded machine take off more than the items ever took.)
        self._look_around()  # (at least two counts, however few items were timed)
        sent = self.sender.running if self.sender is not None else 0
        crowding, groups = load.busy(self.queued, self.wall, self.others, sent)
        self.wall = max(self.cpu, self.wall - self.queued - self.helped)
        self.clock.close()
        timed = len(self.values)
        later = timed - 1
        first_active = self.first_wall - self.first_queued - self.first_helped
        one_time: float | None = None
        if later and first_item.far_above(first_active, self.wall - first_active, later):
            one_time, self.first_stands = first_active, False  # a one-time cost: left out
            self.wall, self.cpu, timed = (
                max(self.wall - first_active, 1e-9),
                max(self.cpu - self.first_cpu, 0.0),
                later,
            )
        call_seconds = self.wall / max(timed, 1)
        cpu_fraction = min(1.0, self.cpu / self.wall) if self.wall > 0 else 1.0
        if self.rest:
            self.feed.give_back(self.rest)
        # A few items to pickle, even when one long item was all the timing needed: whether items
        # share a large buffer (and pay for it once) shows only across several of them.
        ahead: Sequence[Any] = ()
        if len(self.sample_items) < SHARING_SAMPLE and not self.exhausted:
            ahead = self.feed.look_ahead(SHARING_SAMPLE - len(self.sample_items))
        picklable, transfer, shared = _pickling_cost(
            [*self.sample_items, *ahead], self.values[: len(self.sample_items)]
        )
        measurement = Measurement(
            call_seconds=call_seconds,
            cpu_fraction=cpu_fraction,
            releases_gil=None,
            picklable=picklable,
            transfer_seconds=transfer,
            samples=timed,
            shared_transfer_seconds=shared,
            first_call_seconds=one_time,
            crowding=crowding,
            other_groups=groups,
        )
        return measurement
