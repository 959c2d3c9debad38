"""``scheduled()``: smartpool completes items in the order asked for and fails the items asked
for with its real errors, the same way every time."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

import smartpool
from smartpool.testing import scheduled

from . import testing_tasks as tasks


def test_results_complete_in_the_order_given_then_the_rest_in_input_order() -> None:
    with scheduled(order=[3, 1]):
        got = list(smartpool.imap(tasks.square, range(5), ordered=False))
    assert got == [9, 1, 0, 4, 16]


def test_ordered_results_stay_in_input_order_while_items_run_in_completion_order() -> None:
    ran: list[int] = []

    def note(x: int) -> int:
        ran.append(x)
        return x

    with scheduled(order=[2, 0, 1]):
        assert smartpool.parallel_map(note, range(3)) == [0, 1, 2]
    assert ran == [2, 0, 1]


def test_the_same_schedule_gives_the_same_run_every_time() -> None:
    outcomes = set()
    for _ in range(20):
        with scheduled(order=[4, 0, 3], faults={2: "crash"}):
            results = smartpool.imap(tasks.square, range(6), ordered=False)
            seen = []
            try:
                seen.extend(results)
            except smartpool.WorkerCrashedError as error:
                outcomes.add((tuple(seen), tuple(sorted(error.completed.items()))))
    assert outcomes == {((16, 0, 9, 1), ())}


def test_a_crash_raises_the_real_error_with_what_completed_before() -> None:
    with (
        scheduled(order=[3, 0, 1], faults={1: "crash"}),
        pytest.raises(smartpool.WorkerCrashedError) as caught,
    ):
        smartpool.parallel_map(tasks.square, range(5))
    error = caught.value
    assert type(error) is smartpool.WorkerCrashedError
    assert error.index == 1 and error.exitcode == -9
    assert error.completed == {0: 0, 3: 9}  # item 0 was delivered, item 3 completed meanwhile
    assert "killed by SIGKILL" in str(error)


def test_a_timeout_raises_the_real_error_with_the_calls_limit() -> None:
    with scheduled(faults={2: "timeout"}), pytest.raises(smartpool.TaskTimeoutError) as caught:
        smartpool.parallel_map(tasks.square, range(4), timeout=30)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert (error.index, error.timeout, error.completed) == (2, 30, {0: 0, 1: 1})


def test_an_exception_is_raised_as_the_items_own_with_smartpools_note() -> None:
    fault = ValueError("bad row")
    with scheduled(faults={1: fault}), pytest.raises(ValueError, match="bad row") as caught:
        smartpool.parallel_map(tasks.square, range(3))
    assert caught.value is not fault  # a fresh copy each time: notes do not pile up
    assert caught.value.__notes__ == [
        "smartpool: item 1 failed on the scheduled backend "
        "(the calling thread, scheduled by smartpool.testing)"
    ]
    with scheduled(faults={0: KeyError}), pytest.raises(KeyError):
        smartpool.parallel_map(tasks.square, range(3))


def test_the_first_failing_item_in_input_order_wins_for_ordered_results() -> None:
    with scheduled(order=[3, 1], faults={1: ValueError("one"), 3: "crash"}):
        with pytest.raises(ValueError, match="one"):
            smartpool.parallel_map(tasks.square, range(4))
        with pytest.raises(smartpool.WorkerCrashedError):
            list(smartpool.imap(tasks.square, range(4), ordered=False))


def test_items_run_only_when_the_caller_takes_results() -> None:
    ran: list[int] = []

    def note(x: int) -> int:
        ran.append(x)
        return x

    with scheduled():
        results = smartpool.imap(note, itertools.count())
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        results.close()
    assert ran == [0, 1, 2]


def test_submit_completes_at_once_and_faults_apply_to_its_item() -> None:
    with scheduled():
        assert smartpool.submit(pow, 2, 5).result() == 32
    with scheduled(faults={0: "crash"}), pytest.raises(smartpool.WorkerCrashedError):
        smartpool.submit(pow, 2, 5).result()


def test_a_call_naming_its_backend_is_not_scheduled() -> None:
    with scheduled():
        assert smartpool.explain(tasks.square, [1, 2]).backend == "scheduled"
        assert smartpool.explain(tasks.square, [1, 2], backend="thread").backend == "thread"


def test_as_a_decorator_and_nested_the_innermost_schedule_counts() -> None:
    @scheduled(order=[1, 0])
    def outer() -> tuple[list[int], list[int]]:
        with scheduled(order=[2]):
            inner = list(smartpool.imap(tasks.square, range(3), ordered=False))
        return list(smartpool.imap(tasks.square, range(3), ordered=False)), inner

    assert outer() == ([1, 0, 4], [4, 0, 1])


def test_schedules_in_two_threads_stay_apart() -> None:
    barrier = threading.Barrier(2, timeout=60)
    got: dict[str, list[int]] = {}

    def run(name: str, order: list[int]) -> None:
        with scheduled(order=order):
            barrier.wait()
            got[name] = list(smartpool.imap(tasks.square, range(3), ordered=False))

    threads = [
        threading.Thread(target=run, args=("a", [2, 1, 0])),
        threading.Thread(target=run, args=("b", [1, 2, 0])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert got == {"a": [4, 1, 0], "b": [1, 4, 0]}


@pytest.mark.parametrize(
    ("keywords", "error", "match"),
    [
        ({"order": [1, 1]}, ValueError, "order names an item twice"),
        ({"order": [-1]}, TypeError, "an int >= 0"),
        ({"faults": {"1": "crash"}}, TypeError, "an int >= 0"),
        ({"faults": {1: "explode"}}, TypeError, "'crash', 'timeout', an exception"),
    ],
)
def test_a_bad_schedule_is_refused_before_anything_runs(
    keywords: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match), scheduled(**keywords):
        pytest.fail("the block must not run")


def test_waiting_for_all_or_each_chunk_completes_them_all() -> None:
    """Other ways of waiting on the chunks' Futures than the run's own still end."""
    from concurrent.futures import ALL_COMPLETED, Future, as_completed, wait

    from smartpool._work.task import Call
    from smartpool.testing._scheduled import ScheduledBackend, _Plan, _Schedule

    backend = ScheduledBackend(1)
    for how in ("all", "each"):
        schedule = _Schedule(Call(tasks.square), _Plan((2, 0, 1)))
        futures = [backend.submit(schedule, [i], i, Future()) for i in range(3)]
        if how == "all":
            done, _ = wait(futures, timeout=60, return_when=ALL_COMPLETED)
            assert len(done) == 3
        else:
            assert len(list(as_completed(futures, timeout=60))) == 3
        assert [f.result().values for f in futures] == [[0], [1], [4]]
