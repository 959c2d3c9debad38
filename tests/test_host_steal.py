"""The host taking the machine's cores away (a virtual machine's steal time): the guest sees
neither computing nor queueing then, so the time reads as waits, for I/O or for the GIL. The
probe notices it, does not let samples taken meanwhile decide, and does not keep what it
measured. The steal counter is injected: these tests do not depend on the host."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

import smartpool
from smartpool._routing import clock as _clock
from smartpool._routing import gil as _gil
from smartpool._routing import probe as _probe
from smartpool._routing.memory import recall
from smartpool._work import feed as _feed
from smartpool._work.schedstat import STEAL_STEP, host_stolen_seconds

from .test_auto import pin_first_items, script_paired_samples
from .workloads import spin


@pytest.fixture(autouse=True)
def _fresh_decisions() -> None:
    smartpool.forget()


def steal_counter(monkeypatch: pytest.MonkeyPatch, seconds: float = 100.0) -> list[float]:
    """The machine's steal counter, as a list whose one value the test moves on."""
    stolen = [seconds]
    monkeypatch.setattr(_clock, "host_stolen_seconds", lambda: stolen[0])
    return stolen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_the_machine_tells_the_time_its_host_took() -> None:
    first = host_stolen_seconds()
    assert first is not None and first >= 0.0
    second = host_stolen_seconds()
    assert second is not None and second >= first


def test_a_share_of_the_machines_time_is_read_from_the_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stolen = steal_counter(monkeypatch)
    watch = _clock.HostSteal()
    assert watch.share() == 0.0 and not watch.stole()
    stolen[0] += STEAL_STEP  # one step: it may complete time stolen long before
    assert not watch.stole()
    stolen[0] += STEAL_STEP  # two: at least one step's time was taken meanwhile
    assert watch.stole()
    monkeypatch.setattr(_clock, "host_stolen_seconds", lambda: None)  # the system does not tell
    assert _clock.HostSteal().share() == 0.0


def test_a_gil_sample_taken_while_the_host_stole_is_checked_by_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first paired sample reads "free" (0.02, clear on its own), but the host took a core
    meanwhile: it is left out, and the next one, held, decides. The measurement says so."""
    monkeypatch.setattr(_gil, "SAMPLE_AFTER", 3600.0)  # no first-item sample: paired ones
    taken = script_paired_samples(monkeypatch, [0.02, 1.0])
    pin_first_items(monkeypatch, call_seconds=0.00015, cpu_fraction=1.0, crowding=0.0)
    stolen = steal_counter(monkeypatch)  # (after the helpers, which pin it at no steal)
    scripted = _gil.sample_in_pairs

    def host_steals_during_the_first(fn: Callable[[object], object], *rest: object) -> object:
        if not taken:
            stolen[0] += 1.0
        return scripted(fn, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(_gil, "sample_in_pairs", host_steals_during_the_first)
    items = list(range(2000, 2300))
    probe = _probe.probe_items(spin, _feed.Feed(items))
    assert len(taken) == 2
    assert probe.measurement.releases_gil is False
    assert probe.measurement.stolen >= _clock.HOST_STOLE
    assert probe.measurement.doubt is not None and "steal time" in probe.measurement.doubt
    assert probe.values == [spin(n) for n in items[: len(probe.values)]]


def test_a_gil_sample_with_no_steal_decides_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gil, "SAMPLE_AFTER", 3600.0)
    taken = script_paired_samples(monkeypatch, [0.02])
    pin_first_items(monkeypatch, call_seconds=0.00015, cpu_fraction=1.0, crowding=0.0)
    steal_counter(monkeypatch)
    probe = _probe.probe_items(spin, _feed.Feed(list(range(2000, 2300))))
    assert len(taken) == 1
    assert probe.measurement.releases_gil is True
    assert probe.measurement.stolen == 0.0 and probe.measurement.doubt is None


def test_a_probe_the_host_skewed_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host stealing all along: the call still runs (and plans from what it saw), but the
    next call measures again; classify says why it is unsure."""
    stolen = steal_counter(monkeypatch)

    def stealing() -> float:
        stolen[0] += 0.05  # every read finds 50 ms more taken
        return stolen[0]

    monkeypatch.setattr(_clock, "host_stolen_seconds", stealing)
    items = list(range(2000, 2100))
    assert smartpool.parallel_map(spin, items) == [spin(n) for n in items]
    assert recall(spin) is None
    classified = smartpool.classify(spin, 2000)
    assert not classified.confident and "steal time" in classified.reason

    steal_counter(monkeypatch)  # the host stops: the measurement is kept
    assert smartpool.parallel_map(spin, items) == [spin(n) for n in items]
    assert recall(spin) is not None


def test_a_probe_of_short_items_reads_the_counter_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reading costs tens of microseconds, a tenth of a probe of tiny items: it is read when
    the probe starts and when it ends, and after the first item only if that one was sampled."""
    reads: list[float] = []

    def counted() -> float:
        reads.append(100.0)
        return 100.0

    monkeypatch.setattr(_clock, "host_stolen_seconds", counted)
    items = list(range(20_000))
    probe = _probe.probe_items(lambda x: x * 2, _feed.Feed(items))
    assert probe.values == [x * 2 for x in items[: len(probe.values)]]
    assert probe.measurement.stolen == 0.0
    assert len(reads) == 2
