"""smartpool.testing.strategies draw only what smartpool accepts, and can be used from several
threads at once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smartpool
from smartpool.testing import scheduled, strategies

from . import testing_tasks as tasks


@settings(max_examples=40, deadline=None)
@given(strategies.options())
def test_every_drawn_combination_of_options_is_accepted(options: dict[str, Any]) -> None:
    smartpool.explain(tasks.square, **options)  # validates every option, runs nothing
    if options.get("timeout") is not None:
        assert options.get("backend") != "serial"
        assert options.get("chunksize") in (None, 1)


@settings(max_examples=15, deadline=None)
@given(strategies.options(backends=["serial", "thread", "process"], max_workers=2))
def test_drawn_options_run_a_call(options: dict[str, Any]) -> None:
    assert sorted(smartpool.parallel_map(tasks.square, range(6), **options)) == [
        0,
        1,
        4,
        9,
        16,
        25,
    ]


@given(strategies.options(backends=()))
def test_backend_can_be_left_out(options: dict[str, Any]) -> None:
    assert "backend" not in options


@given(strategies.backends(), strategies.backends(parallel=True))
def test_backends_are_the_built_in_ones(any_backend: str, parallel: str) -> None:
    assert any_backend in ("serial", "thread", "process")
    assert parallel in ("thread", "process")


@given(strategies.chunksizes(5), strategies.worker_counts(3))
def test_chunksizes_and_worker_counts_stay_in_range(
    chunksize: int | None, workers: int | None
) -> None:
    assert chunksize is None or 1 <= chunksize <= 5
    assert workers is None or 1 <= workers <= 3


@given(st.integers(0, 8).flatmap(lambda n: st.tuples(st.just(n), strategies.completion_orders(n))))
def test_completion_orders_are_permutations(drawn: tuple[int, list[int]]) -> None:
    n, order = drawn
    assert sorted(order) == list(range(n))


@settings(max_examples=50, deadline=None)
@given(
    strategies.completion_orders(5),
    strategies.fault_plans(5, exception=KeyError, max_faults=2),
)
def test_a_scheduled_call_fails_at_its_first_fault_in_input_order(
    order: list[int], faults: dict[int, Any]
) -> None:
    assert len(faults) <= 2 and all(0 <= i < 5 for i in faults)
    with scheduled(order=order, faults=faults):
        if not faults:
            assert smartpool.parallel_map(tasks.square, range(5)) == [0, 1, 4, 9, 16]
            return
        first = faults[min(faults)]
        expected = {
            "crash": smartpool.WorkerCrashedError,
            "timeout": smartpool.TaskTimeoutError,
        }.get(first, KeyError)  # type: ignore[call-overload]
        with pytest.raises(expected):
            smartpool.parallel_map(tasks.square, range(5))


@given(strategies.fault_plans(3, kinds=["raise"]))
def test_fault_plans_keep_to_the_kinds_asked_for(faults: dict[int, Any]) -> None:
    assert all(isinstance(fault, ValueError) for fault in faults.values())


def test_no_items_have_no_order_and_no_faults() -> None:
    @given(strategies.completion_orders(0), strategies.fault_plans(0))
    def check(order: list[int], faults: dict[int, Any]) -> None:
        assert order == [] and faults == {}

    check()


@pytest.mark.parametrize(
    "build",
    [
        lambda: strategies.completion_orders(-1),
        lambda: strategies.fault_plans(-1),
        lambda: strategies.fault_plans(3, kinds=["explode"]),
        lambda: strategies.fault_plans(3, kinds=[]),
    ],
)
def test_bad_arguments_are_refused(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


def test_strategies_are_built_and_drawn_from_in_several_threads_at_once() -> None:
    barrier = threading.Barrier(4, timeout=60)
    failures: list[BaseException] = []

    def work() -> None:
        @settings(max_examples=30, deadline=None, database=None)
        @given(
            strategies.options(),
            strategies.completion_orders(6),
            strategies.fault_plans(6),
        )
        def draws(options: dict[str, Any], order: list[int], faults: dict[int, Any]) -> None:
            smartpool.explain(tasks.square, **options)
            assert sorted(order) == list(range(6))

        try:
            barrier.wait()
            draws()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
