"""A state machine over runs: start runs of any size on any backend and pool size, take some
results, cancel, close early, nest calls; after every step, results are right and complete so
far, no item ran twice (every item exactly once for runs that finished), and when no run is open,
no pool is leased."""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections import Counter
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import smartpool
from smartpool._backends import registry

from .helpers import log_run, nested_sum


@dataclass
class _Open:
    results: smartpool.ResultIterator[int]
    n: int
    log: Path
    taken: list[int] = field(default_factory=list)


class Runs(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="smartpool-machine-"))
        self.open: list[_Open] = []
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
        self.count += 1
        log = self.folder / f"run{self.count}"
        items = [(str(log), i, 0.002 if slow else 0.0) for i in range(n)]
        results = smartpool.imap(
            log_run,
            items,
            backend=backend,
            max_workers=workers,
            ordered=ordered,  # type: ignore[arg-type]
        )
        self.open.append(_Open(results, n, log))

    @precondition(lambda self: self.open)
    @rule(data=st.data(), k=st.integers(1, 12))
    def take(self, data: st.DataObject, k: int) -> None:
        run = data.draw(st.sampled_from(self.open))
        for _ in range(k):
            try:
                run.taken.append(next(run.results))
            except StopIteration:
                assert sorted(run.taken) == list(range(run.n)), "a finished run lost items"
                self._end(run, finished=True)
                return

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        run = data.draw(st.sampled_from(self.open))
        run.results.cancel()
        with pytest.raises(CancelledError):
            while True:  # what was already computed may still come out, then it stops
                run.taken.append(next(run.results))
        self._end(run, finished=False)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        run = data.draw(st.sampled_from(self.open))
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

    def _end(self, run: _Open, *, finished: bool) -> None:
        self.open.remove(run)
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
    max_examples=20,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_runs_keep_every_item_once = pytest.mark.timeout(300)(Runs.TestCase)
