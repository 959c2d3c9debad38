"""What a run reports to its observers: items done, failed and retried as they complete, where
it runs, and one last event when it ends."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from smartpool import _api
from smartpool._run.events import RunEvent

from .helpers import double, fail_first_attempt


def _run(fn: object, items: object, observers: tuple[object, ...], **given: object) -> list[object]:
    run, ordered = _api.start(fn, items, given, observers=observers)  # type: ignore[arg-type]
    return _api._collect(run.results(), ordered)


def test_events_count_every_item_and_end_with_a_finished_one(backend: str) -> None:
    events: list[RunEvent] = []
    assert _run(double, range(50), (events.append,), backend=backend) == [2 * x for x in range(50)]
    last = events[-1]
    assert last.finished and last.done == 50 and last.failed == 0 and last.total == 50
    assert last.backend == backend
    assert [e.done for e in events] == sorted(e.done for e in events)  # never goes back
    assert not any(e.finished for e in events[:-1])


def test_an_input_without_length_has_no_total(backend: str) -> None:
    events: list[RunEvent] = []
    _run(double, (x for x in range(10)), (events.append,), backend=backend)
    assert events[-1].total is None and events[-1].done == 10


def test_an_automatic_run_counts_the_probed_items_once() -> None:
    events: list[RunEvent] = []
    _run(double, range(3000), (events.append,))
    assert events[-1].done == 3000


def test_items_count_as_they_complete_even_when_results_are_ordered() -> None:
    """One slow first item must not hold the count at zero."""
    release = threading.Event()
    seen_while_held = threading.Event()

    def held_first(x: int) -> int:
        if x == 0:
            assert release.wait(30)
        return x

    def observe(event: RunEvent) -> None:
        if event.done >= 3 and not release.is_set():  # the other chunks in flight
            seen_while_held.set()
            release.set()

    _run(held_first, range(20), (observe,), backend="thread", max_workers=2, chunksize=1)
    assert seen_while_held.is_set()


def test_failures_and_retries_are_counted(parallel_backend: str, tmp_path: Path) -> None:
    events: list[RunEvent] = []
    items = [(str(tmp_path), i) for i in range(6)]
    got = _run(
        fail_first_attempt,
        items,
        (events.append,),
        backend=parallel_backend,
        retries=1,
        retry_on=OSError,
        chunksize=2,
    )
    assert got == list(range(6))
    assert events[-1].retried == 6 and events[-1].failed == 0
    with pytest.raises(ZeroDivisionError):
        _run(lambda x: 1 // x, [1, 0], (events.append,), backend=parallel_backend, chunksize=1)
    assert events[-1].finished and events[-1].failed == 1
