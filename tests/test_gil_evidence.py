"""The GIL verdict on a busy machine: what two threads running items at once did (CPU time,
waits, time queued for a core) is weighed against the sampler's wake-ups, which other programs
can fake. Every measurement here is injected: these tests do not depend on the machine."""

from __future__ import annotations

import pytest

from smartpool._routing import clock as _clock
from smartpool._routing import gil as _gil
from smartpool._routing import gil_evidence as _gil_evidence
from smartpool._routing import probe as _probe
from smartpool._routing.clock import Reading, Span
from smartpool._work import feed as _feed

from .test_auto import script_paired_samples
from .workloads import nap, spin

#: ``computes``: the items computed all along when timed alone.
COMPUTES = True


@pytest.mark.parametrize(
    ("pair", "computes", "free"),
    [
        (_gil.Pair(cpu=1.8, waited=0.0), COMPUTES, True),  # both computed at once: GIL free
        (_gil.Pair(cpu=1.35, waited=0.4), COMPUTES, True),  # ...whatever else happened
        (_gil.Pair(cpu=1.0, waited=0.5), COMPUTES, False),  # took turns: one waited
        (_gil.Pair(cpu=0.5, waited=0.45, queued=0.6), COMPUTES, False),  # busy, still turns
        (_gil.Pair(cpu=1.0, waited=0.5), not COMPUTES, None),  # waits of their own
        # One thread queued for a core while the other ran: neither verdict can be read
        (_gil.Pair(cpu=1.0, waited=0.0, queued=0.5), COMPUTES, None),
        # ...unless in some window both computed at once: code holding the GIL cannot
        (_gil.Pair(cpu=1.0, waited=0.0, queued=0.9, peak=1.9), COMPUTES, True),
        (_gil.Pair(cpu=1.0, waited=0.5, peak=1.0), COMPUTES, False),
        (_gil.Pair(cpu=0.9, waited=0.05, queued=0.9), COMPUTES, None),
    ],
)
def test_a_pair_tells_the_gil_only_from_what_load_cannot_fake(
    pair: _gil.Pair, computes: bool, free: bool | None
) -> None:
    assert pair.verdict(computes) is free


def test_a_pair_counts_the_callers_wait_only_from_when_the_helper_started() -> None:
    """The caller waits for the helper to start (a thread waking up), then, holding no GIL,
    runs its items; only its wait after the helper started can be a wait for the GIL. The
    sampler's time queued for a core (it may hold the GIL meanwhile) is no wait for each other."""
    waiting = Reading(wall=10.0, cpu=5.0, queued=1.0)
    # The helper started at 10.001 and ran 2 ms: 1 ms of CPU, 1 ms waiting for the GIL.
    helper = Span(wall=0.002, cpu=0.001, queued=0.0)
    # The caller waited for the GIL until 10.002, then computed 1 ms.
    after = Reading(wall=10.003, cpu=5.001, queued=1.0)
    pair = _gil.Pair.of(waiting, after, 10.001, helper)
    assert pair.seconds == pytest.approx(0.002)
    assert pair.cpu == pytest.approx(1.0)
    assert pair.waited == pytest.approx(1.0)
    assert pair.verdict(COMPUTES) is False
    # The same waits, all while the sampler sat queued for a core: they tell nothing.
    unsure = _gil.Pair.of(waiting, after, 10.001, helper, sampler_queued=0.001)
    assert unsure.waited == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("sampled", "pair", "held", "told"),
    [
        (0.0, None, 0.0, True),  # no pair evidence: the sampler's
        (0.02, _gil.Pair(cpu=1.9, waited=0.0), 0.02, True),  # agree
        (1.0, _gil.Pair(cpu=1.0, waited=0.5), 1.0, True),  # agree
        (0.4, _gil.Pair(cpu=1.0, waited=0.5), 1.0, True),  # agree it is held: held outright
        # The busy-machine error: a wake-up in a GIL hand-over gap reads 0.0, but the threads
        # took turns. Not "free": unsure, held unless more samples say otherwise.
        (0.0, _gil.Pair(cpu=1.0, waited=0.5), _gil.UNSURE, True),
        # Holds the GIL part of the time, computes beside the other thread the rest of it
        (0.4, _gil.Pair(cpu=1.4, waited=0.1), 0.4, True),
        # Crowded out: the pair tells nothing, and the sample is not counted
        (0.0, _gil.Pair(cpu=1.0, waited=0.0, queued=0.5), 0.0, False),
        # ...nor when the sampler sat queued for a core (its wake-ups came late or not at all)
        (0.02, _gil.Pair(cpu=1.03, waited=0.0, sampler_queued=0.6), 0.02, False),
        # Crowded, yet the two computed at once: free, whatever the sampler's few wake-ups say
        (
            0.34,
            _gil.Pair(cpu=0.62, waited=0.0, queued=0.8, peak=1.93),
            _gil.RELEASES_BELOW / 2,
            True,
        ),
        # Crowded but long, the sampler seldom queued: its many wake-ups tell "held"...
        (0.8, _gil.Pair(cpu=1.0, waited=0.0, queued=0.6, seconds=0.025), _gil.CLEARLY_HELD, True),
        (1.0, _gil.Pair(cpu=1.0, waited=0.0, queued=0.6, seconds=0.025), 1.0, True),
        # ...never "free" (every wake-up can land in a hand-over), nor anything unclear
        (0.05, _gil.Pair(cpu=1.0, waited=0.0, queued=0.6, seconds=0.025), 0.05, False),
        (0.3, _gil.Pair(cpu=1.0, waited=0.0, queued=0.6, seconds=0.025), 0.3, False),
        # Not long enough, or the sampler queued too much of it: untold, as any crowded pair
        (0.9, _gil.Pair(cpu=1.0, waited=0.0, queued=0.6, seconds=0.015), 0.9, False),
        (
            0.9,
            _gil.Pair(cpu=1.0, waited=0.0, queued=0.6, sampler_queued=0.5, seconds=0.025),
            0.9,
            False,
        ),
    ],
)
def test_the_sampler_and_the_pair_are_combined(
    sampled: float, pair: _gil.Pair | None, held: float, told: bool
) -> None:
    assert _gil.combine(sampled, pair, COMPUTES) == _gil.Sample(held, told)


