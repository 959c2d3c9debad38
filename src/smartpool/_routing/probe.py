"""Measuring a function on real items: how long a call takes, how much of it is CPU, and whether
it holds the GIL while it runs.

The probe runs in the caller on the first items of the job and keeps their results, so no item is
computed twice and side effects happen once per item. It stops early: a few items or a few
milliseconds, whichever comes later, within a hard time budget. Whether a call holds the GIL is
measured by :mod:`smartpool._gil` while a few more items run.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .._errors import SerializationError
from .._transport.serialize import dump_function
from .._work import deadline as _deadline
from .._work.chunking import Feed, ItemSource
from .._work.task import NO_RETRY, ChunkResult, RetryPolicy, run_chunk
from . import gil as _gil
from .clock import ThreadClock
from .measurement import Measurement
from .transfer_cost import SHARED_MEMORY_SECONDS_PER_BYTE as SHARED_MEMORY_SECONDS_PER_BYTE
from .transfer_cost import SHARING_SAMPLE
from .transfer_cost import pickling_cost as _pickling_cost

#: The sequential phase stops once it has this many items and this much time...
MIN_ITEMS = 2
MIN_SECONDS = 0.001
#: ...or one item that took this long (long items are told well enough by one; below this a
#: second item is timed, so that items of two kinds, say computing and waiting in turn, are both
#: seen and the plan does not flip with which kind came first)...
LONG_ITEM_SECONDS = 0.01
#: ...or at this much time, whatever the item count.
MAX_SECONDS = 0.02
#: Calls shorter than this are not sampled for the GIL: dispatch to threads would cost more
#: than running them in parallel could save.
MIN_GIL_SECONDS = 0.00005
#: The GIL is sampled over enough items to last this long (several of the sampler's naps).
GIL_SAMPLE_SECONDS = 0.001
#: ...but over no more items than this.
MAX_SAMPLE_ITEMS = 64
#: Calls that mostly wait are not sampled: the GIL does not decide where they should run.
MIN_GIL_CPU = 0.3
#: A long first item's GIL sample also stands for the items timed after it when all of them
#: computed for at least this share of their time: items of one kind (not, say, computing and
#: waiting in turn, which more items are sampled to tell).
ALIKE_CPU = 0.8


@dataclass
class ProbeRun:
    """The probe's outcome on a job: the values it computed, in order, and what it measured."""

    values: list[Any]
    measurement: Measurement
    #: The chunk holding the first error, if an item failed during the probe.
    failed: ChunkResult | None = None
    #: True when the probe ran every item there was.
    exhausted: bool = False


