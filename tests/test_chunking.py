"""Feeds hand out every item exactly once, in order, whatever is taken and given back."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from smartpool._work.chunking import ChunkSizer
from smartpool._work.feed import Feed


@given(
    items=st.lists(st.integers(), max_size=60),
    steps=st.lists(st.tuples(st.integers(1, 70), st.integers(0, 70)), max_size=30),
    as_generator=st.booleans(),
)
def test_feed_yields_each_item_once_in_order(
    items: list[int], steps: list[tuple[int, int]], as_generator: bool
) -> None:
    feed = Feed(iter(items) if as_generator else items)
    consumed: list[int] = []
    for size, ran in steps:
        chunk = feed.take(size)
        assert len(chunk) <= size
        ran = min(ran, len(chunk))
        consumed.extend(list(chunk)[:ran])
        feed.give_back(chunk[ran:])  # the unrun end goes back in front
    while chunk := feed.take(7):
        consumed.extend(chunk)
    assert consumed == items


def test_sizer_aims_at_the_target_duration() -> None:
    sizer = ChunkSizer.for_run(chunksize=None, n_items=100_000, workers=2, target_seconds=0.01)
    sizer.observe(100, 0.001)  # 10 us an item
    assert 990 <= sizer.next_size() <= 1000  # float rounding
    sizer.observe(1000, 1.0)  # suddenly 1 ms an item (averaged with the last estimate)
    assert sizer.next_size() < 100


def test_sizer_keeps_two_chunks_per_worker_at_least() -> None:
    sizer = ChunkSizer.for_run(chunksize=None, n_items=400, workers=2, target_seconds=10.0)
    sizer.observe(10, 1e-6)
    assert sizer.next_size() == 100  # 400 items / (2 x 2 workers)


def test_fixed_chunksize_is_kept() -> None:
    sizer = ChunkSizer.for_run(chunksize=7, n_items=1000, workers=2, target_seconds=0.01)
    sizer.observe(7, 100.0)
    assert sizer.next_size() == 7


def test_inline_runs_take_a_sized_input_whole() -> None:
    sizer = ChunkSizer.for_run(
        chunksize=None, n_items=5000, workers=1, target_seconds=0.01, inline=True
    )
    assert sizer.next_size() == 5000


def test_chunks_taper_towards_the_end_of_a_sized_input() -> None:
    # 100 us items aimed at 20 ms chunks: 200 items, until the items left say otherwise.
    sizer = ChunkSizer.for_run(
        chunksize=None, n_items=10_000, workers=2, target_seconds=0.02, item_seconds=1e-4
    )
    assert sizer.next_size(10_000) == 200
    assert sizer.next_size(600) == 150  # a quarter of what is left: 1 / (2 x 2 workers)
    assert sizer.next_size(100) == 25
    # Never below a tenth of the target duration (20 items): a round trip each.
    assert sizer.next_size(40) == 20
    assert sizer.next_size(3) == 20  # (the input then gives the 3 it has)


def test_an_input_of_unknown_length_and_a_fixed_chunksize_are_not_tapered() -> None:
    sizer = ChunkSizer.for_run(
        chunksize=None, n_items=None, workers=2, target_seconds=0.02, item_seconds=1e-4
    )
    assert sizer.next_size(None) == 200
    fixed = ChunkSizer.for_run(chunksize=50, n_items=1000, workers=2, target_seconds=0.02)
    assert fixed.next_size(10) == 50


def _schedule(costs: list[float], item_seconds: float) -> list[float]:
    """When each of 2 workers runs out of work, for chunks sized as a process run sizes them
    (target 20 ms, the probe's estimate ``item_seconds``): a window of 4 chunks running or
    queued, workers taking queued chunks in turn, each chunk's cost observed as it completes."""
    workers, window = 2, 4
    sizer = ChunkSizer.for_run(
        chunksize=None,
        n_items=len(costs),
        workers=workers,
        target_seconds=0.02,
        item_seconds=item_seconds,
    )
    free = [0.0] * workers
    flying: list[tuple[float, int, float]] = []  # (ends at, items, seconds)
    now, taken = 0.0, 0
    while taken < len(costs) or flying:
        while taken < len(costs) and len(flying) < window:
            size = min(sizer.next_size(len(costs) - taken), len(costs) - taken)
            seconds = sum(costs[taken : taken + size])
            worker = free.index(min(free))
            free[worker] = max(free[worker], now) + seconds
            flying.append((free[worker], size, seconds))
            taken += size
        flying.sort()
        now, size, seconds = flying.pop(0)
        sizer.observe(size, seconds)
    return free


def test_items_that_grow_dearer_end_on_every_worker_together() -> None:
    # 400 items rising from 0.1 ms to 5 ms, the probe having seen the cheap first ones: a
    # run that handed out 4 chunks of 100 would leave the dearest on one worker at the end.
    costs = [1e-4 + 4.9e-3 * i / 399 for i in range(400)]
    ends = _schedule(costs, item_seconds=1e-4)
    assert max(ends) - min(ends) < 0.02 * sum(costs) / 2


def test_items_of_widely_varying_cost_end_on_every_worker_together() -> None:
    # Items of 0.13-1.3 ms at random (fixed): the last chunks are small enough that the
    # workers finish within a fifth of a chunk's target (20 ms) of each other, not a half.
    rng = random.Random(1)
    costs = [rng.uniform(1.3e-4, 1.3e-3) for _ in range(1500)]
    ends = _schedule(costs, item_seconds=7e-4)
    assert max(ends) - min(ends) < 0.2 * 0.02
