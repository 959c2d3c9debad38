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
