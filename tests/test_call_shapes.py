"""Call shapes: several iterables zipped like ``map``, argument tuples, results with indexes."""

from __future__ import annotations

import operator
import threading

import pytest

import smartpool


def test_several_iterables_zip_like_the_builtin_map(backend: str) -> None:
    xs, ys = [2, 3, 4], [5, 2]
    expected = list(map(pow, xs, ys))
    assert smartpool.parallel_map(pow, xs, ys, backend=backend) == expected
    assert list(smartpool.imap(pow, iter(xs), iter(ys), backend=backend)) == expected


def test_several_iterators_stop_at_the_shortest_and_stream(backend: str) -> None:
    import itertools

    sums = smartpool.parallel_map(
        operator.add, range(100), itertools.count(1000), backend=backend, chunksize=7
    )
    assert sums == [i + i + 1000 for i in range(100)]
    three = smartpool.parallel_map(
        lambda a, b, c: a + b + c, [1, 2], (10, 20), range(100, 103), backend=backend
    )
    assert three == [111, 123]


def test_starmap_and_istarmap_take_argument_tuples(backend: str) -> None:
    pairs = [(7, 2), (9, 4), (10, 5)]
    assert smartpool.starmap(divmod, pairs, backend=backend) == [(3, 1), (2, 1), (2, 0)]
    assert list(smartpool.istarmap(divmod, iter(pairs), backend=backend)) == [
        (3, 1),
        (2, 1),
        (2, 0),
    ]


def test_a_decorated_function_keeps_its_hint_and_options_over_several_iterables() -> None:
    @smartpool.io_bound(max_workers=2)
    def add_where(a: int, b: int) -> tuple[int, str]:
        return a + b, threading.current_thread().name

    for results in (
        smartpool.parallel_map(add_where, [1, 2], [10, 20]),
        add_where.map([1, 2], [10, 20]),
        list(add_where.imap([1, 2], [10, 20])),
        smartpool.starmap(add_where, [(1, 10), (2, 20)]),
    ):
        assert [value for value, _ in results] == [11, 22]
        assert all(name.startswith("smartpool-thread") for _, name in results)  # the hint


def test_an_item_error_names_the_item_with_several_iterables(backend: str) -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        smartpool.parallel_map(operator.truediv, [1, 2, 3], [1, 0, 1], backend=backend)
    assert any("item 1" in note for note in getattr(caught.value, "__notes__", []))


def test_with_index_pairs_each_result_with_its_items_position(backend: str) -> None:
    pairs = list(smartpool.imap(str.upper, ["a", "b", "c"], backend=backend, with_index=True))
    assert pairs == [(0, "A"), (1, "B"), (2, "C")]
    zipped = smartpool.imap(operator.mul, [1, 2], [3, 4], backend=backend, with_index=True)
    assert sorted(zipped) == [(0, 3), (1, 8)]
    starred = smartpool.istarmap(pow, [(2, 2), (2, 3)], backend=backend, with_index=True)
    assert sorted(starred) == [(0, 4), (1, 8)]


def test_unordered_with_index_yields_pairs_in_completion_order() -> None:
    release = threading.Event()

    def blocked_first(i: int) -> int:
        if i == 0:
            assert release.wait(60)
        return i * 10

    pairs = smartpool.imap(
        blocked_first,
        range(4),
        backend="thread",
        max_workers=2,
        chunksize=1,
        ordered=False,
        with_index=True,
    )
    index, value = next(pairs)  # item 0 is still running: another item's result comes first
    assert index != 0
    assert value == index * 10
    release.set()
    assert sorted([(index, value), *pairs]) == [(0, 0), (1, 10), (2, 20), (3, 30)]
