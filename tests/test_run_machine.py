"""A state machine over runs: start runs of any size on any backend and pool size, some with an
input that raises after k items or an item that raises, take some results, cancel, close early,
nest calls; after every step, results are right and complete so far, no item ran twice (every
item exactly once for runs that finished), and when no run is open, no pool is leased.

A failing input delivers the result of every item it gave, then its own exception; a failing item
raises its error after every result ordered before it (all results before it with
``ordered=True``), and nothing comes after the error."""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import smartpool
from smartpool._backends import registry

from .helpers import ItemFailed, log_run_or_fail, nested_sum


class InputBroke(Exception):
    """Raised by a run's input after its items (``_breaking``)."""


def _breaking(items: list[tuple[str, int, float, bool]]) -> Iterator[tuple[str, int, float, bool]]:
    yield from items
    raise InputBroke(len(items))


@dataclass
class _Open:
    results: smartpool.ResultIterator[int]
    n: int
    log: Path
    ordered: bool
    #: The item that raises, if one does; whether the input raises after its ``n`` items.
    failing_item: int | None = None
    input_breaks: bool = False
    taken: list[int] = field(default_factory=list)
    ended: bool = False

    def own_errors(self) -> tuple[type[Exception], ...]:
        return (ItemFailed,) * (self.failing_item is not None) + (InputBroke,) * self.input_breaks


class Runs(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="smartpool-machine-"))
        # Every run started, ended or not: the rules draw from it, so that what they draw does
        # not depend on when a run happened to end (an unordered run's error comes at any point).
        self.runs: list[_Open] = []
        self.ended: list[tuple[Path, int, bool]] = []  # log, items, finished
        self.count = 0
        gc.collect()  # runs dropped by earlier tests let go of their pools
        self.held_before = sum(p.holders for p in registry._pools.values())

    @rule(
        backend=st.sampled_from(["auto", "serial", "thread", "process"]),
        workers=st.integers(1, 4),
        n=st.integers(0, 40),
        slow=st.booleans(),
        ordered=st.booleans(),
    )
    def start(self, backend: str, workers: int, n: int, slow: bool, ordered: bool) -> None:
        self._start(backend, workers, n, slow, ordered)

    @rule(
        backend=st.sampled_from(["auto", "serial", "thread", "process"]),
        workers=st.integers(1, 4),
        n=st.integers(0, 12),
        ordered=st.booleans(),
        data=st.data(),
    )
    def start_failing(
        self, backend: str, workers: int, n: int, ordered: bool, data: st.DataObject
    ) -> None:
        """A run whose input raises after its ``n`` items, or (when ``n`` > 0) one whose item
        raises."""
        if n > 0 and data.draw(st.booleans(), label="an item fails (else the input)"):
            failing = data.draw(st.integers(0, n - 1), label="failing item")
            self._start(backend, workers, n, False, ordered, failing_item=failing)
        else:
            self._start(backend, workers, n, False, ordered, input_breaks=True)

    def _start(
        self,
        backend: str,
        workers: int,
        n: int,
        slow: bool,
        ordered: bool,
        *,
        failing_item: int | None = None,
        input_breaks: bool = False,
    ) -> None:
        self.count += 1
        log = self.folder / f"run{self.count}"
        items = [(str(log), i, 0.002 if slow else 0.0, i == failing_item) for i in range(n)]
        results = smartpool.imap(
            log_run_or_fail,
            _breaking(items) if input_breaks else items,
            backend=backend,
            max_workers=workers,
            ordered=ordered,  # type: ignore[arg-type]
        )
        self.runs.append(_Open(results, n, log, ordered, failing_item, input_breaks))

    @property
    def open(self) -> list[_Open]:
        return [run for run in self.runs if not run.ended]

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), k=st.integers(1, 12))
    def take(self, data: st.DataObject, k: int) -> None:
        run = data.draw(st.sampled_from(self.runs))
        if run.ended:
            return
        for _ in range(k):
            try:
                run.taken.append(next(run.results))
            except StopIteration:
                assert not run.own_errors(), "a run ended without its error"
                assert sorted(run.taken) == list(range(run.n)), "a finished run lost items"
                self._end(run, finished=True)
                return
            except InputBroke:
                assert run.input_breaks, "an input error from a run whose input does not fail"
                assert sorted(run.taken) == list(range(run.n)), "results before it were lost"
                self._stopped_after_error(run)
                self._end(run, finished=True)  # every item the input gave ran
                return
            except ItemFailed as error:
                assert error.index == run.failing_item, "another item's error"
                if run.ordered:
                    assert sorted(run.taken) == list(range(error.index)), "results before it lost"
                assert error.index not in run.taken
                self._stopped_after_error(run)
                self._end(run, finished=False)
                return

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        run = data.draw(st.sampled_from(self.runs))
        if run.ended:
            return
        run.results.cancel()
        with pytest.raises(CancelledError):
            while True:  # what was already computed may still come out, then it stops
                try:
                    run.taken.append(next(run.results))
                except run.own_errors():  # the run's error came first: nothing comes after it
                    pass
        self._end(run, finished=False)

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        run = data.draw(st.sampled_from(self.runs))
        if run.ended:
            return
        run.results.close()
        with pytest.raises(StopIteration):
            next(run.results)
        self._end(run, finished=False)

    @rule(backend=st.sampled_from(["thread", "process"]), workers=st.integers(1, 3))
    def nested(self, backend: str, workers: int) -> None:
        sizes = list(range(6))
        got = smartpool.parallel_map(
            nested_sum,
            sizes,
            backend=backend,
            max_workers=workers,  # type: ignore[arg-type]
        )
        assert got == [sum(range(n)) * 2 for n in sizes]

    def _stopped_after_error(self, run: _Open) -> None:
        """Nothing comes after a run's error: the next ``next()`` ends the iteration."""
        with pytest.raises(StopIteration):
            run.taken.append(next(run.results))

    def _end(self, run: _Open, *, finished: bool) -> None:
        run.ended = True
        self.ended.append((run.log, run.n, finished))

    @invariant()
    def results_are_right_so_far(self) -> None:
        for run in self.open:
            assert len(set(run.taken)) == len(run.taken), "an item's result came twice"
            assert all(0 <= i < run.n for i in run.taken)

    @invariant()
    def no_pool_is_leased_without_an_open_run(self) -> None:
        if not self.open:
            assert sum(p.holders for p in registry._pools.values()) <= self.held_before

    def teardown(self) -> None:
        for run in list(self.open):
            run.results.close()
            self._end(run, finished=False)
        for log, n, finished in self.ended:
            ran = Counter(int(x) for x in log.read_text().split()) if log.exists() else Counter()
            assert all(count == 1 for count in ran.values()), f"items ran twice: {ran}"
            assert set(ran) <= set(range(n))
            if finished:
                assert set(ran) == set(range(n)), "a finished run skipped items"
        shutil.rmtree(self.folder, ignore_errors=True)


Runs.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_runs_keep_every_item_once = pytest.mark.timeout(300)(Runs.TestCase)
