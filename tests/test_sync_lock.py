"""Lock and RLock behave like their threading counterparts, in one process."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import Any

import pytest

from smartpool._sync import BoundedSemaphore, Lock, RLock, Semaphore, _lock, _semaphore
from smartpool._sync._proc import current_token

from .subprocesses import ENV


def test_lock_basic_protocol() -> None:
    lock = Lock()
    assert not lock.locked()
    assert lock.acquire()
    assert lock.locked()
    assert not lock.acquire(False)
    assert not lock.acquire(timeout=0.01)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_rlock_reentrant_and_owned() -> None:
    rlock = RLock()
    with rlock, rlock:
        failed: list[BaseException] = []

        def other() -> None:
            try:
                rlock.release()
            except RuntimeError as exc:
                failed.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(failed) == 1
    with pytest.raises(RuntimeError):
        rlock.release()


def test_pickle_round_trip_shares_state() -> None:
    lock = Lock()
    copy = pickle.loads(pickle.dumps(lock))
    with lock:
        assert copy.locked()
        assert not copy.acquire(False)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((False,), {}),
        ((True, 0.01), {}),
        ((), {"blocking": False}),
        ((), {"timeout": 0.01}),
        ((False, 1), {}),  # non-blocking with a timeout
        ((), {"timeout": -2}),  # negative timeout other than -1
        ((True, 1, 2), {}),  # too many arguments
        ((), {"wait": 1}),  # unknown keyword
    ],
)
def test_acquire_arguments_as_threading(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """Each way of calling acquire on a taken lock (except waiting for ever, which would hang the
    reference) gives threading.Lock's result or error type."""
    ours, reference = Lock(), threading.Lock()
    for lock in (ours, reference):
        lock.acquire()

    def outcome(lock: object) -> object:
        try:
            return lock.acquire(*args, **kwargs)  # type: ignore[attr-defined]
        except (TypeError, ValueError, OverflowError) as exc:
            return type(exc)

    assert outcome(ours) == outcome(reference)
    ours.release()


def test_holder_token_is_recorded_and_cleared() -> None:
    """The token a blocked acquirer checks for a dead holder: set by acquire, cleared by release."""
    lock = Lock()
    for enter, leave in [
        (lock.acquire, lock.release),
        (lock.__enter__, lambda: lock.__exit__(None, None, None)),
    ]:
        enter()
        assert lock._w[_lock._OWNER] == current_token()
        leave()
        assert lock._w[_lock._OWNER] == 0


def test_fast_path_is_compiled_unless_disabled() -> None:
    """A build that silently lost the C fast paths would fail the sync benchmark targets; catch
    it, for each primitive that has one."""
    disabled = os.environ.get("SMARTPOOL_PURE_PYTHON", "") not in ("", "0")
    assert _lock.ACCELERATED is not disabled
    assert isinstance(Lock(), _lock.PyLockCore) is disabled
    assert isinstance(RLock(), _lock.PyRLockCore) is disabled
    assert isinstance(Semaphore(), _semaphore.PySemCore) is disabled
    assert isinstance(BoundedSemaphore(), _semaphore.PySemCore) is disabled


def test_blocked_c_acquire_checks_for_a_dead_holder_as_often_as_python() -> None:
    """A contended acquire sleeps in C for one slice before the Python slow path looks for a
    dead holder: the slice is the one the slow path waits between two looks. (The extension is
    built wherever the tests run, see above, even when a run disables it.)"""
    from smartpool._sync import _fastlock, _owner

    assert _fastlock.POLL == _owner.POLL


def test_semaphore_release_takes_n_as_threading() -> None:
    """The C core parses release's argument as ``threading.Semaphore.release`` does."""
    sem = Semaphore(0)
    sem.release()
    sem.release(2)
    sem.release(n=3)
    assert sem._value() == 6
    with pytest.raises(ValueError, match="n must be one or more"):
        sem.release(0)
    with pytest.raises(TypeError):
        sem.release(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        sem.release(m=1)  # type: ignore[call-arg]
    for _ in range(6):
        assert sem.acquire(False)
    assert not sem.acquire(False)


@pytest.mark.timeout(300)
def test_pure_python_fallback_passes_the_lock_suites() -> None:
    """The fallback used where the extension was not built: same tests, same results."""
    here = os.path.dirname(__file__)
    files = [os.path.join(here, f"test_sync_{n}.py") for n in ("lock", "semantics", "processes")]
    env = {**ENV, "SMARTPOOL_PURE_PYTHON": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "not fallback",
            *files,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


class _StopAfterFirstStep:
    """A lock's semaphore as one thread sees it: after that thread's first semaphore operation
    (on any of the lock's semaphores wrapped alike) it stops until ``go_on`` is set."""

    def __init__(
        self, real: Any, thread: list[int], stopped: threading.Event, go_on: threading.Event
    ):
        self._real, self._thread, self._stopped, self._go_on = real, thread, stopped, go_on

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def step(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if threading.get_ident() in self._thread and not self._stopped.is_set():
                self._stopped.set()
                assert self._go_on.wait(30), "never told to go on"
            return result

        return step


@pytest.mark.timeout(60)
def test_a_release_under_way_keeps_a_racing_release_out() -> None:
    """The worst interleaving of two releases of a held lock, forced: the first (the pure-Python
    core's steps, which any process may run on this lock) stops after its first semaphore
    operation, and the second (this build's core) runs meanwhile. One succeeds, the other
    raises RuntimeError, and then one acquirer gets in, not two."""
    lock = Lock()
    lock.acquire()
    names = [name for name in ("_sem", "_held") if getattr(lock, name, None) is not None]
    reals = {name: getattr(lock, name) for name in names}
    first: list[int] = []
    stopped, go_on = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}

    def release(which: str, how: Any) -> None:
        if which == "first":
            first.append(threading.get_ident())
        try:
            how()
            outcomes[which] = "released"
        except Exception as exc:
            outcomes[which] = type(exc).__name__

    for name in names:
        setattr(lock, name, _StopAfterFirstStep(reals[name], first, stopped, go_on))
    try:
        stepwise = threading.Thread(
            target=release, args=("first", lambda: _lock.PyLockCore.release(lock))
        )
        stepwise.start()
        assert stopped.wait(30), "the first release never reached a semaphore"
        release("second", lock.release)
        go_on.set()
        stepwise.join(30)
    finally:
        go_on.set()
        for name in names:
            setattr(lock, name, reals[name])
    assert sorted(outcomes.values()) == ["RuntimeError", "released"], outcomes
    assert lock.acquire(False)
    assert not lock.acquire(False)
    lock.release()
