"""Re-planning on a saturated machine: time a worker spends queued for a core, behind other
programs, is neither the items' cost nor waiting (the planner's side is in
``test_routing_rules``; here, real chunks on real cores)."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import smartpool
from smartpool._routing.measurement import Measurement
from smartpool._routing.memory import remember
from smartpool._work.task import run_chunk

from .workloads import spin, spin_on

#: Programs kept on one core beside the work: a thread of it gets a seventh of that core, two
#: an eighth each.
SPINNERS = 6


@pytest.fixture
def crowded_core() -> Iterator[int]:
    """A core kept busy by ``SPINNERS`` pure-Python loops, each confined to it; yields the core.
    The loops say when they run there, and are killed (and reaped) when the test ends."""
    core = min(os.sched_getaffinity(0))
    code = (
        f"import os, sys; os.sched_setaffinity(0, {{{core}}}); "
        "sys.stdout.write('on\\n'); sys.stdout.flush()\nwhile True: pass"
    )
    spinners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(SPINNERS):
            spinners.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE))
        for spinner in spinners:
            assert spinner.stdout is not None and spinner.stdout.readline() == b"on\n"
        yield core
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()
            if spinner.stdout is not None:
                spinner.stdout.close()


def test_a_chunk_reports_the_time_its_thread_was_queued_for_a_core(crowded_core: int) -> None:
    """Beside six loops on its core, a chunk computes a seventh of the time or so: the rest is
    reported as queued, not left to look like waiting."""
    result = run_chunk(functools.partial(spin_on, crowded_core), [200_000], 0)
    assert result.error is None
    idle = result.seconds - result.cpu_seconds - result.queued_seconds
    assert result.queued_seconds > 0.5 * result.seconds, result
    assert idle < 0.25 * result.seconds, result  # what is left is small


def test_pure_python_work_crowded_out_of_its_core_is_not_sent_to_threads(
    crowded_core: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Every call of a pure-Python function runs on a core six other programs keep busy: its
    chunks are mostly queued there (~8 ms a call, 12% CPU). Read as waiting, that re-planned
    the run to many threads (gaining nothing for GIL-bound work); the plan must hold."""
    fn = functools.partial(spin_on, crowded_core)
    # What a quiet probe measured (pure Python, half what a call computes, so that queued time
    # read as the items' cost is far off the plan): the plan is processes on two cores or more,
    # else the caller, and the test needs no probe at all.
    remember(fn, Measurement(0.0005, 1.0, False, True, 1e-5, 8, gil_held=1.0))
    with caplog.at_level(logging.DEBUG, logger="smartpool"):
        results = smartpool.parallel_map(fn, [10_000] * 400)
    assert results == [spin(10_000)] * 400
    assert "-> thread" not in caplog.text, caplog.text


# -- other programs that leave the caller its core ------------------------------------------------


@pytest.fixture
def one_spinner() -> Iterator[None]:
    """One pure-Python loop in another process, running (it says so) until the test ends."""
    code = "import sys; sys.stdout.write('on\\n'); sys.stdout.flush()\nwhile True: pass"
    spinner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert spinner.stdout is not None and spinner.stdout.readline() == b"on\n"
        yield
    finally:
        spinner.kill()
        spinner.wait()
        if spinner.stdout is not None:
            spinner.stdout.close()


def test_the_machine_counts_a_busy_program_and_the_caller_as_runnable(one_spinner: None) -> None:
    """A program spinning never sleeps: whenever the caller looks, it and the caller itself
    are among the threads that want a core."""
    from smartpool._work.schedstat import runnable_threads

    assert all((runnable_threads() or 0) >= 2 for _ in range(20))


def test_a_program_busy_on_another_core_counts_as_crowding(monkeypatch: pytest.MonkeyPatch) -> None:
    """One program spinning on one of two cores leaves the caller its own core: the caller is
    never queued, yet a second worker would share a core with that program. Counted between the
    probe's items (the machine's runnable threads, less the caller), it is crowding. The least
    count stands (a program that ran a moment is no load), and the CPUs this process may not
    use take their share of the others first."""
    from smartpool._routing import gil_probe, load, neighbours
    from smartpool._routing import probe as _probe
    from smartpool._routing.neighbours import Neighbours
    from smartpool._work import feed as _feed

    counts = iter([2, 3, 2, 2, 2, 4, 2, 2] * 100)
    monkeypatch.setattr(_probe, "runnable_threads", lambda: next(counts))
    monkeypatch.setattr(gil_probe, "cores", lambda: 2)
    monkeypatch.setattr(load.os, "cpu_count", lambda: 2)
    # (Time the caller is queued for a core is not under test here: this machine may be busy.)
    monkeypatch.setattr(load, "from_queued", lambda queued, wall: 0.0)
    # Where /proc does not tell which scheduling group it is in, it shares this program's.
    monkeypatch.setattr(neighbours, "neighbours", lambda: None)
    probe = _probe.probe_items(spin, _feed.Feed([20_000] * 50), gil_matters=lambda _: False)
    assert (probe.measurement.crowding, probe.measurement.other_groups) == (1.0, ())
    assert probe.values == [spin(20_000)] * len(probe.values)
    # In another session (or cgroup), it takes its own part of the cores: see test_neighbours.
    monkeypatch.setattr(neighbours, "neighbours", lambda: Neighbours(0, (1,)))
    probe = _probe.probe_items(spin, _feed.Feed([20_000] * 50), gil_matters=lambda _: False)
    assert (probe.measurement.crowding, probe.measurement.other_groups) == (0.0, (1,))

    assert load.others([]) == 0.0  # the system does not tell
    monkeypatch.setattr(load.os, "cpu_count", lambda: 8)  # 6 CPUs beyond this process's
    assert load.others([7, 9, 8]) == 1.0
    assert load.others([5, 6]) == 0.0


def test_time_queued_is_no_crowding_when_a_look_found_no_other_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller queued for a core a fifth of its time, yet one look between its items found
    no other thread wanting one: it was queued behind passing wake-ups (this program's own
    threads, its worker processes starting or finishing), not a load. No crowding (it planned
    three or four workers on two cores). Where no look could be taken, the time queued still
    tells; where every look found others, they count."""
    from smartpool._routing import gil_probe, load, neighbours

    monkeypatch.setattr(gil_probe, "cores", lambda: 2)
    monkeypatch.setattr(load.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(neighbours, "neighbours", lambda: None)
    queued, wall = 0.005, 0.025
    assert load.busy(queued, wall, [1, 0, 2], sent=0) == (0.0, ())
    by_queued = load.from_queued(queued, wall)
    assert by_queued > 1.0
    assert load.busy(queued, wall, [], sent=0)[0] == pytest.approx(by_queued)
    assert load.busy(0.0, wall, [1, 2, 1], sent=0) == (1.0, ())
