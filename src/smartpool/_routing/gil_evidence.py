"""Weighing the evidence on the GIL: the sampler's wake-ups, and what two threads running items
at once did, into one verdict (see :mod:`smartpool._gil`, which measures them).

The sampler's few wake-ups can be misled on a busy machine: one that lands where code holding
the GIL hands it over reads "free". What two threads did cannot be faked that way: code that
holds the GIL cannot use more than one core's CPU time, and a thread that computes all along
does not wait of its own accord. Other programs only queue threads for a core, which
:mod:`smartpool._clock` tells apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .clock import Reading, Span

#: Held fraction below which a call counts as releasing the GIL, and above which as holding it.
RELEASES_BELOW = 0.1
HOLDS_ABOVE = 0.25
#: A first sample from ``RELEASES_BELOW`` up to this is not taken alone (see ``settled``).
CLEARLY_HELD = 0.95
#: Two threads that used more CPU time than this, per second of the pair's wall time, computed
#: at the same time: code that holds the GIL cannot, under any load.
TOGETHER_FREE = 1.3
#: Two threads whose CPU clocks together ran this much faster than the wall clock over any
#: short window computed at the same moment (see ``clock.Overlap``): the GIL was free then.
PEAK_FREE = 1.5
#: Items that compute all along when run alone, run on two threads: if the threads waited (not
#: computing, not queued for a core) for at least this share of the pair's wall time, they
#: waited for each other, for the GIL.
WAITED_HELD = 0.3
#: Two threads queued for a core this much, per second of the pair's wall time, hardly ran at
#: once: the pair is no verdict, and another, longer one is taken.
CROWDED = 0.3
#: The share a sample reports when the sampler and the pair disagree: not clear-cut (so
#: ``settled`` asks for another sample), and "held" unless later samples say otherwise.
UNSURE = 0.9
#: A crowded pair (see ``Pair.crowded``) that lasted this long, with the sampler queued for a
#: core less than ``LONG_SAMPLER_QUEUED`` of it, still tells "held" by the sampler's share when
#: that is at least ``LONG_HELD``: measured beside one spinning program on 2 cores, crowded
#: pairs of a pure-Python loop this long mostly read 0.6 to 1.0 held, sha256's 0.0 to 0.31.
#: Never "free": the wake-ups of a crowded sampler can miss every wait even over 20 ms (one
#: such pair of the loop read 0.06); that takes the pair's own evidence (both threads computing
#: at once).
LONG_PAIR_SECONDS = 0.02
LONG_HELD = 0.5
LONG_SAMPLER_QUEUED = 0.5


@dataclass(frozen=True)
class Pair:
    """What two threads running items at once did, per second of their wall time.

    Unlike the sampler's wake-ups, these cannot be faked by other programs: a busy machine
    queues threads for a core (and ``_clock`` tells that queueing apart); it neither makes
    threads that take turns for the GIL compute at the same time, nor makes threads that
    compute wait of their own accord.
    """

    #: CPU seconds of both threads per wall second: above ``TOGETHER_FREE``, both computed.
    cpu: float
    #: Seconds both threads waited (neither computing nor queued for a core), per wall second.
    waited: float
    #: Seconds both threads were queued for a core, per wall second.
    queued: float = 0.0
    #: CPU seconds of both threads per wall second over the short window in which they computed
    #: most at once: above ``PEAK_FREE``, both computed at the same moment.
    peak: float = 0.0
    #: Seconds the sampler was queued for a core, per wall second: its wake-ups tell little then.
    sampler_queued: float = 0.0
    #: The pair's wall time, seconds.
    seconds: float = 0.0

    @classmethod
    def of(
        cls,
        waiting: Reading,
        after: Reading,
        helper_began: float,
        helper: Span,
        sampler_queued: float = 0.0,
        peak: float = 0.0,
    ) -> Pair:
        """From the caller's readings before it handed the helper its job and after its own
        items, the helper's span, from when it started (and let the caller go on), the
        sampler's time queued for a core meanwhile, and the two threads' ``peak``."""
        end = max(after.wall, helper_began + helper.wall)
        wall = max(end - helper_began, 1e-9)
        mine = waiting.until(after)
        # Until the helper started, the caller waited for it (a thread waking up): only its
        # wait after that (for the GIL the helper held, most likely) counts.
        mine_waited = max(0.0, after.wall - helper_began - mine.cpu - mine.queued)
        # A thread taken off its core while it holds the GIL (a busy machine) keeps it for as
        # long as it stays queued, even code that holds it only a moment between calls that
        # release it: the other thread may wait all that time. That is no sign that the
        # function holds the GIL, so a thread's waits count only beyond the time the other
        # threads (and the sampler, which holds the GIL a moment at each wake-up) were queued.
        others = sampler_queued
        waited = max(0.0, mine_waited - helper.queued - others) + max(
            0.0, helper.blocked - mine.queued - others
        )
        return cls(
            (mine.cpu + helper.cpu) / wall,
            waited / wall,
            (mine.queued + helper.queued) / wall,
            peak,
            sampler_queued / wall,
            wall,
        )

    @property
    def crowded(self) -> bool:
        """Whether other programs kept the two threads from running at once, or the sampler
        from waking when it should: then neither threads that take turns for the GIL nor the
        sampler's wake-ups show what they would on free cores, and only a longer sample can
        tell."""
        return self.queued >= CROWDED or self.sampler_queued >= CROWDED

    @property
    def long(self) -> bool:
        """Whether the pair lasted long enough, the sampler seldom queued, for the sampler's
        share to tell "held" even though the pair was crowded (see ``LONG_PAIR_SECONDS``)."""
        return self.seconds >= LONG_PAIR_SECONDS and self.sampler_queued < LONG_SAMPLER_QUEUED

    def verdict(self, computes: bool) -> bool | None:
        """True: the GIL was free; False: the threads took turns for it; None: cannot tell.
        (Waiting tells only about items that compute all along when run alone.)"""
        if self.cpu >= TOGETHER_FREE or self.peak >= PEAK_FREE:
            return True
        if not computes:
            return None
        # (Little waiting proves nothing: on a busy machine one thread can stay queued for a
        # core while the other runs its items, and the two never compete for the GIL.)
        return False if self.waited >= WAITED_HELD else None


@dataclass(frozen=True)
class Sample:
    """One GIL sample's outcome: the share of the time the GIL was held (see ``sample``)."""

    held: float
    #: False: the sample could not tell (the pair was crowded out by other programs), and
    #: counts only if no sample could.
    told: bool = True