def probe_items(
    fn: Callable[[Any], Any],
    feed: ItemSource,
    *,
    retry: RetryPolicy = NO_RETRY,
    max_items: int | None = None,
    max_seconds: float = MAX_SECONDS,
    gil_matters: Callable[[Measurement], bool] = lambda _: True,
) -> ProbeRun:
    """Run the first items of ``feed`` in the caller, timing them; then, if ``gil_matters`` for
    what was measured, a few more while a sampler thread measures the GIL. Items taken but not
    run go back to ``feed``; ``max_items`` bounds how many run (for a dry run like ``explain``)."""
    limit = max_items if max_items is not None else sys.maxsize
    _deadline.watcher.start()  # thread start-up must not count as the first items' cost
    _gil.DuringItem.prepare()
    values: list[Any] = []
    wall = cpu = 0.0
    batch, exhausted, first_stands, restarted, first_long = 1, False, False, False, False
    # The first item's (and helper's) time, CPU time, and the caller's time queued for a core
    # while it ran.
    first_wall = first_cpu = first_queued = 0.0
    # The calling thread's time queued for a core while items ran (None: to be read), and its
    # count when the items after the first began.
    queued: float | None = 0.0
    later_from = 0.0
    sample_items: list[Any] = []
    rest: Sequence[Any] = ()
    first_sample: _gil.DuringItem | None = None
    clock = ThreadClock()
    began = first_ended = time.perf_counter()
    while True:
        items = feed.take(min(batch, limit - len(values)))
        if not items:
            exhausted = True
            break
        # A deadline can only stop a batch between items: a single item needs none.
        budget = max(max_seconds - (time.perf_counter() - began), 0.0) if len(items) > 1 else None
        before = len(values)
        if before:
            result = run_chunk(fn, items, before, retry, budget, after=values)  # appends
            ran, queued = len(values) - before, None
        else:
            result, first_sample, first_queued, own = _first_item(
                fn, items, feed, retry, limit, values, clock
            )
            ran = 1 if result.error is None else 0
            first_wall, first_cpu = own.seconds, own.cpu_seconds  # (not the one beside it)
            queued, later_from = first_queued, clock.queued()
        wall, cpu = wall + result.seconds, cpu + result.cpu_seconds
        if len(sample_items) < 16:
            sample_items.extend(list(items[: 16 - len(sample_items)]))
        if result.error is not None:
            clock.close()
            return _failed(values, result, wall, cpu)
        rest = items[ran:] if ran < len(items) else ()
        if not before:
            first_ended = time.perf_counter()
        later = len(values) - 1
        if later and not restarted and first_wall - first_queued > ONE_TIME_SECONDS:
            # A first call often pays once for an import or a cache. Far above the calls after
            # it, it is left out (see below), and the timing starts again from the second.
            queued = _since(clock, later_from, first_queued) if queued is None else queued
            later_active = wall - first_wall - (queued - first_queued)
            if _first_far_above(first_wall - first_queued, later_active, later):
                restarted, began = True, first_ended
        elapsed = time.perf_counter() - began
        if len(values) == 1:  # is one item enough? Only if it was long, not counting time queued
            enough = first_long = _long(elapsed, first_queued)
        else:
            enough = (later if restarted else len(values)) >= MIN_ITEMS and elapsed >= MIN_SECONDS
        # (Nor is a first call trusted before it is compared with a later one, whatever the
        # time budget; nor one found far above it before two later ones are timed.)
        compared = later >= (MIN_ITEMS if restarted else 1)
        if rest or len(values) >= limit or ((enough or elapsed >= max_seconds) and compared):
            # Does the first item's GIL sample speak for all the items timed? It does if the
            # timing needed no more than the first item (and helper), or if the ones after it
            # computed, as it did. (Time queued for a core is neither computing nor waiting.)
            # A first item that ran less than the sampler waits before it starts was only
            # sampled because it lost its core meanwhile, still holding the GIL: that sample
            # says nothing about the function; nor does one of a first call far above the
            # calls after it (its one-time cost was sampled). (A long first item computed long
            # enough to be told by itself; the items after it must compute too.)
            first_stands = first_wall - first_queued >= _gil.SAMPLE_AFTER and not restarted
            if before and first_stands:
                queued = _since(clock, later_from, first_queued) if queued is None else queued
                later_queued = queued - first_queued
                first_stands = (
                    first_long or first_cpu >= ALIKE_CPU * (first_wall - first_queued)
                ) and (cpu - first_cpu >= ALIKE_CPU * (wall - first_wall - later_queued))
            break
        # Grow fast, but aim the next batch at the time still wanted, not past it.
        timed, timed_wall = (later, wall - first_wall) if restarted else (len(values), wall)
        per_item = max(timed_wall / timed, 1e-9)
        wanted = int((MIN_SECONDS - elapsed) / per_item * 1.25) + 1
        batch = min(batch * 4, 1 << 16, max(wanted, MIN_ITEMS - timed, 1))
    # Time spent queued for a core (a busy machine) is not the calls' cost. (Read around the
    # first item, or the time queued while its sampler starts and ends would be taken off it,
    # and as soon as the others ran.)
    if queued is None:
        queued = _since(clock, later_from, first_queued)
    crowding = _crowding(queued, wall)
    wall = max(cpu, wall - queued)
    clock.close()
    timed = len(values)
    later = timed - 1
    first_active = first_wall - first_queued
    one_time: float | None = None
    if later and _first_far_above(first_active, wall - first_active, later):
        one_time, first_stands = first_active, False  # a one-time cost: left out
        wall, cpu, timed = max(wall - first_active, 1e-9), max(cpu - first_cpu, 0.0), later
    call_seconds = wall / max(timed, 1)
    cpu_fraction = min(1.0, cpu / wall) if wall > 0 else 1.0
    if rest:
        feed.give_back(rest)
    # A few items to pickle, even when one long item was all the timing needed: whether items
    # share a large buffer (and pay for it once) shows only across several of them.
    ahead: Sequence[Any] = ()
    if len(sample_items) < SHARING_SAMPLE and not exhausted:
        ahead = feed.take(SHARING_SAMPLE - len(sample_items))
        feed.give_back(ahead)
    picklable, transfer, shared = _pickling_cost(
        [*sample_items, *ahead], values[: len(sample_items)]
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
    )
    sample = call_seconds >= MIN_GIL_SECONDS and cpu_fraction >= MIN_GIL_CPU
    samples: list[_gil.Sample] = []
    if sample and first_sample is not None and first_sample.held is not None and first_stands:
        samples.append(_first_share(first_sample))  # a long first item, sampled while it ran
        if _gil.settled(samples):
            return ProbeRun(values, _with_gil(measurement, samples), None, exhausted)
    if exhausted or not sample or len(values) >= limit or not gil_matters(measurement):
        return ProbeRun(values, measurement, None, exhausted)
    count = max(1, min(MAX_SAMPLE_ITEMS, math.ceil(GIL_SAMPLE_SECONDS / call_seconds)))
    # The sample runs as a pair: as many items again on a helper thread, so that no core idles
    # while a GIL-free function is sampled (two threads then also compete for the GIL, as they
    # would on the thread backend).
    paired = _cores() >= 2
    while True:
        items = feed.take(min(2 * count if paired else count, limit - len(values)))
        if not items:
            if samples:
                break
            return ProbeRun(values, measurement, None, True)
        if paired and len(items) >= 2:
            computes = cpu_fraction >= ALIKE_CPU
            result, held = _gil.sample_in_pairs(fn, items, len(values), retry, computes)
        else:
            result, share = _gil.sample(fn, items, len(values), retry)
            held = _gil.Sample(share)
        values.extend(result.values)
        if result.error is not None:
            return _failed(values, result, wall, cpu)
        samples.append(held)
        if _gil.settled(samples) or len(values) >= limit:
            break
        count = min(4 * MAX_SAMPLE_ITEMS, 2 * count)  # more evidence: a longer sample
    return ProbeRun(values, _with_gil(measurement, samples), None, False)


