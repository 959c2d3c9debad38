"""The last chunks of an automatic run on worker processes: once the input is used up, the caller
takes a chunk that no worker has taken yet and runs it, rather than wait while it queues (see
``_run.tail``). Each chunk runs once, in one place; where the call asked for what the caller
cannot give (a timeout, an initializer), it takes none."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import smartpool
from smartpool._options import Options
from smartpool._routing import clock, gil, gil_probe, probe
from smartpool._routing.measurement import Measurement
from smartpool._routing.probe_run import ProbeRun
from smartpool._run import beside as run_beside
from smartpool._run.tail import IN_CALLER, Claimable, Tail
from smartpool._work.task import Call

from . import tail_tasks as tasks


@pytest.fixture(autouse=True)
def _two_cores_and_warm_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two usable cores for the probe's sender, and two worker processes already running; every
    call probes afresh. The probe's verdict is pinned (its items still run in the caller): pure
    Python, holding the GIL, on a machine with no other program (on a loaded one, a wrong
    verdict would plan threads, or workers that take the last chunk: not under test here)."""
    monkeypatch.setattr(run_beside, "cpu_count", lambda max_cpus=None: 2)
    monkeypatch.setattr(gil_probe, "cores", lambda: 2)

    def holds_the_gil(
        fn: object,
        feed: object,
        retry: object,
        limit: int,
        timing: gil_probe.Timed,
        measurement: Measurement,
        gil_matters: object,
    ) -> ProbeRun:
        pinned = replace(measurement, cpu_fraction=1.0, crowding=0.0, other_groups=())
        verdict = gil_probe.with_gil(pinned, [gil.Sample(1.0)])
        return ProbeRun(timing.values, verdict, None, timing.exhausted)

    monkeypatch.setattr(probe, "sample_gil", holds_the_gil)
    monkeypatch.setattr(clock, "host_stolen_seconds", lambda: 0.0)
    smartpool.parallel_map(abs, [1, 2], backend="process", max_workers=2)
    smartpool.forget()
    yield
    smartpool.forget()


#: Items before the ones that hold a worker: the probe times at most these in the caller.
WORK = 4


def _held(folder: Path) -> list[tasks.Item]:
    """Four items of ~20 ms (the probe's, in the caller or sent beside it, and a few more), two
    that keep both workers busy until the last item has started, one more of ~20 ms, and the
    last: two chunks wait for a worker, as many as there are."""
    n = WORK + 4
    (folder / "last").write_text(str(n - 1))
    return tasks.items(folder, {WORK: "hold", WORK + 1: "hold"}, n)


def test_the_last_chunk_no_worker_took_runs_in_the_caller(tmp_path: Path) -> None:
    """Both workers are held until the last item starts, and two chunks wait: the last starts
    in the caller (before, it waited for a worker, and the held items failed at their
    deadline)."""
    items = _held(tmp_path)
    results = smartpool.parallel_map(tasks.run, items, max_workers=2, chunksize=1)
    assert [index for index, _ in results] == list(range(len(items)))
    ran = tasks.ran_in(tmp_path)
    assert ran[len(items) - 1] == os.getpid()
    assert ran[WORK] != os.getpid() and ran[WORK + 1] != os.getpid()  # the held workers


def test_an_item_failing_in_a_chunk_the_caller_took_says_so(tmp_path: Path) -> None:
    items = _held(tmp_path)
    n = len(items)
    items[-1] = (items[-1][0], n - 1, "fail")
    with pytest.raises(ValueError, match=f"item {n - 1} fails") as caught:
        smartpool.parallel_map(tasks.run, items, max_workers=2, chunksize=1)
    notes = " ".join(getattr(caught.value, "__notes__", []))
    assert IN_CALLER in notes, notes
    assert tasks.ran_in(tmp_path)[n - 1] == os.getpid()


@pytest.mark.parametrize(
    "options",
    [{"max_tasks_per_child": 100}, {"backend": "process"}],
    ids=["max_tasks_per_child", "process asked for"],
)
def test_the_caller_takes_no_chunk_where_the_call_asked_for_workers(
    tmp_path: Path, options: dict[str, object]
) -> None:
    """A bound on a worker's items (workers of the call's own), or processes asked for by name:
    every item after the probe's runs in a worker process."""
    n = 8
    results = smartpool.parallel_map(tasks.run, tasks.items(tmp_path, {}, n), **options)
    assert [index for index, _ in results] == list(range(n))
    assert tasks.ran_in(tmp_path)[n - 1] != os.getpid()


def test_the_caller_may_take_chunks_only_of_a_probed_call_without_timeout_or_initializer() -> None:
    """(A call with a timeout or an initializer is not probed today: it runs on threads unless
    told otherwise. Were it planned on processes, a chunk in the caller could not be stopped at
    its timeout, nor have the worker's initializer run.)"""
    call = Call(abs)
    assert Tail.allowed(Options(), call, probed=True)
    assert not Tail.allowed(Options(), call, probed=False)
    assert not Tail.allowed(Options(timeout=1.0), call, probed=True)
    assert not Tail.allowed(Options(initializer=abs), call, probed=True)
    assert not Tail.allowed(Options(max_tasks_per_child=1), call, probed=True)


def test_the_caller_takes_a_chunk_only_when_a_round_of_workers_would_pass_first() -> None:
    """With fewer chunks waiting than workers, the last starts as soon as a worker is free:
    the caller takes none (three processes computing on two cores took longer than two workers
    and the chunk after them). With as many, it takes the last, then looks again."""
    ran: list[int] = []
    tail = Tail(Call(ran.append), 2)
    first = tail.future([6], 6)
    assert not tail.run_one()
    assert not first.running() and ran == []
    last = tail.future([7], 7)
    assert tail.run_one()
    assert ran == [7] and last.result().values == [None]
    assert not first.running()  # (left for a worker)
    assert not tail.run_one()  # one waits, for two workers
    assert first.set_running_or_notify_cancel()  # a worker takes it
    assert not tail.run_one()


def test_a_chunk_runs_where_it_was_taken_first() -> None:
    """The caller's claim and a worker's taking it (``set_running_or_notify_cancel``) exclude
    each other, from any threads, and a cancelled chunk is taken by neither."""
    taken_first = Claimable()
    assert taken_first.set_running_or_notify_cancel()
    assert not taken_first.claim()

    claimed = Claimable()
    assert claimed.claim()
    assert not claimed.claim()
    assert not claimed.set_running_or_notify_cancel()  # the worker skips it
    claimed.set_result(None)  # type: ignore[arg-type]  # the caller settles it

    cancelled = Claimable()
    assert cancelled.cancel()
    assert not cancelled.claim()

    for _ in range(200):  # both at once: exactly one wins
        future = Claimable()
        barrier = threading.Barrier(2)
        wins: list[bool] = []

        def worker(
            f: Claimable = future, b: threading.Barrier = barrier, won: list[bool] = wins
        ) -> None:
            b.wait()
            won.append(f.set_running_or_notify_cancel())

        thread = threading.Thread(target=worker)
        thread.start()
        barrier.wait()
        wins.append(future.claim())
        thread.join()
        assert sorted(wins) == [False, True]
