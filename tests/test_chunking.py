"""Feeds hand out every item exactly once, in order, whatever is taken and given back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smartpool._work.chunking import ChunkSizer, Feed


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