@pytest.mark.parametrize(
    ("samples", "settled", "releases"),
    [
        ([_gil.Sample(0.02)], True, True),
        ([_gil.Sample(_gil.UNSURE)], False, False),  # not clear-cut: another sample
        ([_gil.Sample(_gil.UNSURE), _gil.Sample(1.0)], True, False),
        ([_gil.Sample(_gil.UNSURE), _gil.Sample(0.0), _gil.Sample(1.0)], True, False),
        # Samples that could not tell do not count...
        ([_gil.Sample(0.0, told=False), _gil.Sample(1.0)], True, False),
        ([_gil.Sample(0.0, told=False)] * 2, False, None),
        # ...unless none of them could: then the last (longest) few decide
        ([_gil.Sample(s, told=False) for s in (0.0, 0.0, 0.9, 0.8, 0.7)], True, False),
        ([_gil.Sample(s, told=False) for s in (0.9, 0.0, 0.01, 0.0, 0.6)], True, True),
        # Items ran out before a clear verdict: a sample that told, if unclearly, counts first
        ([_gil.Sample(0.0, told=False)] * 2 + [_gil.Sample(_gil.UNSURE)], False, False),
    ],
)
def test_samples_come_to_a_verdict(
    samples: list[_gil.Sample], settled: bool, releases: bool | None
) -> None:
    assert _gil.settled(samples) is settled
    if releases is not None:
        assert _gil.releases(_gil.verdict(samples)) is releases


def test_a_busy_machine_cannot_make_pure_python_look_gil_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure this guards against, end to end: paired samples on a machine whose other
    programs crowd out the pair (untold) while the sampler is fooled into "free" twice, then
    longer samples whose threads took turns (the pair says held, the sampler still free)."""
    monkeypatch.setattr(_gil, "SAMPLE_AFTER", 3600.0)  # no first-item sample: paired ones
    crowded = _gil.Sample(0.0, told=False)
    turns = _gil.combine(0.0, _gil.Pair(cpu=1.0, waited=0.5), COMPUTES)
    taken = script_paired_samples(monkeypatch, [crowded, crowded, turns, turns])
    items = list(range(2000, 3200))
    probe = _probe.probe_items(spin, _feed.Feed(items))
    assert probe.measurement.releases_gil is False
    assert len(taken) == 4
    assert taken[1] > taken[0]  # after a sample that could not tell, a longer one
    assert probe.values == [spin(n) for n in items[: len(probe.values)]]


def test_after_a_crowded_sample_the_next_lasts_long_enough_to_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Doubling from a ~1 ms pair up to one long enough to tell on a crowded machine took five
    samples (~90 ms of a pure-Python loop run in the caller beside one spinning program); after
    an untold sample the next is sized for ``LONG_PAIR_SECONDS`` of items that hold the GIL."""
    monkeypatch.setattr(_gil, "SAMPLE_AFTER", 3600.0)  # no first-item sample: paired ones
    crowded = _gil.Sample(0.0, told=False)
    taken = script_paired_samples(monkeypatch, [crowded, _gil.Sample(1.0)])
    items = list(range(2000, 3200))
    probe = _probe.probe_items(spin, _feed.Feed(items))
    assert probe.measurement.releases_gil is False
    assert len(taken) == 2
    per_call = probe.measurement.call_seconds
    # Half of the items on each thread, one after the other while the GIL is held: the pair
    # lasts about this long (the ceiling of the count, within one item each side).
    assert taken[1] * per_call >= _gil.LONG_PAIR_SECONDS - 2 * per_call
    assert taken[1] > 2 * taken[0]


