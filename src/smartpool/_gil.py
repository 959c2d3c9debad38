"""Whether a function holds the GIL, measured while it runs on real items.

A sampler thread sleeps in short naps and times how late each wake-up is before it can run
Python again. Code that releases the GIL (hashlib, zlib, NumPy, waiting) lets it in at once;
pure-Python code makes it wait for the interpreter's switch interval. Time queued for a core on a
busy machine is not counted (see ``_clock``), so a crowded machine does not make GIL-free code
look GIL-bound. :mod:`smartpool._probe` decides when to sample and on which items.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._clock import ThreadClock
from ._task import NO_RETRY, ChunkResult, RetryPolicy, run_chunk

#: How long the sampler naps between wake-ups, and how many naps calibrate it.
SAMPLE_NAP = 0.0002
CALIBRATION_NAPS = 3
#: Held fraction below which a call counts as releasing the GIL, and above which as holding it.
RELEASES_BELOW = 0.1
HOLDS_ABOVE = 0.25
#: A first sample from ``RELEASES_BELOW`` up to this is not taken alone (see ``settled``).
CLEARLY_HELD = 0.95


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
