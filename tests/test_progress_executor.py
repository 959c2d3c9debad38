"""``Executor.map(..., progress=)``: its calls counted once, as they complete, on threads and
processes; failures shown; the progress ends however the map ends; ``config()`` scopes count."""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import smartpool
from smartpool import ProgressEvent
from smartpool._run.calls import OneCall

from .helpers import double, fail_first_attempt

PARALLEL = ("thread", "process")


@pytest.fixture(autouse=True)
def _fresh_decisions() -> Iterator[None]:
    smartpool.forget()
    yield
    smartpool.forget()


def _steady(events: list[ProgressEvent]) -> None:
    """Counts never go back, and only the last event is the finished one."""
    counts = [e.done + e.failed for e in events]
    assert counts == sorted(counts)
    assert events[-1].finished and not any(e.finished for e in events[:-1])


def _open_tqdm_bars() -> int:
    from tqdm import tqdm

    return len(tqdm._instances)  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", PARALLEL)
@pytest.mark.parametrize("chunksize", [1, 3])
def test_every_item_is_counted_once(backend: str, chunksize: int) -> None:
    seen: list[ProgressEvent] = []
    results = []
    with smartpool.Executor(2, backend=backend) as executor:
        for value in executor.map(double, range(20), chunksize=chunksize, progress=seen.append):
            results.append(value)
            assert seen[-1].done >= len(results)  # never a result the count has not reached
    assert results == [2 * x for x in range(20)]
    _steady(seen)
    last = seen[-1]
    assert (last.done, last.failed, last.retried, last.total) == (20, 0, 0, 20)
    assert max(e.done for e in seen) == 20 and last.eta == 0.0
    assert all((e.backend, e.workers) == (backend, 2) for e in seen)


@pytest.mark.parametrize("backend", PARALLEL)
def test_an_input_without_a_length_has_no_total(backend: str) -> None:
    seen: list[ProgressEvent] = []
    with smartpool.Executor(backend=backend) as executor:
        calls = executor.map(double, (x for x in range(12)), buffersize=4, progress=seen.append)
        assert list(calls) == [2 * x for x in range(12)]
    assert seen[-1].total is None and seen[-1].done == 12
    assert all(e.eta is None for e in seen)
    _steady(seen)


@pytest.mark.parametrize("backend", PARALLEL)
def test_failures_show_and_end_the_progress(backend: str) -> None:
    seen: list[ProgressEvent] = []
    with smartpool.Executor(backend=backend) as executor:
        calls = executor.map(operator.floordiv, [1, 1, 1], [1, 0, 1], progress=seen.append)
        with pytest.raises(ZeroDivisionError):
            list(calls)
    assert seen[-1].finished and seen[-1].failed == 1
    _steady(seen)


@pytest.mark.parametrize("backend", PARALLEL)
def test_retried_calls_count_once(backend: str, tmp_path: Any) -> None:
    seen: list[ProgressEvent] = []
    items = [(str(tmp_path), i) for i in range(6)]
    with smartpool.Executor(backend=backend, retries=1, retry_on=OSError) as executor:
        assert list(executor.map(fail_first_attempt, items, progress=seen.append)) == list(range(6))
    assert (seen[-1].done, seen[-1].retried, seen[-1].failed) == (6, 6, 0)


def test_a_result_is_counted_before_the_caller_gets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Future wakes its waiter before it runs its callbacks: as if they came late."""
    monkeypatch.setattr(OneCall, "add_done_callback", lambda self, fn: None)
    seen: list[ProgressEvent] = []
    with smartpool.Executor(backend="thread") as executor:
        for taken, _ in enumerate(executor.map(double, range(10), progress=seen.append), 1):
            assert seen[-1].done == taken
    assert seen[-1].finished and seen[-1].done == 10


def test_calls_count_as_they_complete_though_results_come_in_order() -> None:
    """A slow first call must not pin the count at zero."""
    release = threading.Event()

    def held_first(x: int) -> int:
        if x == 0:
            assert release.wait(60)
        return x

    def watch(event: ProgressEvent) -> None:
        if event.done >= 3:
            release.set()

    with smartpool.Executor(2, backend="thread") as executor:
        assert list(executor.map(held_first, range(10), progress=watch)) == list(range(10))
    assert release.is_set()


@pytest.mark.parametrize("backend", PARALLEL)
@pytest.mark.parametrize("taken", [0, 1])
def test_closing_the_results_ends_the_progress(backend: str, taken: int) -> None:
    seen: list[ProgressEvent] = []
    with smartpool.Executor(backend=backend) as executor:
        calls = executor.map(double, range(50), buffersize=2, progress=seen.append)
        for _ in range(taken):
            next(calls)
        calls.close()
        assert seen[-1].finished and seen[-1].done >= taken
        assert sum(e.finished for e in seen) == 1


def test_a_map_that_times_out_ends_its_progress() -> None:
    release = threading.Event()
    seen: list[ProgressEvent] = []

    def stuck(x: int) -> int:
        if x == 1:
            assert release.wait(60)
        return x

    with smartpool.Executor(backend="thread") as executor:
        began = time.monotonic()
        calls = executor.map(stuck, range(3), timeout=0.5, progress=seen.append)
        try:
            with pytest.raises(TimeoutError):
                list(calls)
            assert time.monotonic() - began < 30  # not held up by the call still running
            assert seen[-1].finished and seen[-1].done >= 1
        finally:
            release.set()


def test_the_tqdm_bar_closes_on_an_error_and_on_ctrl_c(capsys: Any) -> None:
    def interrupted(x: int) -> int:
        if x == 5:
            raise KeyboardInterrupt  # as Ctrl-C would, where the caller waits
        return x

    with smartpool.Executor(backend="thread") as executor:
        assert list(executor.map(double, range(30), progress="tqdm"))
        assert "30/30" in capsys.readouterr().err
        with pytest.raises(ZeroDivisionError):
            list(executor.map(operator.floordiv, [1, 1], [0, 1], progress="tqdm"))
        assert _open_tqdm_bars() == 0
        with pytest.raises(KeyboardInterrupt):
            list(executor.map(interrupted, range(10), progress="tqdm"))
        assert _open_tqdm_bars() == 0


def test_a_map_nobody_reads_ends_its_progress_when_its_calls_end() -> None:
    ended = threading.Event()
    seen: list[ProgressEvent] = []

    def watch(event: ProgressEvent) -> None:
        seen.append(event)
        if event.finished:
            ended.set()

    with smartpool.Executor(backend="thread") as executor:
        calls = executor.map(double, range(10), progress=watch)
        assert ended.wait(60)
        assert seen[-1].done == 10
        del calls


def test_progress_comes_from_config_scopes_and_the_call_wins() -> None:
    scoped: list[ProgressEvent] = []
    with smartpool.Executor(backend="thread") as executor:
        with smartpool.config(progress=scoped.append):
            assert list(executor.map(double, range(5))) == [0, 2, 4, 6, 8]
            assert scoped[-1].done == 5 and scoped[-1].finished
            count = len(scoped)
            list(executor.map(double, range(5), progress=False))
        assert len(scoped) == count
        list(executor.map(double, range(5)))  # off outside the scope
        assert len(scoped) == count


def test_a_bad_progress_fails_at_the_call() -> None:
    executor = smartpool.Executor(backend="thread")
    with executor, pytest.raises(ValueError, match="unknown progress display 'bar'"):
        executor.map(double, [1], progress="bar")  # type: ignore[arg-type]