def _first_share(sample: _gil.DuringItem) -> _gil.Sample:
    """What a first item's sample counts for. One that found the GIL free tells nothing on its
    own unless the item beside it computed at the same time: on a busy machine, the sampler's
    few wake-ups can land where code that holds the GIL hands it over."""
    assert sample.held is not None
    if not _gil.releases(sample.held):
        return _gil.Sample(sample.held)
    proven = sample.together is not None and sample.together >= _gil.TOGETHER_FREE
    return _gil.Sample(sample.held, told=proven)


def _with_gil(measurement: Measurement, samples: list[_gil.Sample]) -> Measurement:
    gil_held = _gil.verdict(samples)
    return replace(
        measurement,
        releases_gil=_gil.releases(gil_held),
        doubt=_gil.doubt(gil_held),
        gil_held=gil_held,
    )


def _first_item(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    feed: ItemSource,
    retry: RetryPolicy,
    limit: int,
    values: list[Any],
    clock: ThreadClock,
) -> tuple[ChunkResult, _gil.DuringItem, float, ChunkResult]:
    """Run the first item, sampled for the GIL should it last (see ``_gil.DuringItem``).

    If the sample soon shows the GIL free, the next item runs beside it on a helper thread, so
    a long GIL-free first item leaves no core idle while it is timed; its result (and time) is
    joined to the first's, as if one chunk of two had run. Also returns the calling thread's
    time queued for a core while the item ran (read around it, not around the sampler's start
    and end), and the first item's own result (its time is compared with the calls after it).
    """
    spare = feed.take(1) if limit >= 2 else ()
    second: list[ChunkResult] = []

    second_ended: list[float] = []

    def run_second() -> None:
        with ThreadClock() as clock:
            queued = clock.queued()
            result = run_chunk(fn, spare, 1, retry)
            second_ended.append(time.perf_counter())
            # As for the caller's items: time queued for a core is not the item's cost.
            result.seconds = max(result.cpu_seconds, result.seconds - (clock.queued() - queued))
        second.append(result)

    sample = _gil.DuringItem(beside=run_second if spare else None)
    began = time.perf_counter()
    with sample:
        queued_before = clock.queued()  # (arming the sampler can cost a thread switch)
        result = run_chunk(fn, items, 0, retry, after=values)
        queued = clock.queued() - queued_before
        ended = time.perf_counter()
    if not sample.helped:
        if spare:
            feed.give_back(spare)
        return result, sample, queued, result
    if result.error is not None:  # the item beside it ran, but the call stops at this one
        return result, sample, queued, result
    (other,) = second
    values.extend(other.values)
    # Did the two compute at the same time? (Proof that the GIL was free, which the sampler's
    # few wake-ups are not on a busy machine: see ``_gil.Pair``.)
    wall = max(ended, *second_ended) - began
    sample.together = (result.cpu_seconds + other.cpu_seconds) / max(wall, 1e-9)
    joined = ChunkResult(
        0,
        values,
        other.error,
        result.seconds + other.seconds,
        result.worker,
        result.cpu_seconds + other.cpu_seconds,
    )
    return joined, sample, queued, result


