"""Whether a function holds the GIL, measured while it runs on real items.

A sampler thread sleeps in short naps and times how late each wake-up is before it can run
Python again. Code that releases the GIL (hashlib, zlib, NumPy, waiting) lets it in at once;
pure-Python code makes it wait for the interpreter's switch interval. Time queued for a core on a
busy machine is not counted (see ``_clock``), so a crowded machine does not make GIL-free code
look GIL-bound. :mod:`smartpool._probe` decides when to sample and on which items.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ResourceLimitError
from .._work import deadline as _deadline
from .._work.spare_threads import Job, spare
from .._work.task import NO_RETRY, ChunkResult, RetryPolicy, run_chunk
from .clock import CpuClock, Overlap, Reading, Span, ThreadClock, queued_seconds
from .gil_evidence import CLEARLY_HELD as CLEARLY_HELD
from .gil_evidence import HOLDS_ABOVE as HOLDS_ABOVE
from .gil_evidence import LONG_PAIR_SECONDS as LONG_PAIR_SECONDS
from .gil_evidence import RELEASES_BELOW as RELEASES_BELOW
from .gil_evidence import TOGETHER_FREE as TOGETHER_FREE
from .gil_evidence import UNSURE as UNSURE
from .gil_evidence import Pair as Pair
from .gil_evidence import Sample as Sample
from .gil_evidence import combine as combine
from .gil_evidence import doubt as doubt
from .gil_evidence import median as median
from .gil_evidence import releases as releases
from .gil_evidence import settled as settled
from .gil_evidence import verdict as verdict

#: How long the sampler naps between wake-ups, and how many naps calibrate it.
SAMPLE_NAP = 0.0002
CALIBRATION_NAPS = 3
#: ``DuringItem`` starts sampling once the item has run this long, and keeps a sample only if
#: the sampler woke up at least ``MIN_WAKE_UPS`` times.
SAMPLE_AFTER = 0.001
MIN_WAKE_UPS = 2
#: ...and stops after this many, to give the watcher back to its deadlines on a long item.
MAX_WAKE_UPS = 24
#: A first wake-up this late (in switch intervals) is a verdict of its own: the item holds the GIL.
CLEARLY_LATE = 0.5
#: Wake-ups after which ``DuringItem`` decides whether to start its helper, and the share of
#: the time so far the item must have computed for it.
HELPER_AFTER = 4
HELP_BESIDE_CPU = 0.5


def sample(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    index: int,
    retry: RetryPolicy = NO_RETRY,
    beside: Callable[[], object] | None = None,
    pair: list[Pair] | None = None,
) -> tuple[ChunkResult, float]:
    """Run ``items`` here while a sampler thread measures how long it waits for the GIL.

    ``beside``, if given, runs on a helper thread started once the sampler naps (a thread
    started while another one runs Python waits for the GIL just to start, a millisecond or
    more); it has finished when this returns, unless Ctrl-C cut the sample short. What this
    thread and the helper used of the CPU meanwhile is appended to ``pair``, if given.
    """
    napping = threading.Event()
    done = threading.Event()
    overshoots: list[float] = []  # how far each nap overshot, GIL waits included
    sampler_queued: list[float] = []
    overlap = Overlap()  # how much this thread and the helper computed at once, at most

    def sampler() -> None:
        with ThreadClock() as clock:
            _nap_baseline()  # the caller waits for ``napping``: nobody else runs
            while not done.is_set():
                before = clock.read()
                napping.set()  # the items start only once a nap is under way and being timed
                time.sleep(SAMPLE_NAP)
                span = before.until(clock.read())
                overshoots.append(span.blocked - SAMPLE_NAP)
                sampler_queued.append(span.queued)
                overlap.read()

    sampling = spare.start(sampler)  # kept threads: starting one costs a tenth of a sample
    helper = None
    waiting: Reading | None = None
    queued_known = False
    helper_started = threading.Event()
    helper_spans: list[tuple[float, Span]] = []  # when the helper started, and its span

    def run_beside() -> None:
        assert beside is not None
        with ThreadClock() as clock:
            began = clock.read()
            overlap.watch()
            helper_started.set()
            beside()
            helper_spans.append((began.wall, began.until(clock.read())))

    try:
        napping.wait()
        with ThreadClock() as clock:
            if beside is not None:
                overlap.watch()
                waiting = clock.read()
                helper = spare.start(run_beside)
                # The items here start once the helper runs: both then want the GIL (or not)
                # at once, which is what the pair is to tell.
                helper_started.wait()
            before = clock.read()
            result = run_chunk(fn, items, index, retry)
            after = clock.read()
            mine = before.until(after)
            queued_known = clock.stats_fd is not None  # else a busy machine looks like waits
    finally:
        done.set()  # on Ctrl-C too: the sampler must not nap for ever
    sampling.join()
    if helper is not None:
        helper.join()  # (on Ctrl-C it is left to finish its items, then waits for other work)
        if pair is not None and waiting is not None and helper_spans and queued_known:
            pair.append(
                Pair.of(waiting, after, *helper_spans[0], sum(sampler_queued), overlap.peak)
            )
    # The share of the call during which the sampler could not get the GIL back. (A thread
    # preempted while holding the GIL still holds it; the sampler's own time queued for a core
    # is not a wait for the GIL, and ``Span.blocked`` leaves it out.)
    baseline = _nap_baseline(overshoots)
    waits = sum(max(0.0, overshoot - baseline) for overshoot in overshoots)
    return result, min(1.0, waits / max(mine.wall, 1e-9))


_watchers_ready: list[object] = []
#: The deadline watcher's stats file (see ``_clock``), to tell its time queued for a core.
_watcher_stats: list[int | None] = [None]


def _open_watcher_stats(_: object) -> None:
    _watcher_stats[:] = [ThreadClock().stats_fd]


class DuringItem:
    """Sample the GIL while the caller runs one item, from ``SAMPLE_AFTER`` into it.

    The first item of a job is timed alone; when it turns out long, this sample of it is a
    first GIL verdict that costs no extra items. The already running deadline watcher does the
    sampling (see ``_deadline.call_at``), so an item that ends sooner costs a deadline armed and
    disarmed, not a thread. The watcher's first wake-up, at the deadline itself, counts too: how
    late it got the GIL is what the item held from then on, and half a switch interval late is a
    verdict of its own (held), so pure Python gives up the GIL to the sampler only once. Use as
    a context manager around the item; ``held`` is then the share of the sampled span the GIL
    was held, or None.

    ``beside``, if given, is started on a helper thread once the first ``HELPER_AFTER`` wake-ups
    show the GIL free: a long GIL-free item then leaves no core idle while it is timed. (Never
    for code that holds the GIL: the helper would slow the timed item down.) It has finished
    when the ``with`` block ends, unless Ctrl-C cut it short; ``helped`` tells if it ran.
    ``then``, if given, runs on the watcher's thread once sampling is over (only for an item
    that lasted ``SAMPLE_AFTER``: a short item costs nothing more).
    """

    def __init__(
        self, beside: Callable[[], object] | None = None, then: Callable[[], object] | None = None
    ) -> None:
        self.held: float | None = None
        self._then = then
        self.helped = False
        #: CPU seconds of the item and the one beside it per second of their wall time, when
        #: a helper ran (set by the probe, which times both): see ``Pair``.
        self.together: float | None = None
        self._beside = beside
        self._helper: Job | None = None
        self._item_cpu: CpuClock | None = None
        self._lock = threading.Lock()
        self._ended = False
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._sampling = False
        self._deadline = 0.0
        #: What the sampler saw: the wait up to its first clock reading, its naps, and the span
        #: from that reading to its last.
        self._late = 0.0
        self._watcher_queued: float | None = None
        #: The item's thread's stats file, and its time queued for a core when the item started.
        self._item_fd: int | None = None
        self._item_queued = 0.0
        self._held_at_once = False
        self._naps = 0
        self._span: Span | None = None
        self._token = -1

    @staticmethod
    def prepare() -> None:
        """Have the watcher open its per-thread stats file now, once per process: opening it
        during a first sample would count as a wait for the GIL, and the caller reads from it
        how long the watcher was queued for a core (which is no wait for the GIL)."""
        watcher = _deadline.watcher  # a forked child gets a new one
        if watcher not in _watchers_ready:
            _watchers_ready[:] = [watcher]
            _watcher_stats[:] = [None]
            watcher.call_at(0.0, _open_watcher_stats, None)

    def __enter__(self) -> DuringItem:
        if self._beside is not None:
            self._item_cpu = CpuClock.of_this_thread()
        fd = _watcher_stats[0]
        self._watcher_queued = None if fd is None else queued_seconds(fd)
        self._item_fd = ThreadClock().stats_fd
        self._item_queued = queued_seconds(self._item_fd)
        self._deadline = time.perf_counter() + SAMPLE_AFTER
        self._token = _deadline.watcher.call_at(self._deadline, DuringItem._sample, self)
        return self

    def _sample(self) -> None:
        """On the deadline watcher's thread, if the item still runs: nap until it ends (or
        ``MAX_WAKE_UPS`` times) and keep the wall, CPU and queued times the naps spanned."""
        with self._lock:
            if self._ended:
                return
            self._sampling = True
        try:
            # Unless the watcher only waited for a core (a busy machine), an item that kept the
            # GIL from it this long holds the GIL. Sampling on would only take the GIL from the
            # item being timed, again and again. (The cheap test first: reading the queued
            # time is a system call.)
            late, clearly = (
                time.perf_counter() - self._deadline,
                CLEARLY_LATE * sys.getswitchinterval(),
            )
            if late >= clearly and late - self._queued_since(_watcher_stats[0]) >= clearly:
                # ...nor only waited for an item taken off its core while it held the GIL a
                # moment (code that releases it, between two calls that do): then the naps
                # below tell.
                item_queued = queued_seconds(self._item_fd) - self._item_queued
                if late - self._queued_since(_watcher_stats[0]) - item_queued >= clearly:
                    self._held_at_once = True
                    return
            with ThreadClock() as clock:
                first = clock.read()
                # From the deadline to here the watcher waited for the GIL (to wake, and again
                # after reading its stats file), give or take the timer's slack, unless it was
                # queued for a core. (The item's own time queued is not taken off, here or from
                # the naps: pure Python holds the GIL all the while it is queued too, and the
                # wait it then causes is the sign of it.)
                self._late = first.wall - self._deadline - self._queued_since(clock.stats_fd)
                naps = 0
                while naps < MAX_WAKE_UPS and not self._stop.is_set():
                    time.sleep(SAMPLE_NAP)
                    naps += 1
                    if naps == HELPER_AFTER and self._beside is not None:
                        self._maybe_help(first.until(clock.read()), naps)
                span = first.until(clock.read())
            self._naps, self._span = naps, span
        finally:
            self._finished.set()
            if self._then is not None:  # what follows once the item is known not short
                self._then()

    def _queued_since(self, fd: int | None) -> float:
        """The watcher's time queued for a core since the item started (0 if unknown)."""
        if self._watcher_queued is None or fd is None:
            return 0.0
        return max(0.0, queued_seconds(fd) - self._watcher_queued)

    def _waits(self, span: Span, naps: int, baseline: float) -> float:
        """Seconds of ``span`` (and of the wait before it) spent waiting for the GIL."""
        naps_and_wake_up = naps * (SAMPLE_NAP + baseline) + baseline  # the timer's overshoot
        return max(0.0, self._late + span.blocked - naps_and_wake_up)

    def _maybe_help(self, so_far: Span, naps: int) -> None:
        if self._helper is not None:
            return
        # The baseline may not be measured yet (it needs the interpreter to itself); a generous
        # guess only matters near the threshold, and code that holds the GIL is far above it.
        baseline = _nap_overshoot[0] if _nap_overshoot else 0.0001
        waits = self._waits(so_far, naps, baseline)
        if waits >= HOLDS_ABOVE * (self._late + so_far.wall) or self._stop.is_set():
            return
        # Only beside an item that computes: beside one that waits, the next item would only
        # make the caller wait for it (the plan runs waiting items on many threads anyway).
        queued = max(0.0, queued_seconds(self._item_fd) - self._item_queued)
        if self._item_cpu is None or self._item_cpu.fraction(queued) < HELP_BESIDE_CPU:
            return
        assert self._beside is not None
        try:
            self._helper = spare.start(self._beside)
        except ResourceLimitError:  # no thread to spare: the item after runs in turn, as usual
            return
        self.helped = True

    def __exit__(self, *exc_info: object) -> None:
        _deadline.watcher.disarm(self._token)
        with self._lock:
            self._ended = True
            sampling = self._sampling
        self._stop.set()  # on Ctrl-C too: the watcher must get back to its deadlines
        if not sampling or exc_info[0] is not None:
            return
        self._finished.wait()
        if self._helper is not None:
            self._helper.join()
        if self._held_at_once:
            self.held = 1.0
            return
        span = self._span
        if span is None or self._naps + 1 < MIN_WAKE_UPS:
            return
        # Every moment from the deadline on, the sampler napped, ran, was queued for a core, or
        # waited for the GIL: whatever is left once the naps (with their usual overshoot) and
        # its own running are taken out was a wait for the GIL. Measuring the whole span, not
        # nap by nap, also counts waits for the GIL after reading the clock (a system call).
        waits = self._waits(span, self._naps, _nap_baseline())  # measured now if need be
        # Against code that never lets go, each wait lasts a switch interval and each nap
        # takes its share of the span too: that is what "held all the time" looks like here.
        switch = sys.getswitchinterval()
        most = switch / (switch + SAMPLE_NAP)
        self.held = min(1.0, waits / max(most * (self._late + span.wall), 1e-9))