def combine(sampled: float, pair: Pair | None, computes: bool) -> Sample:
    """What a paired sample reports: the sampler's share, when the pair agrees or cannot tell.

    When they disagree, ``UNSURE`` (or the sampler's share, if lower: a call that holds the
    GIL part of the time computes beside another thread the rest of it), which ``settled``
    checks by another sample; when both say held, held outright. A pair crowded out by other
    programs, which tells nothing, makes the sample untold: that is when the sampler's few
    wake-ups mislead (they land where code that holds the GIL hands it over). A crowded pair
    that computed at once all the same is free, whatever the sampler's share (with two other
    programs spinning on 2 cores, sha256's paired threads peaked at 1.9 CPU seconds a second
    while the sampler read 0.28 and 0.34: "held"). A crowded pair that lasted long
    (``Pair.long``) tells "held" when the sampler's share is clearly so (``LONG_HELD``).
    """
    pair_free = None if pair is None else pair.verdict(computes)
    if pair_free is None:
        if pair is None or not pair.crowded:
            return Sample(sampled)
        if pair.long and sampled >= LONG_HELD:
            return Sample(max(sampled, CLEARLY_HELD))
        return Sample(sampled, told=False)
    if pair_free:
        if pair is not None and pair.crowded:
            return Sample(min(sampled, RELEASES_BELOW / 2))
        return Sample(sampled if releases(sampled) else min(sampled, UNSURE))
    return Sample(UNSURE if releases(sampled) else 1.0)


#: Samples taken at most (each longer than the one before): when those that told are no
#: verdict by then, the last (longest) few are.
MAX_SAMPLES = 5
LAST_SAMPLES = 3


def settled(samples: Sequence[Sample]) -> bool:
    """Whether the GIL samples so far are a verdict (see ``verdict``)."""
    return _told_verdict(samples) is not None or len(samples) >= MAX_SAMPLES


def verdict(samples: Sequence[Sample]) -> float:
    """The share held that the samples come to.

    One sample sees only a few of the sampler's wake-ups, and one of them late by chance (a
    thread starting, the host taking the core away) can make a GIL-free call look held, or the
    reverse. A first sample that is not clear-cut is checked by a second; two that disagree are
    settled by a third (the median). Samples that could not tell (``Sample.told``) are left
    out; if those that could are no verdict, the median of the last (longest) few that told,
    or else of the last few samples, is
    (held or free: then no share in between, which would say "holds it part of the time").
    """
    told = _told_verdict(samples)
    if told is not None:
        return told
    # Samples that told, if not clearly, still count for more than those that could not (the
    # items can run out before a clear verdict). Samples that hardly told cannot say "part of
    # the time" either: held or free.
    shares = [s.held for s in samples if s.told] or [s.held for s in samples]
    last = median(shares[-LAST_SAMPLES:])
    return last if releases(last) else max(last, HOLDS_ABOVE)


def _told_verdict(samples: Sequence[Sample]) -> float | None:
    told = [s.held for s in samples if s.told]
    if not told:
        return None
    if len(told) == 1:
        return None if RELEASES_BELOW <= told[0] < CLEARLY_HELD else told[0]
    if len(told) == 2 and releases(told[0]) != releases(told[1]):
        return None
    return median(told)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def releases(gil_held: float) -> bool:
    """True: releases the GIL."""
    return gil_held < (RELEASES_BELOW + HOLDS_ABOVE) / 2


def doubt(gil_held: float | None) -> str | None:
    if gil_held is None or gil_held <= RELEASES_BELOW or gil_held >= HOLDS_ABOVE:
        return None
    return (
        f"another thread could not run Python for {gil_held:.0%} of a call: the function "
        "releases the GIL part of the time"
    )