def measure_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], budget: float
) -> Measurement:
    """Probe ``fn(*args, **kwargs)`` called repeatedly (for ``classify``); raise its error."""

    def call(_: object) -> Any:
        return fn(*args, **kwargs)

    probe = probe_items(call, Feed(itertools.repeat(None)), max_items=10_000, max_seconds=budget)
    if probe.failed is not None:
        assert probe.failed.error is not None
        raise probe.failed.error
    picklable, _, _ = _pickling_cost([(args, kwargs)], [])
    if picklable is not False:
        try:
            dump_function(fn)
            picklable = True
        except SerializationError:
            picklable = False
    return replace(probe.measurement, picklable=picklable)


def _since(clock: ThreadClock, later_from: float, first_queued: float) -> float:
    """The time queued for a core while the first item ran, and since the later items began."""
    return first_queued + clock.queued() - later_from


def _long(elapsed: float, queued: float) -> bool:
    """Whether one item took ``LONG_ITEM_SECONDS``, not counting time queued for a core: on a
    busy machine a 6 ms item can take 12 ms of wall time, and is still a short one."""
    return elapsed - queued >= LONG_ITEM_SECONDS


#: A first call counts as paying a one-time cost when it took this many times as long as the
#: calls after it, and this much longer...
ONE_TIME_FACTOR = 4.0
ONE_TIME_SECONDS = 0.0005


def _first_far_above(first: float, later: float, later_count: int) -> bool:
    """Whether the first call, which took ``first`` seconds, stands far above the
    ``later_count`` calls after it, which took ``later``."""
    later_each = max(later, 0.0) / later_count
    return first > ONE_TIME_FACTOR * later_each and first - later_each > ONE_TIME_SECONDS


#: The calling thread must have been queued for a core this share of its items' time for the
#: machine to count as saturated (less is noise: a wake-up here and there), over items that
#: took this long at least (over a few microseconds, one preemption would say anything)...
SATURATED = 0.05
SATURATED_SECONDS = 0.002
#: ...and a share above this counts as this (one long preemption is not a hundred programs).
MOST_QUEUED = 0.8


def _crowding(queued: float, wall: float) -> float:
    """Other programs' threads wanting a core, from the share of ``wall`` the calling thread
    spent ``queued`` for one: with ``C`` cores shared evenly by it and ``S`` others, it runs
    ``C / (1 + S)`` of the time. 0.0 when the machine had room (or too little was timed)."""
    share = queued / wall if wall >= SATURATED_SECONDS else 0.0
    if share < SATURATED:
        return 0.0
    return max(0.0, _cores() / (1.0 - min(share, MOST_QUEUED)) - 1.0)


def _cores() -> int:
    from .cost import cpu_count

    return cpu_count()


def _failed(values: list[Any], result: ChunkResult, wall: float, cpu: float) -> ProbeRun:
    measurement = Measurement(
        call_seconds=wall / max(len(values), 1),
        cpu_fraction=min(1.0, cpu / wall) if wall > 0 else 1.0,
        releases_gil=None,
        picklable=None,
        transfer_seconds=0.0,
        samples=len(values),
    )
    return ProbeRun(values, measurement, result, False)