def sample_in_pairs(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    index: int,
    retry: RetryPolicy = NO_RETRY,
    computes: bool = False,
) -> tuple[ChunkResult, Sample]:
    """Sample on the first half of ``items`` while a helper thread runs the second half (the
    larger half, when odd, is the sampled one); results joined as if they had run in order.

    The share held is the sampler's, weighed against how much CPU the two threads used at once
    (see ``Pair`` and ``combine``); ``computes`` tells that the items computed all along when
    timed alone, so that two threads that took turns can only have taken turns for the GIL.
    """
    half = (len(items) + 1) // 2
    _nap_baseline()  # before the helper runs: calibration needs the interpreter to itself
    second: list[ChunkResult] = []

    def run_second() -> None:
        second.append(run_chunk(fn, items[half:], index + half, retry))

    pair: list[Pair] = []
    first, gil_held = sample(fn, items[:half], index, retry, beside=run_second, pair=pair)
    if first.error is None:
        first.values.extend(second[0].values)
        first.error = second[0].error
    return first, combine(gil_held, pair[0] if pair else None, computes)


_nap_overshoot: list[float] = []
#: Naps a sample needs before their median may correct the baseline (see ``_nap_baseline``).
BASELINE_NAPS = 5


def _nap_baseline(seen: Sequence[float] = ()) -> float:
    """How far a nap overshoots with nobody else running: the timer's slack, a property of the
    system, measured once per process (on whichever thread asks first).

    A calibration made while the machine was busy can come out too high, and would then make
    every later wait for the GIL look shorter (code that holds the GIL, free). So it is
    corrected, never upward, by the naps later samples ``seen``: their median, taken over
    enough of them, is the usual overshoot when they found the GIL free, and more otherwise.
    """
    if not _nap_overshoot:
        with ThreadClock() as clock:
            naps: list[float] = []
            for _ in range(CALIBRATION_NAPS):
                before = clock.read()
                time.sleep(SAMPLE_NAP)
                naps.append(before.until(clock.read()).blocked - SAMPLE_NAP)
        _nap_overshoot.append(max(0.0, min(naps)))
    if len(seen) >= BASELINE_NAPS:
        _nap_overshoot[0] = max(0.0, min(_nap_overshoot[0], median(seen)))
    return _nap_overshoot[0]
