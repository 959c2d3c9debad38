"""smartpool.testing's assertion helpers pass what is safe to parallelise and fail, with a
diagnosis, what is not."""

from __future__ import annotations

import operator
from typing import Any

import pytest
from hypothesis import strategies as st

from smartpool.testing import (
    assert_no_shared_state,
    assert_order_independent,
    assert_parallel_equivalent,
    assert_picklable,
)

from . import testing_tasks as tasks


def test_a_pure_function_is_equivalent_on_every_backend() -> None:
    assert_parallel_equivalent(tasks.square, range(20))
    assert_parallel_equivalent(tasks.square, [], backends=["thread"])


def test_the_same_exception_on_every_backend_is_equivalent() -> None:
    assert_parallel_equivalent(tasks.fail_on_three, range(6))


def test_a_function_returning_its_process_id_is_not_equivalent() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_parallel_equivalent(tasks.pid, range(4))
    message = str(caught.value)
    assert "on the process backend than serially" in message
    assert "first difference at item 0" in message
    assert "depends on the process that computes it" in message


def test_an_exception_that_differs_between_processes_is_not_equivalent() -> None:
    with pytest.raises(AssertionError, match=r"serially: raised ValueError\('three', \d+\)"):
        assert_parallel_equivalent(tasks.fail_on_three_with_pid, range(5), backends=["process"])


def test_draws_from_the_global_random_generator_are_named_as_the_cause() -> None:
    with pytest.raises(AssertionError, match="draws from the global random generator"):
        assert_parallel_equivalent(tasks.draw, range(3), backends=["thread"])


def test_module_globals_written_are_named_as_the_cause() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_parallel_equivalent(tasks.running_total, [1, 2, 3], backends=["serial"])
    assert "writes module global tests.testing_tasks.TOTAL" in str(caught.value)


def test_compare_decides_what_counts_as_equal() -> None:
    def close(a: float, b: float) -> bool:
        return abs(a - b) < 1.0

    assert_parallel_equivalent(tasks.draw, range(3), backends=["thread"], compare=close)
    with pytest.raises(AssertionError):
        assert_parallel_equivalent(tasks.square, [1, 2], backends=["thread"], compare=operator.ne)


def test_options_go_to_every_call_but_backend_is_refused() -> None:
    assert_parallel_equivalent(tasks.square, range(9), options={"chunksize": 2, "max_workers": 2})
    with pytest.raises(TypeError, match="pass backends="):
        assert_parallel_equivalent(tasks.square, [1], options={"backend": "thread"})


def test_a_strategy_makes_it_a_property_test_that_shrinks_to_a_minimal_failing_list() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_parallel_equivalent(
            tasks.pid_from_six, st.lists(st.integers(0, 20)), backends=["process"]
        )
    assert "for 1 item(s) [6]:" in str(caught.value)


def test_a_strategy_of_safe_inputs_passes() -> None:
    assert_parallel_equivalent(tasks.square, st.lists(st.integers(), max_size=20))


def test_picklable_functions_and_items_pass() -> None:
    assert_picklable(tasks.square, 1, "two", [3.0])
    assert_picklable(lambda x: x + 1)  # cloudpickle sends it by value


def test_a_closure_over_a_lock_is_named_with_where_it_sits() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_picklable(tasks.closure_over_lock())
    message = str(caught.value)
    assert message.startswith("closure_over_lock.<locals>.guarded cannot be sent")
    assert "closure variable 'lock' -> _thread.lock object" in message


def test_an_item_that_cannot_travel_is_named_by_its_position_and_attribute() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_picklable(tasks.square, 1, 2, tasks.Row(3))
    assert "item 2 (Row) cannot be pickled: attribute 'lock' -> _thread.lock" in str(caught.value)


def test_independent_functions_do_not_depend_on_order() -> None:
    assert_order_independent(tasks.square, range(10))
    assert_order_independent(tasks.fail_on_three, range(5))


def test_a_running_total_depends_on_order() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_order_independent(tasks.running_total, [1, 2, 3])
    message = str(caught.value)
    assert "depending on the order items run in" in message
    assert "tests.testing_tasks.TOTAL" in message


def test_a_function_without_shared_state_passes_the_race_check() -> None:
    assert_no_shared_state(tasks.square, range(10))


def test_a_cache_filled_once_is_not_shared_state() -> None:
    tasks.CACHE.clear()
    assert_no_shared_state(tasks.cached_square, range(10))


def test_a_read_modify_write_of_a_module_global_is_flagged() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_no_shared_state(tasks.bump, [1, 2, 3])
    message = str(caught.value)
    assert message.startswith("fn shares state between concurrent calls")
    assert "writes module global tests.testing_tasks.COUNTER" in message


def test_results_that_race_are_reported_with_the_first_wrong_one() -> None:
    with pytest.raises(AssertionError, match="result\\(s\\) differ from a serial run's"):
        assert_no_shared_state(tasks.running_total, [1, 2], threads=2, iterations=2)


@pytest.mark.parametrize(
    ("keywords", "error"),
    [({"threads": 1}, "threads must be at least 2"), ({"iterations": 0}, "iterations must be")],
)
def test_the_race_check_refuses_settings_that_cannot_race(
    keywords: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        assert_no_shared_state(tasks.square, [1], **keywords)
