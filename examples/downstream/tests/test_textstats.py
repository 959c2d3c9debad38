"""textstats' functions are safe to parallelise, and its error handling works when workers
crash or time out: proved with smartpool's pytest plugin, helpers and strategies."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import textstats
from hypothesis import given, settings
from hypothesis import strategies as st

import smartpool
from smartpool.testing import (
    assert_no_shared_state,
    assert_order_independent,
    assert_parallel_equivalent,
    assert_picklable,
    scheduled,
    strategies,
)

TEXTS = ["a b c", "", "one two", "x " * 50]


def test_word_counts_on_every_backend(smartpool_backend: str) -> None:
    assert textstats.word_counts(TEXTS) == [3, 0, 2, 50]


@pytest.mark.smartpool(backends=["thread", "process"])
def test_digests_match_hashlib_in_parallel(smartpool_backend: str) -> None:
    assert textstats.digests(TEXTS) == [hashlib.sha256(t.encode()).hexdigest() for t in TEXTS]


@pytest.mark.parametrize("measure", [textstats.count_words, textstats.digest])
def test_the_measures_are_safe_to_parallelise(measure: Any) -> None:
    assert_picklable(measure, *TEXTS)
    assert_parallel_equivalent(measure, st.lists(st.text(max_size=30), max_size=8))
    assert_order_independent(measure, TEXTS)
    assert_no_shared_state(measure, TEXTS)


@settings(max_examples=30, deadline=None)
@given(
    strategies.options(backends=["serial", "thread"], timeouts=False),
    st.lists(st.text(max_size=20), max_size=10),
)
def test_word_counts_under_any_options(options: dict[str, Any], texts: list[str]) -> None:
    with smartpool.config(**options):
        assert textstats.word_counts(texts) == [len(t.split()) for t in texts]


def test_a_crash_is_reported_and_everything_else_kept() -> None:
    texts = ["w " * i for i in range(6)]
    with scheduled(order=[5, 4, 3, 0, 1, 2], faults={2: "crash"}):
        report = textstats.analyse(texts)
    assert report.failed == {2: "WorkerCrashedError"}
    assert report.counts == {0: 0, 1: 1, 3: 3, 4: 4, 5: 5}


@settings(max_examples=40, deadline=None)
@given(strategies.completion_orders(6), strategies.fault_plans(6, kinds=["crash", "timeout"]))
def test_analyse_accounts_for_every_text_whatever_fails(
    order: list[int], faults: dict[int, Any]
) -> None:
    texts = ["w " * i for i in range(6)]
    with scheduled(order=order, faults=faults):
        report = textstats.analyse(texts)
    assert set(report.counts) | set(report.failed) == set(range(6))
    assert not set(report.counts) & set(report.failed)
    assert all(count == index for index, count in report.counts.items())
    assert bool(report.failed) == bool(faults)
