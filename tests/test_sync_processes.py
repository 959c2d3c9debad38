"""The primitives across processes started by fork, forkserver and spawn: exclusion in both
directions, exact totals under contention, and recovery when a holder dies."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import pickle
import signal
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from smartpool._sync import (
    AbandonedLockWarning,
    BoundedSemaphore,
    Event,
    Lock,
    RLock,
    Semaphore,
    Value,
)

METHODS = ["fork", "forkserver", "spawn"]
WAIT = 30.0  # generous deadline for anything that should happen "soon"


@pytest.fixture(params=METHODS)
def ctx(request: pytest.FixtureRequest) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        return multiprocessing.get_context(request.param)


def _start(ctx: Any, target: Any, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        proc = ctx.Process(target=target, args=args)
        proc.start()
    return proc


# -- worker functions (module level, so that spawn can import them) ---------------------------


def _increment(blob: bytes, n: int) -> None:
    start, lock, guarded, value = pickle.loads(blob)
    start.wait(WAIT)
    for _ in range(n):
        with lock:
            guarded.set(guarded.get() + 1)  # read-modify-write: correct only under the lock
        value.add(1)


def _wait_for_parent_lock(lock: Lock, tried: Event, result: Value[Any]) -> None:
    first = lock.acquire(timeout=0.05)
    tried.set()
    second = lock.acquire(timeout=WAIT)
    result.set((first, second))
    lock.release()


def _hold_until_told(lock: Any, held: Event, go: Event) -> None:
    lock.acquire()
    held.set()
    go.wait(WAIT)
    lock.release()


def _hold_and_die(lock: Any, held: Event, how: str, times: int = 1) -> None:
    for _ in range(times):
        lock.acquire()
    held.set()
    if how == "exit":
        os._exit(3)
    threading.Event().wait(WAIT)  # until SIGKILLed (creating no shared object of its own)


def _update_and_die(value: Value[Any], held: Event) -> None:
    def half_done(v: Any) -> Any:
        held.set()
        threading.Event().wait(WAIT)  # killed here, inside update, holding the value's lock
        return v + 1000

    value.update(half_done)


def _release_when_told(blob: bytes, trials: int, report: Any) -> None:
    """For each trial: spin until the word in ``path`` says its number (both releasers leave
    the spin at the same instant), release ``lock``, report the outcome."""
    lock, path = pickle.loads(blob)
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as mm:
        go = memoryview(mm).cast("q")
        release = lock.release
        try:
            for trial in range(1, trials + 1):
                deadline, spins = time.monotonic() + WAIT, 0
                while go[0] != trial:
                    spins += 1
                    if spins % 65536 == 0 and time.monotonic() > deadline:
                        raise TimeoutError(f"trial {trial} never started")
                try:
                    release()
                    outcome = "released"
                except Exception as exc:
                    outcome = type(exc).__name__
                report.send(outcome)
        finally:
            go.release()


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_exact_totals_under_contention(ctx: Any) -> None:
    start, lock, guarded, value = Event(), Lock(), Value(0), Value(0)
    blob = pickle.dumps((start, lock, guarded, value))
    procs = [_start(ctx, _increment, blob, 300) for _ in range(3)]
    start.set()
    for p in procs:
        p.join(WAIT)
        assert p.exitcode == 0
    assert guarded.get() == value.get() == 900


@pytest.mark.timeout(60)
def test_lock_held_by_parent_blocks_worker(ctx: Any) -> None:
    lock, tried, result = Lock(), Event(), Value(None)
    lock.acquire()
    proc = _start(ctx, _wait_for_parent_lock, lock, tried, result)
    assert tried.wait(WAIT)
    lock.release()
    proc.join(WAIT)
    assert result.get() == (False, True)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", [Lock, RLock, Semaphore])
def test_lock_held_by_worker_blocks_parent(ctx: Any, kind: Any) -> None:
    lock, held, go = kind(), Event(), Event()
    proc = _start(ctx, _hold_until_told, lock, held, go)
    assert held.wait(WAIT)
    assert not lock.acquire(False)
    assert not lock.acquire(timeout=0.05)
    go.set()
    assert lock.acquire(timeout=WAIT)
    lock.release()
    proc.join(WAIT)
    assert proc.exitcode == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["sigkill", "exit"])
@pytest.mark.parametrize("kind", [Lock, RLock])
def test_dead_holder_lock_is_taken_over_with_warning(ctx: Any, kind: Any, how: str) -> None:
    lock, held = kind(), Event()
    proc = _start(ctx, _hold_and_die, lock, held, how, 2 if kind is RLock else 1)
    assert held.wait(WAIT)
    if how == "sigkill":
        os.kill(proc.pid, signal.SIGKILL)
    began = time.monotonic()
    with pytest.warns(AbandonedLockWarning) as record:
        assert lock.acquire(timeout=WAIT)
    assert time.monotonic() - began < 2.0
    assert record[0].message.pid == proc.pid  # type: ignore[union-attr]
    assert str(proc.pid) in str(record[0].message)
    lock.release()
    assert not lock.locked()
    proc.join(WAIT)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bounded", [False, True])
def test_dead_holder_semaphore_permits_come_back(ctx: Any, bounded: bool) -> None:
    sem, held = (BoundedSemaphore if bounded else Semaphore)(2), Event()
    proc = _start(ctx, _hold_and_die, sem, held, "sigkill", 2)
    assert held.wait(WAIT)
    os.kill(proc.pid, signal.SIGKILL)
    with pytest.warns(AbandonedLockWarning, match=str(proc.pid)):
        assert sem.acquire(timeout=WAIT)
    assert sem.acquire(False)  # both permits came back
    assert not sem.acquire(False)
    sem.release(2)
    proc.join(WAIT)


@pytest.mark.timeout(60)
def test_value_keeps_last_committed_state_when_updater_dies(ctx: Any) -> None:
    value, held = Value(41), Event()
    proc = _start(ctx, _update_and_die, value, held)
    assert held.wait(WAIT)
    os.kill(proc.pid, signal.SIGKILL)
    assert value.get() == 41
    with pytest.warns(AbandonedLockWarning):
        assert value.add(1) == 42
    proc.join(WAIT)


@pytest.mark.timeout(60)
def test_event_set_in_parent_wakes_worker_and_back(ctx: Any) -> None:
    lock, held, go = RLock(), Event(), Event()
    proc = _start(ctx, _hold_until_told, lock, held, go)
    assert held.wait(WAIT)  # set by the worker
    go.set()  # wakes the worker's wait
    proc.join(WAIT)
    assert proc.exitcode == 0


RACE_TRIALS = 2000


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("kind", "error"), [(Lock, RuntimeError), (BoundedSemaphore, ValueError)], ids=["Lock", "Bsem"]
)
def test_racing_releases_let_exactly_one_through(
    kind: Any, error: type[Exception], tmp_path: Path
) -> None:
    """Two processes release one held lock at the same instant, 2,000 times over: one release
    succeeds, the other raises, and afterwards one acquirer gets in, not two. (Checking that the
    lock is held and then posting, in two steps, let both releases through now and then.)"""
    lock = kind()
    path = tmp_path / "go"
    path.write_bytes(bytes(mmap.PAGESIZE))
    ctx = multiprocessing.get_context("forkserver")
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
    blob = pickle.dumps((lock, str(path)))
    procs = [_start(ctx, _release_when_told, blob, RACE_TRIALS, send) for _, send in pipes]
    for _, send in pipes:
        send.close()
    wrong: Counter[tuple[tuple[str, ...], tuple[bool, bool]]] = Counter()
    with path.open("r+b") as file, mmap.mmap(file.fileno(), 0) as mm:
        go = memoryview(mm).cast("q")
        try:
            for trial in range(1, RACE_TRIALS + 1):
                assert lock.acquire(timeout=WAIT)
                go[0] = trial
                outcomes = []
                for receive, _ in pipes:
                    assert receive.poll(WAIT), f"a releaser did not answer in trial {trial}"
                    outcomes.append(receive.recv())
                entered = (lock.acquire(False), lock.acquire(False))
                if sorted(outcomes) != [error.__name__, "released"] or entered != (True, False):
                    wrong[tuple(sorted(outcomes)), entered] += 1
                try:
                    lock.release()  # free for the next trial, whichever way this one went
                except (RuntimeError, ValueError):
                    pass
        finally:
            go.release()
    for proc in procs:
        proc.join(WAIT)
        assert proc.exitcode == 0
    assert not wrong, f"{wrong.total()} of {RACE_TRIALS} trials went wrong: {dict(wrong)}"
