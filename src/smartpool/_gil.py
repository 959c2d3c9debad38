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

from . import _deadline
from ._clock import Span, ThreadClock
from ._task import NO_RETRY, ChunkResult, RetryPolicy, run_chunk

#: How long the sampler naps between wake-ups, and how many naps calibrate it.
SAMPLE_NAP = 0.0002
CALIBRATION_NAPS = 3
#: Held fraction below which a call counts as releasing the GIL, and above which as holding it.
RELEASES_BELOW = 0.1
HOLDS_ABOVE = 0.25
#: A first sample from ``RELEASES_BELOW`` up to this is not taken alone (see ``settled``).
CLEARLY_HELD = 0.95
#: ``DuringItem`` starts sampling once the item has run this long, and keeps a sample only if
#: the sampler woke up at least ``MIN_WAKE_UPS`` times.
SAMPLE_AFTER = 0.001
MIN_WAKE_UPS = 2
#: ...and stops after this many, to give the watcher back to its deadlines on a long item.
MAX_WAKE_UPS = 24


def sample(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    index: int,
    retry: RetryPolicy = NO_RETRY,
    beside: Callable[[], object] | None = None,
) -> tuple[ChunkResult, float]:
    """Run ``items`` here while a sampler thread measures how long it waits for the GIL.

    ``beside``, if given, runs on a helper thread started once the sampler naps (a thread
    started while another one runs Python waits for the GIL just to start, a millisecond or
    more); it has finished when this returns, unless Ctrl-C cut the sample short.
    """
    napping = threading.Event()
    done = threading.Event()
    waits: list[float] = []

    def sampler() -> None:
        with ThreadClock() as clock:
            baseline = _nap_baseline()  # the caller waits for ``napping``: nobody else runs
            while not done.is_set():
                before = clock.read()
                napping.set()  # the items start only once a nap is under way and being timed
                time.sleep(SAMPLE_NAP)
                span = before.until(clock.read())
                waits.append(max(0.0, span.blocked - SAMPLE_NAP - baseline))

    thread = threading.Thread(target=sampler, name="smartpool-gil-probe", daemon=True)
    thread.start()
    helper = None
    try:
        napping.wait()
        if beside is not None:
            helper = threading.Thread(target=beside, name="smartpool-probe-helper", daemon=True)
            helper.start()
        with ThreadClock() as clock:
            before = clock.read()
            result = run_chunk(fn, items, index, retry)
            mine = before.until(clock.read())
    finally:
        done.set()  # on Ctrl-C too: the sampler must not nap for ever
    thread.join()
    if helper is not None:
        helper.join()  # (on Ctrl-C it is left, a daemon, to finish its items)
    # The share of the call during which the sampler could not get the GIL back. (A thread
    # preempted while holding the GIL still holds it; the sampler's own time queued for a core
    # is not a wait for the GIL, and ``Span.blocked`` leaves it out.)
    return result, min(1.0, sum(waits) / max(mine.wall, 1e-9))


