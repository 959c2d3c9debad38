"""A chunk run under a time budget (the serial backend's chunks, the probe's batches) stops
after the item in hand once the budget is spent. Long items are stopped by a clock check after
each one; short ones by the deadline watcher, which costs nothing per item but must take the
GIL from the chunk to act. The clock here is a fake one that the items move on, so every test
knows where the chunk stops."""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import smartpool
from smartpool._work import deadline as _deadline
from smartpool._work import task
from smartpool._work.feed import Tail
from smartpool._work.task import CHECK_FIRST, CHECKED_ITEM_SECONDS, run_chunk


class FakeClock:
    """``time.perf_counter`` as the chunk reads it: moved on only by the items."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def taking(self, seconds: float) -> Callable[[int], int]:
        """An item function that takes ``seconds`` on this clock and returns its item doubled."""

        def item(x: int) -> int:
            self.now += seconds
            return 2 * x

        return item


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(
        task,
        "time",
        types.SimpleNamespace(perf_counter=fake, thread_time=time.thread_time, sleep=time.sleep),
    )
    return fake


@pytest.fixture
def arms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, int, float]]]:
    """What the chunk asks the deadline watcher to stop (which it never does here)."""
    armed: list[tuple[Any, int, float]] = []

    def arm(iterator: Any, length: int, deadline: float) -> int:
        armed.append((iterator, length, deadline))
        return -len(armed)

    monkeypatch.setattr(_deadline.watcher, "arm", arm)
    yield armed


def test_long_items_stop_at_the_first_one_past_the_budget_without_the_watcher(
    clock: FakeClock, arms: list[tuple[Any, int, float]]
) -> None:
    """1 ms items against a 10.5 ms budget: the eleventh ends at 11 ms, past it, and is the
    last; the watcher is never armed (each of its wake-ups takes the GIL from the chunk)."""
    result = run_chunk(clock.taking(0.001), list(range(100)), 0, budget=0.0105)
    assert result.error is None
    assert result.values == [2 * x for x in range(11)]
    assert arms == []


def test_a_long_chunk_stops_within_the_end_of_a_list_it_runs_in_place(
    clock: FakeClock, arms: list[tuple[Any, int, float]]
) -> None:
    items = list(range(50))
    result = run_chunk(clock.taking(0.001), Tail(items, 20), 20, budget=0.0025)
    assert (result.start, result.values) == (20, [40, 42, 44])
    assert arms == []


def test_short_items_hand_the_rest_of_the_chunk_to_the_watcher(
    clock: FakeClock, arms: list[tuple[Any, int, float]]
) -> None:
    """Items far under ``CHECKED_ITEM_SECONDS``: after ``CHECK_FIRST`` of them, the rest run
    in one ``map`` over the same iterator, which the watcher is armed to end at the deadline
    (here it never acts, so every item runs)."""
    fn = clock.taking(CHECKED_ITEM_SECONDS / 100)
    result = run_chunk(fn, list(range(1000)), 0, budget=1.0)
    assert result.values == [2 * x for x in range(1000)]
    [(iterator, length, deadline)] = arms
    assert length == 1000
    assert deadline == pytest.approx(1000.0 + 1.0)
    assert list(iterator) == []  # the same iterator, used up by the map


def test_a_chunk_of_short_items_that_ends_with_its_checked_ones_arms_nothing(
    clock: FakeClock, arms: list[tuple[Any, int, float]]
) -> None:
    """Nothing left after the checked items: no deadline armed (it would wake the watcher)."""
    result = run_chunk(clock.taking(1e-9), list(range(CHECK_FIRST)), 0, budget=1.0)
    assert result.values == [2 * x for x in range(CHECK_FIRST)]
    assert arms == []


def test_the_watcher_ends_the_same_iterator_the_checked_items_came_from(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ended at once by the watcher (as if the deadline had passed as it was armed), the chunk
    keeps the items checked one by one and runs no more."""

    def arm_and_act(iterator: Any, length: int, deadline: float) -> int:
        iterator.__setstate__(length)
        return 0

    monkeypatch.setattr(_deadline.watcher, "arm", arm_and_act)
    result = run_chunk(clock.taking(1e-9), list(range(1000)), 0, budget=1.0)
    assert result.values == [2 * x for x in range(CHECK_FIRST)]


def test_an_item_failing_in_a_checked_chunk_keeps_the_values_before_it(
    clock: FakeClock, arms: list[tuple[Any, int, float]]
) -> None:
    """The error is the item's own, its traceback starting at the user's function (the loop
    that checks the clock is no frame of its own), and the values before it are kept."""
    long_item = clock.taking(0.001)

    def fails_at_three(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return long_item(x)

    result = run_chunk(fails_at_three, list(range(10)), 0, budget=1.0)
    assert isinstance(result.error, ValueError)
    assert result.values == [0, 2, 4]
    assert result.error_index == 3
    tb = result.error.__traceback__
    assert tb is not None and tb.tb_frame.f_code is fails_at_three.__code__
    assert arms == []


def test_a_spent_budget_still_runs_one_item(
    clock: FakeClock, arms: list[tuple[Any, int, float]]
) -> None:
    result = run_chunk(clock.taking(0.001), list(range(10)), 0, budget=0.0)
    assert result.values == [0]


def test_a_serial_run_of_long_items_stops_its_chunks_without_the_watcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The serial backend runs the rest of the input as one chunk under a time budget, stopped
    to re-plan: with items of a millisecond, the watcher is never armed (real clock)."""

    def no_watcher(iterator: Any, length: int, deadline: float) -> int:
        raise AssertionError("the deadline watcher was armed for long items")

    monkeypatch.setattr(_deadline.watcher, "arm", no_watcher)
    chunks: list[int] = []
    real = task._run_within

    def counted(fn: Any, items: Any, values: list[Any], deadline: float) -> Any:
        chunks.append(len(values))
        return real(fn, items, values, deadline)

    monkeypatch.setattr(task, "_run_within", counted)
    items = list(range(120))
    assert smartpool.parallel_map(_sleep_a_millisecond, items, backend="serial") == items
    # 120 ms of items against a budget of 5 x 10 ms: stopped at least once
    assert len(chunks) >= 2


def _sleep_a_millisecond(x: int) -> int:
    time.sleep(0.001)
    return x
