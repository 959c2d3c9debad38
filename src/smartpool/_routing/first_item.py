"""The first item of a probe: run beside a GIL sampler (and, when the GIL shows free, beside
the second item on a helper thread), and compared with the calls after it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .._work.feed import ItemSource
from .._work.task import ChunkResult, RetryPolicy, run_chunk
from . import gil as _gil
from .beside import Sender
from .clock import ThreadClock

#: A single item is enough to time when it took this long (long items are told well enough by
#: one; below this a second item is timed, so that items of two kinds, say computing and
#: waiting in turn, are both seen and the plan does not flip with which kind came first).
LONG_ITEM_SECONDS = 0.01


def run_first(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    feed: ItemSource,
    retry: RetryPolicy,
    limit: int,
    values: list[Any],
    clock: ThreadClock,
    sender: Sender | None = None,
) -> tuple[ChunkResult, _gil.DuringItem, float, ChunkResult]:
    """Run the first item, sampled for the GIL should it last (see ``_gil.DuringItem``).

    If the sample soon shows the GIL free, the next item runs beside it on a helper thread, so
    a long GIL-free first item leaves no core idle while it is timed; its result (and time) is
    joined to the first's, as if one chunk of two had run. Else, if the item turns out long,
    the ``sender`` begins to send the items after the next one elsewhere (see ``beside``): the
    next one is kept for the caller, to time after this one. Also returns the calling thread's
    time queued for a core while the item ran (read around it, not around the sampler's start
    and end), and the first item's own result (its time is compared with the calls after it).
    """
    spare = feed.take(1) if limit >= 2 else ()
    second: list[ChunkResult] = []

    second_ended: list[float] = []

    def run_second() -> None:
        result = run_chunk(fn, spare, 1, retry)
        second_ended.append(time.perf_counter())
        # As for the caller's items: time queued for a core is not the item's cost.
        result.seconds = result.active_seconds
        second.append(result)

    sending = sender if spare else None
    sample = _gil.DuringItem(
        beside=run_second if spare else None, then=None if sending is None else sending.arm
    )
    if sending is not None:  # (before the sampler, which may call ``sending.arm`` soon)
        sending.prepare(lambda: sample.helped, LONG_ITEM_SECONDS, clock, clock.queued())
    began = time.perf_counter()
    with sample:
        try:
            result = run_chunk(fn, items, 0, retry, after=values)
        finally:
            if sending is not None:
                sending.disarm()
        # (The item's own count: arming and stopping the sampler can cost thread switches.)
        queued = result.queued_seconds
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


def first_share(sample: _gil.DuringItem) -> _gil.Sample:
    """What a first item's sample counts for. One that found the GIL free tells nothing on its
    own unless the item beside it computed at the same time: on a busy machine, the sampler's
    few wake-ups can land where code that holds the GIL hands it over."""
    assert sample.held is not None
    if not _gil.releases(sample.held):
        return _gil.Sample(sample.held)
    proven = sample.together is not None and sample.together >= _gil.TOGETHER_FREE
    return _gil.Sample(sample.held, told=proven)


def long_enough(elapsed: float, queued: float) -> bool:
    """Whether one item took ``LONG_ITEM_SECONDS``, not counting time queued for a core: on a
    busy machine a 6 ms item can take 12 ms of wall time, and is still a short one."""
    return elapsed - queued >= LONG_ITEM_SECONDS


#: A first call counts as paying a one-time cost when it took this many times as long as the
#: calls after it, and this much longer...
ONE_TIME_FACTOR = 4.0
ONE_TIME_SECONDS = 0.0005


def far_above(first: float, later: float, later_count: int) -> bool:
    """Whether the first call, which took ``first`` seconds, stands far above the
    ``later_count`` calls after it, which took ``later``."""
    later_each = max(later, 0.0) / later_count
    return first > ONE_TIME_FACTOR * later_each and first - later_each > ONE_TIME_SECONDS
