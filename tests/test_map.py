"""parallel_map and imap give map()'s results, in order, on every backend."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smartpool
from smartpool._backends import registry
from smartpool._run.flight import HELD_WINDOWS

from .helpers import double, sleep_then_return


@settings(max_examples=25, deadline=None)
@given(xs=st.lists(st.integers(), max_size=300), chunksize=st.none() | st.integers(1, 50))
def test_parallel_map_equals_map(backend: str, xs: list[int], chunksize: int | None) -> None:
    assert smartpool.parallel_map(double, xs, backend=backend, chunksize=chunksize) == [
        double(x) for x in xs
    ]


@settings(max_examples=15, deadline=None)
@given(xs=st.lists(st.integers(), max_size=200))
def test_imap_equals_map(backend: str, xs: list[int]) -> None:
    assert list(smartpool.imap(double, iter(xs), backend=backend)) == [double(x) for x in xs]


def test_order_is_input_order_when_durations_are_uneven(parallel_backend: str) -> None:
    # Early items sleep longest, so they finish last; results must still come back in order.
    items = [(i, 0.05 if i < 4 else 0.0) for i in range(16)]
    result = smartpool.parallel_map(
        sleep_then_return, items, backend=parallel_backend, max_workers=4, chunksize=1
    )
    assert result == list(range(16))


def test_unordered_gives_every_result_once(parallel_backend: str) -> None:
    items = [(i, 0.03 if i % 5 == 0 else 0.0) for i in range(40)]
    result = smartpool.parallel_map(
        sleep_then_return, items, backend=parallel_backend, ordered=False, chunksize=1
    )
    assert sorted(result) == list(range(40))


def test_empty_input(backend: str) -> None:
    assert smartpool.parallel_map(double, [], backend=backend) == []
    assert list(smartpool.imap(double, iter(()), backend=backend)) == []


def test_generator_input(backend: str) -> None:
    assert smartpool.parallel_map(double, (i for i in range(1000)), backend=backend) == [
        2 * i for i in range(1000)
    ]


def test_imap_streams_an_endless_generator_with_bounded_input(backend: str) -> None:
    pulled = itertools.count()
    lock = threading.Lock()

    def source():  # type: ignore[no-untyped-def]
        for i in itertools.count():
            with lock:
                next(pulled)
            yield i

    results = smartpool.imap(double, source(), backend=backend, max_workers=2, chunksize=4)
    first = [next(results) for _ in range(10)]
    assert first == [2 * i for i in range(10)]
    results.close()  # type: ignore[attr-defined]
    with lock:
        consumed = next(pulled)
    # Beyond the chunks handed out (the 10th result lies in the third, whose 12 items all
    # count), at most the run's windows of chunks of 4 (2 a worker): one, or up to
    # ``HELD_WINDOWS`` of them while the next result in order is late (results done behind it
    # are held, so that the other workers go on), plus one chunk being read. (The bound once
    # counted one window past the 10th item: on a quiet machine that held; beside one program
    # spinning, the head was often late, and 64 to 68 items were read.)
    handed_out = -(-10 // 4) * 4
    window = registry.traits(backend).window_per_worker * 2
    assert consumed <= handed_out + (HELD_WINDOWS * window + 1) * 4


def test_imap_is_lazy_until_iterated(backend: str) -> None:
    pulled: list[int] = []

    def source():  # type: ignore[no-untyped-def]
        for i in range(5):
            pulled.append(i)
            yield i

    results = smartpool.imap(double, source(), backend=backend)
    assert pulled == []
    assert list(results) == [0, 2, 4, 6, 8]


def test_large_input_is_chunked_and_correct(backend: str) -> None:
    n = 200_000
    assert smartpool.parallel_map(double, range(n), backend=backend) == [2 * i for i in range(n)]


def test_auto_backend_gives_correct_results() -> None:
    assert smartpool.parallel_map(double, range(50)) == [2 * i for i in range(50)]


def test_input_generator_error_propagates(backend: str) -> None:
    def broken():  # type: ignore[no-untyped-def]
        yield 1
        yield 2
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        smartpool.parallel_map(double, broken(), backend=backend, chunksize=1)


def test_submit_returns_a_future() -> None:
    future = smartpool.submit(double, 21)
    assert future.result(timeout=30) == 42