def test_a_told_sample_is_doubled_not_stretched(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample that told, unclearly, is checked by one twice as long, as before: only a
    crowded-out one jumps to the length at which crowding stops mattering."""
    monkeypatch.setattr(_gil, "SAMPLE_AFTER", 3600.0)
    taken = script_paired_samples(monkeypatch, [_gil.UNSURE, 1.0])
    _probe.probe_items(spin, _feed.Feed(list(range(2000, 3200))))
    assert taken[1] == 2 * taken[0]


def test_a_nap_baseline_taken_on_a_busy_moment_is_corrected_by_later_naps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A calibration skewed high would hide every wait for the GIL (pure Python would look
    free) for the rest of the process: the naps of later samples bring it down, never up."""
    monkeypatch.setattr(_gil, "_nap_overshoot", [0.004])  # as if measured while crowded out
    assert _gil._nap_baseline([0.00006] * 3) == 0.004  # too few naps to go by
    naps = [0.00005, 0.00006, 0.00007, 0.003, 0.00006]  # one wait for the GIL among them
    assert _gil._nap_baseline(naps) == pytest.approx(0.00006)
    assert _gil._nap_baseline([0.002] * 8) == pytest.approx(0.00006)  # GIL waits: not raised


def test_a_sample_measures_waits_against_the_corrected_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end: with a baseline skewed far too high, the sampler's naps beside an item
    that only sleeps (the GIL is free) correct it within one sample."""
    monkeypatch.setattr(_gil, "_nap_overshoot", [0.05])
    _gil.sample(nap, [0.01], 0)
    assert _gil._nap_overshoot[0] < 0.05


def test_samples_that_hardly_told_do_not_say_part_of_the_time() -> None:
    """On a crowded machine the last samples' median can fall where a clear verdict would say
    "holds the GIL part of the time" (and the planner would count on threads for the rest):
    from samples that could not tell, that is only "held"."""
    untold = [_gil.Sample(s, told=False) for s in (0.5, 0.0, 0.01, 0.22, 0.98)]
    held = _gil.verdict(untold)
    assert not _gil.releases(held)
    assert _gil.doubt(held) is None


class _Clocks:
    """Two threads' CPU clocks as a script: each read returns the next value."""

    def __init__(self, readings: list[tuple[float, float]]) -> None:
        self._readings = iter(readings)
        self._pending: list[float] = []

    def read(self, clock_id: int) -> float:
        if not self._pending:
            self._pending = list(next(self._readings))
        return self._pending.pop(0)


@pytest.mark.parametrize(
    ("advances", "free"),
    [
        # Taking turns (the GIL held): together never faster than the wall clock
        ([(0.0009, 0.0), (0.0, 0.0009), (0.0005, 0.0004)], False),
        # Both computing in one window: the GIL was free then
        ([(0.0009, 0.0), (0.0009, 0.0009)], True),
    ],
)
def test_two_threads_computing_at_once_are_seen_in_a_short_window(
    monkeypatch: pytest.MonkeyPatch, advances: list[tuple[float, float]], free: bool
) -> None:
    """The sampler reads both threads' CPU clocks at each wake-up; windows are ~1 ms here."""
    totals, a, b = [(0.0, 0.0)], 0.0, 0.0
    for step_a, step_b in advances:
        a, b = a + step_a, b + step_b
        totals.append((a, b))
    clocks = _Clocks(totals)
    # Each read: the wall clock before and just after the two CPU clocks, 1 ms apart.
    walls = iter(t for i in range(100) for t in (i * 0.001, i * 0.001 + 0.00001))
    monkeypatch.setattr(_clock.time, "clock_gettime", clocks.read)
    monkeypatch.setattr(_clock.time, "perf_counter", lambda: next(walls))
    overlap = _clock.Overlap()
    overlap._clocks = [1, 2]  # (as ``watch`` would, from each thread)
    for _ in totals:
        overlap.read()
    assert (overlap.peak >= _gil_evidence.PEAK_FREE) is free
    assert overlap.peak <= 2.0