class DuringItem:
    """Sample the GIL while the caller runs one item, from ``SAMPLE_AFTER`` into it.

    The first item of a job is timed alone; when it turns out long, this sample of it is a
    first GIL verdict that costs no extra items. The already running deadline watcher does the
    sampling (see ``_deadline.call_at``), so an item that ends sooner costs a deadline armed and
    disarmed, not a thread. The watcher's first wake-up, at the deadline itself, counts too: how
    late it got the GIL is what the item held from then on. Use as a context manager around
    the item; ``held`` is then the share of the sampled span the GIL was held, or None.
    """

    def __init__(self) -> None:
        self.held: float | None = None
        self._lock = threading.Lock()
        self._ended = False
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._sampling = False
        self._deadline = 0.0
        #: What the sampler saw: the wait up to its first clock reading, its naps, and the span
        #: from that reading to its last.
        self._late = 0.0
        self._naps = 0
        self._span: Span | None = None
        self._token = -1

    def __enter__(self) -> DuringItem:
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
            with ThreadClock() as clock:
                first = clock.read()
                # From the deadline to here the watcher waited for the GIL (to wake, and again
                # after opening its stats file), give or take the timer's slack.
                self._late = first.wall - self._deadline
                naps = 0
                while naps < MAX_WAKE_UPS and not self._stop.is_set():
                    time.sleep(SAMPLE_NAP)
                    naps += 1
                span = first.until(clock.read())
            self._naps, self._span = naps, span
        finally:
            self._finished.set()

    def __exit__(self, *exc_info: object) -> None:
        _deadline.watcher.disarm(self._token)
        with self._lock:
            self._ended = True
            sampling = self._sampling
        self._stop.set()  # on Ctrl-C too: the watcher must get back to its deadlines
        if not sampling or exc_info[0] is not None:
            return
        self._finished.wait()
        span = self._span
        if span is None or self._naps + 1 < MIN_WAKE_UPS:
            return
        # Every moment from the deadline on, the sampler napped, ran, was queued for a core, or
        # waited for the GIL: whatever is left once the naps (with their usual overshoot) and
        # its own running are taken out was a wait for the GIL. Measuring the whole span, not
        # nap by nap, also counts waits for the GIL after reading the clock (a system call).
        naps = self._naps * (SAMPLE_NAP + _nap_baseline())  # measured now if need be
        waits = self._late + max(0.0, span.blocked - naps)
        # Against code that never lets go, each wait lasts a switch interval and each nap
        # takes its share of the span too: that is what "held all the time" looks like here.
        switch = sys.getswitchinterval()
        most = switch / (switch + SAMPLE_NAP)
        self.held = min(1.0, waits / max(most * (self._late + span.wall), 1e-9))


def sample_in_pairs(
    fn: Callable[[Any], Any], items: Sequence[Any], index: int, retry: RetryPolicy = NO_RETRY
) -> tuple[ChunkResult, float]:
    """Sample on the first half of ``items`` while a helper thread runs the second half (the
    larger half, when odd, is the sampled one); results joined as if they had run in order."""
    half = (len(items) + 1) // 2
    _nap_baseline()  # before the helper runs: calibration needs the interpreter to itself
    second: list[ChunkResult] = []

    def run_second() -> None:
        second.append(run_chunk(fn, items[half:], index + half, retry))

    first, gil_held = sample(fn, items[:half], index, retry, beside=run_second)
    if first.error is None:
        first.values.extend(second[0].values)
        first.error = second[0].error
    return first, gil_held


def settled(samples: Sequence[float]) -> bool:
    """Whether the GIL samples so far are a verdict. One sample sees only a few of the
    sampler's wake-ups, and one of them late by chance (a thread starting, the host taking the
    core away) can make a GIL-free call look held, or the reverse. A first sample that is not
    clear-cut is checked by a second; two that disagree are settled by a third (the median)."""
    if len(samples) == 1:
        return not RELEASES_BELOW <= samples[0] < CLEARLY_HELD
    if len(samples) == 2:
        return releases(samples[0]) == releases(samples[1])
    return True


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def releases(gil_held: float) -> bool:
    """True: releases the GIL."""
    return gil_held < (RELEASES_BELOW + HOLDS_ABOVE) / 2


_nap_overshoot: list[float] = []


def _nap_baseline() -> float:
    """How far a nap overshoots with nobody else running: the timer's slack, a property of the
    system, measured once per process (on whichever thread asks first)."""
    if not _nap_overshoot:
        with ThreadClock() as clock:
            naps: list[float] = []
            for _ in range(CALIBRATION_NAPS):
                before = clock.read()
                time.sleep(SAMPLE_NAP)
                naps.append(before.until(clock.read()).blocked - SAMPLE_NAP)
        _nap_overshoot.append(min(naps))
    return _nap_overshoot[0]


def doubt(gil_held: float | None) -> str | None:
    if gil_held is None or gil_held <= RELEASES_BELOW or gil_held >= HOLDS_ABOVE:
        return None
    return (
        f"another thread could not run Python for {gil_held:.0%} of a call: the function "
        "releases the GIL part of the time"
    )
