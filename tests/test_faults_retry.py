"""retries= re-runs failing items on every backend; the final error is the real one, annotated."""

from __future__ import annotations

from pathlib import Path

import pytest

import smartpool

from .fault_tasks import Flaky, attempts


@pytest.mark.timeout(60)
def test_items_that_fail_fewer_times_than_retries_succeed(backend: str, tmp_path: Path) -> None:
    fn = Flaky(str(tmp_path), failures=2)
    results = smartpool.parallel_map(fn, range(4), backend=backend, retries=2)
    assert results == [0, 10, 20, 30]
    assert [attempts(str(tmp_path), i) for i in range(4)] == [3, 3, 3, 3]


@pytest.mark.timeout(60)
def test_last_error_is_the_real_one_after_exactly_n_plus_one_attempts(
    backend: str, tmp_path: Path
) -> None:
    fn = Flaky(str(tmp_path), failures=5, error=KeyError)
    with pytest.raises(KeyError, match="attempt 3 at item 0") as info:
        list(smartpool.imap(fn, range(3), backend=backend, retries=2, retry_on=KeyError))
    assert attempts(str(tmp_path), 0) == 3
    notes = info.value.__notes__
    assert "smartpool: failed after 3 attempts (retries=2)" in notes
    assert any(f"item 0 failed on the {backend} backend" in note for note in notes)


@pytest.mark.timeout(60)
def test_errors_not_in_retry_on_are_not_retried(backend: str, tmp_path: Path) -> None:
    fn = Flaky(str(tmp_path), failures=1, error=ValueError)
    with pytest.raises(ValueError, match="attempt 1 at item 0") as info:
        smartpool.parallel_map(fn, [0], backend=backend, retries=3, retry_on=(KeyError, OSError))
    assert attempts(str(tmp_path), 0) == 1
    assert not any("attempts" in note for note in info.value.__notes__)


@pytest.mark.timeout(60)
def test_retry_on_a_class_defined_in_a_function(backend: str, tmp_path: Path) -> None:
    class LocalError(Exception):
        """Not importable by name: it must travel to a worker by value."""

    fn = Flaky(str(tmp_path), failures=1, error=LocalError)
    assert smartpool.parallel_map(fn, [1, 2], backend=backend, retries=1, retry_on=LocalError) == [
        10,
        20,
    ]
    assert attempts(str(tmp_path), 1) == 2
