"""A first call that pays a one-time cost (an import, a cache filled) must not stand for every
call: the probe compares it with later calls, leaves it out of the per-item estimate, and says
so in the plan's reasons."""

from __future__ import annotations

import time
from collections.abc import Callable

import smartpool
from smartpool._routing import probe as _probe
from smartpool._work import feed as _feed

from .workloads import nap, spin


def slow_once(first: Callable[[], object], then: Callable[[int], int]) -> Callable[[int], int]:
    """A function whose first call runs ``first()`` (the one-time cost) before ``then``."""
    done: list[bool] = []

    def call(n: int) -> int:
        if not done:
            done.append(True)
            first()
        return then(n)

    return call


def _tiny(n: int) -> int:
    return n + 1


def test_a_cache_filled_by_the_first_call_does_not_send_cheap_work_to_processes() -> None:
    """The first call computes for ~100 ms (filling a cache), the others take microseconds:
    timed as typical, that first call would send 200 cheap items to worker processes. (Serial
    on a quiet machine; with two other programs spinning, the cheap calls once read as 6% CPU
    and the plan was threads, in 1 run of 20: not processes either way, which is the point.)"""
    fn = slow_once(lambda: spin(2_000_000), _tiny)
    plan = smartpool.explain(fn, range(200))
    assert plan.backend in ("serial", "thread"), plan
    assert plan.item_seconds is not None and plan.item_seconds < 0.001
    assert any("first call took" in reason for reason in plan.reasons), plan.reasons


def test_a_first_call_that_sleeps_once_is_left_out_of_the_estimate() -> None:
    fn = slow_once(lambda: time.sleep(0.05), lambda n: spin(2_000))
    probe = _probe.probe_items(fn, _feed.Feed(list(range(100))), gil_matters=lambda _: False)
    m = probe.measurement
    assert m.first_call_seconds is not None and m.first_call_seconds >= 0.04
    assert m.call_seconds < 0.01
    assert m.cpu_fraction > 0.5  # the sleep is not counted as the calls' waiting either
    assert probe.values == [spin(2_000)] * len(probe.values)


def test_long_calls_alike_are_all_counted() -> None:
    """Long items of one kind: a second is timed to compare, and both count."""
    probe = _probe.probe_items(
        lambda n: spin(n), _feed.Feed([400_000] * 6), gil_matters=lambda _: False
    )
    assert probe.measurement.first_call_seconds is None
    assert probe.measurement.samples == 2


def test_items_of_two_kinds_a_long_one_first_are_not_taken_for_a_one_time_cost() -> None:
    """Waiting and computing in turn, the long wait first: the first call is far above the
    second, but not above the calls after it taken together."""
    items = [0.02 if i % 2 == 0 else -1.0 for i in range(20)]

    def wait_or_compute(x: float) -> float:
        return nap(x) if x > 0 else float(spin(2_000))

    probe = _probe.probe_items(wait_or_compute, _feed.Feed(items), gil_matters=lambda _: False)
    assert probe.measurement.first_call_seconds is None
    assert probe.measurement.samples >= 3
    assert probe.measurement.call_seconds > 0.005  # the waits count
