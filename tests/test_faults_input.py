"""Bad input anywhere gives a typed error or the right answer, never a hang; nesting is safe."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

import pytest

import smartpool

from .fault_tasks import big_bytes
from .helpers import double


def _only_in(pid: int) -> int:
    """Rebuilds only in the process ``pid`` that pickled it."""
    if os.getpid() != pid:
        raise LookupError("this object only exists where it was pickled")
    return 0


class OnlyWhereMade:
    """Pickles fine anywhere; unpickling it in any other process raises LookupError."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_only_in, (os.getpid(),))


def returns_unloadable(x: int) -> object:
    return OnlyWhereMade() if x == 2 else x


class UnloadableError(Exception):
    """Carries an attribute that can only be unpickled in the worker that raised it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.payload = OnlyWhereMade()


def raises_unloadable(x: int) -> int:
    if x == 1:
        raise UnloadableError("unloadable")
    return x


@pytest.mark.timeout(60)
def test_result_that_cannot_be_unpickled_in_the_caller() -> None:
    with pytest.raises(smartpool.SerializationError, match="results of item 2 could not be"):
        smartpool.parallel_map(returns_unloadable, range(5), backend="process", chunksize=1)
    assert smartpool.parallel_map(double, range(3), backend="process") == [0, 2, 4]


@pytest.mark.timeout(60)
def test_exception_that_cannot_be_unpickled_in_the_caller() -> None:
    with pytest.raises(smartpool.SerializationError, match="exception raised by item 1") as info:
        smartpool.parallel_map(raises_unloadable, range(3), backend="process", chunksize=1)
    assert isinstance(info.value.__cause__, LookupError)
    assert smartpool.parallel_map(double, range(3), backend="process") == [0, 2, 4]


@pytest.mark.timeout(60)
def test_item_that_cannot_be_unpickled_in_the_worker() -> None:
    with pytest.raises(
        smartpool.SerializationError, match="only exists where it was pickled"
    ) as info:
        smartpool.parallel_map(double, [OnlyWhereMade()], backend="process")
    assert "the items could not be unpickled in the worker: LookupError" in str(info.value)
    assert isinstance(info.value, BrokenProcessPool)  # as ProcessPoolExecutor reports it


@pytest.mark.timeout(60)
def test_generator_that_raises_midway_keeps_earlier_results_reachable(backend: str) -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise OSError("the input broke")

    seen: list[int] = []
    with pytest.raises(OSError, match="the input broke"):
        for value in smartpool.imap(double, items(), backend=backend, chunksize=1):
            seen.append(value)
    assert seen == [0, 2, 4, 6, 8][: len(seen)]
    assert smartpool.parallel_map(double, range(3), backend=backend) == [0, 2, 4]


@pytest.mark.timeout(60)
def test_a_300_megabyte_result_arrives_whole() -> None:
    [data] = smartpool.parallel_map(big_bytes, [300], backend="process")
    assert len(data) == 300 * 1024 * 1024 and data[:1] == data[-1:] == b"x"


def _inner_same_pool(x: int) -> list[int]:
    return smartpool.parallel_map(double, range(x, x + 4), backend="thread", max_workers=2)


@pytest.mark.timeout(60)
def test_nested_call_on_the_same_full_thread_pool_does_not_deadlock() -> None:
    threads_before = threading.active_count()
    results = smartpool.parallel_map(_inner_same_pool, [0, 10], backend="thread", max_workers=2)
    assert results == [[0, 2, 4, 6], [20, 22, 24, 26]]
    # One stand-in per waiting thread at most, and they retire once idle.
    assert threading.active_count() <= threads_before + 4


def _inner_auto(x: int) -> tuple[int, list[tuple[int, str]]]:
    def where(y: int) -> tuple[int, str]:
        return os.getpid(), threading.current_thread().name

    return os.getpid(), smartpool.parallel_map(where, range(8))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("outer", ["thread", "process"])
def test_nested_call_in_a_full_pool_runs_in_the_worker_itself(outer: str) -> None:
    results = smartpool.parallel_map(_inner_auto, range(4), backend=outer, max_workers=2)
    for pid, inner in results:
        assert {p for p, _ in inner} == {pid}  # no new processes
        assert len({name for _, name in inner}) == 1  # no new threads: it ran inline
