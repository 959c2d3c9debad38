"""The probe's last step: whether calls hold the GIL, when that can change the plan.

From the first item's sample when it stands for the items timed after it; else from a few more
items run as a pair (half on a helper thread) while the sampler watches (see :mod:`gil`). An
unclear sample is checked by longer ones (see :mod:`gil_evidence`), and so is one taken while
the host took the machine's cores away (see ``clock.HostSteal``): that time reads as waits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from .._work.task import RetryPolicy
from . import first_item
from . import gil as _gil
from .clock import HOST_STOLE, HostSteal
from .measurement import Measurement
from .numbered import Numbered
from .probe_run import ProbeRun, failed_run

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


class Timed(Protocol):
    """What the probe's timing step leaves for this one (``probe._Timing``)."""

    values: list[Any]
    wall: float
    cpu: float
    exhausted: bool
    first_sample: _gil.DuringItem | None
    #: Whether the first item's sample speaks for every item timed.
    first_stands: bool

    def ran(self, start: int, count: int) -> None: ...


def sample_gil(
    fn: Callable[[Any], Any],
    feed: Numbered,
    retry: RetryPolicy,
    limit: int,
    timing: Timed,
    measurement: Measurement,
    gil_matters: Callable[[Measurement], bool],
) -> ProbeRun:
    """Whether calls hold the GIL, if that can change the plan: from the first item's sample
    when it stands for the others, else from a few more items run as a pair."""
    call_seconds, cpu_fraction = measurement.call_seconds, measurement.cpu_fraction
    values, wall, cpu = timing.values, timing.wall, timing.cpu
    sample = call_seconds >= MIN_GIL_SECONDS and cpu_fraction >= MIN_GIL_CPU
    samples: list[_gil.Sample] = []
    if (
        sample
        and timing.first_sample is not None
        and timing.first_sample.held is not None
        and timing.first_stands
    ):
        samples.append(
            first_item.first_share(timing.first_sample)
        )  # a long first item, sampled while it ran
        if _gil.settled(samples):
            return ProbeRun(values, with_gil(measurement, samples), None, timing.exhausted)
    if timing.exhausted or not sample or len(values) >= limit or not gil_matters(measurement):
        return ProbeRun(values, measurement, None, timing.exhausted)
    count = max(1, min(MAX_SAMPLE_ITEMS, math.ceil(GIL_SAMPLE_SECONDS / call_seconds)))
    # The sample runs as a pair: as many items again on a helper thread, so that no core idles
    # while a GIL-free function is sampled (two threads then also compete for the GIL, as they
    # would on the thread backend).
    paired = cores() >= 2
    while True:
        items = feed.take(min(2 * count if paired else count, limit - len(values)))
        if not items:
            if samples:
                break
            return ProbeRun(values, measurement, None, True)
        start = feed.start
        host = HostSteal()
        if paired and len(items) >= 2:
            computes = cpu_fraction >= ALIKE_CPU
            result, held = _gil.sample_in_pairs(fn, items, start, retry, computes)
        else:
            result, share = _gil.sample(fn, items, start, retry)
            held = _gil.Sample(share)
        if host.stole():  # the host's time read as waits: this sample tells nothing
            held = replace(held, told=False)
        values.extend(result.values)
        timing.ran(start, len(result.values))
        if result.error is not None:
            return failed_run(values, result, wall, cpu)
        samples.append(held)
        if _gil.settled(samples) or len(values) >= limit:
            break
        count = min(4 * MAX_SAMPLE_ITEMS, _next_count(count, held, call_seconds, paired))
    return ProbeRun(values, with_gil(measurement, samples), None, False)


def _next_count(count: int, last: _gil.Sample, call_seconds: float, paired: bool) -> int:
    """Items for the next sample: twice as many (more evidence, a longer sample); after a pair
    crowded out by other programs (untold), enough for a pair of items that hold the GIL to
    last ``LONG_PAIR_SECONDS`` at once, the length at which a crowded pair still tells (see
    ``gil_evidence.Pair.long``), rather than doubling up to it one sample at a time."""
    if last.told or not paired:
        return 2 * count
    return max(2 * count, math.ceil(_gil.LONG_PAIR_SECONDS / (2 * call_seconds)))


def with_gil(measurement: Measurement, samples: list[_gil.Sample]) -> Measurement:
    """``measurement`` with the verdict ``samples`` come to."""
    gil_held = _gil.verdict(samples)
    return replace(
        measurement,
        releases_gil=_gil.releases(gil_held),
        doubt=_gil.doubt(gil_held),
        gil_held=gil_held,
    )


def with_steal(measurement: Measurement, share: float) -> Measurement:
    """``measurement``, with the share of the machine's CPU time the host took while the probe
    ran, and a doubt if that was enough to skew it (see ``clock.HostSteal``)."""
    if share < HOST_STOLE:
        return measurement
    doubt = (
        f"the host took {min(share, 1.0):.0%} of this machine's CPU time while the probe ran "
        "(steal time): its timings and GIL verdict may be off, so the next call measures again"
    )
    return replace(
        measurement,
        stolen=share,
        doubt=doubt if measurement.doubt is None else f"{measurement.doubt}; {doubt}",
    )


def cores() -> int:
    """The CPUs this process may use (container limits included)."""
    from .cost import cpu_count

    return cpu_count()
