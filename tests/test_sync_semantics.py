"""Each primitive behaves exactly like its ``threading`` reference (hypothesis stateful tests),
and ``Value`` behaves like a plain variable behind a lock. Single process; see
test_sync_processes.py for the cross-process behaviour."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from smartpool._sync import BoundedSemaphore, Event, Lock, RLock, Semaphore, Value
from smartpool._sync._event import _WAITERS

FAST = settings(max_examples=40, stateful_step_count=25, deadline=None)


def outcome(call: Callable[[], Any]) -> Any:
    """Result of a call, or the type of the exception it raised."""
    try:
        return call()
    except Exception as exc:
        return type(exc)


def in_thread(call: Callable[[], Any]) -> Any:
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(outcome(call)))
    t.start()
    t.join()
    return box[0]


class LockMachine(RuleBasedStateMachine):
    """Lock (used through the original and a pickled copy) against threading.Lock."""

    def __init__(self) -> None:
        super().__init__()
        self.ref = threading.Lock()
        self.obj = Lock()
        self.views = [self.obj, pickle.loads(pickle.dumps(self.obj))]

    @rule(view=st.integers(0, 1), timeout=st.sampled_from([-1, 0, 0.001]))
    def acquire(self, view: int, timeout: float) -> None:
        if self.ref.locked() and timeout == -1:
            timeout = 0.001  # never block for ever on a held lock
        assert outcome(lambda: self.views[view].acquire(True, timeout)) == outcome(
            lambda: self.ref.acquire(True, timeout)
        )

    @rule(view=st.integers(0, 1))
    def try_acquire(self, view: int) -> None:
        assert self.views[view].acquire(False) == self.ref.acquire(False)

    @rule(view=st.integers(0, 1), other_thread=st.booleans())
    def release(self, view: int, other_thread: bool) -> None:
        run = in_thread if other_thread else outcome
        assert run(self.views[view].release) == run(self.ref.release)

    @invariant()
    def same_state(self) -> None:
        assert self.obj.locked() == self.ref.locked()


class RLockMachine(RuleBasedStateMachine):
    """RLock against threading.RLock, including releases from a thread that is not the owner."""

    def __init__(self) -> None:
        super().__init__()
        self.ref = threading.RLock()
        self.obj = RLock()
        self.copy = pickle.loads(pickle.dumps(self.obj))
        self.depth = 0

    @rule(use_copy=st.booleans())
    def acquire(self, use_copy: bool) -> None:
        lock = self.copy if use_copy else self.obj
        assert lock.acquire() is self.ref.acquire() is True
        self.depth += 1

    @rule()
    def release(self) -> None:
        got = outcome(self.obj.release)
        assert got == outcome(self.ref.release)
        self.depth = max(0, self.depth - 1)

    @rule()
    def other_thread_try_acquire(self) -> None:
        def attempt(lock: Any) -> Callable[[], Any]:
            def run() -> Any:
                ok = lock.acquire(False)
                if ok:
                    lock.release()
                return ok

            return run

        assert in_thread(attempt(self.obj)) == in_thread(attempt(self.ref))

    @rule()
    def other_thread_release(self) -> None:
        assert in_thread(self.obj.release) is in_thread(self.ref.release) is RuntimeError

    def teardown(self) -> None:
        for _ in range(self.depth):
            self.obj.release()


class SemaphoreMachine(RuleBasedStateMachine):
    """Semaphore and BoundedSemaphore against their threading counterparts."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[Any, Any]] = []

    @precondition(lambda self: not self.pairs)
    @rule(value=st.integers(0, 3), bounded=st.booleans())
    def create(self, value: int, bounded: bool) -> None:
        if bounded:
            self.pairs = [(BoundedSemaphore(value), threading.BoundedSemaphore(value))]
        else:
            self.pairs = [(Semaphore(value), threading.Semaphore(value))]

    @precondition(lambda self: bool(self.pairs))
    @rule(blocking=st.booleans(), timeout=st.sampled_from([None, 0, 0.001, -1]))
    def acquire(self, blocking: bool, timeout: float | None) -> None:
        obj, ref = self.pairs[0]
        if blocking and timeout is None and ref._value == 0:
            timeout = 0.001
        assert outcome(lambda: obj.acquire(blocking, timeout)) == outcome(
            lambda: ref.acquire(blocking, timeout)
        )

    @precondition(lambda self: bool(self.pairs))
    @rule(n=st.integers(0, 3))
    def release(self, n: int) -> None:
        obj, ref = self.pairs[0]
        assert outcome(lambda: obj.release(n)) == outcome(lambda: ref.release(n))

    @invariant()
    def same_value(self) -> None:
        for obj, ref in self.pairs:
            assert obj._value() == ref._value


class EventMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.obj = Event()
        self.ref = threading.Event()

    @rule()
    def set(self) -> None:
        self.obj.set()
        self.ref.set()

    @rule()
    def clear(self) -> None:
        self.obj.clear()
        self.ref.clear()

    @rule(timeout=st.sampled_from([0, 0.001, -1]))
    def wait(self, timeout: float) -> None:
        assert self.obj.wait(timeout) == self.ref.wait(timeout)

    @invariant()
    def same_flag(self) -> None:
        assert self.obj.is_set() == self.ref.is_set()


class ValueMachine(RuleBasedStateMachine):
    """Value against a plain variable; oversized values are refused without changing it."""

    def __init__(self) -> None:
        super().__init__()
        self.obj: Value[Any] = Value(0, max_bytes=64)
        self.model: Any = 0

    @rule(v=st.one_of(st.integers(), st.text(max_size=80), st.lists(st.integers(), max_size=20)))
    def set(self, v: Any) -> None:
        fits = len(pickle.dumps(v, pickle.HIGHEST_PROTOCOL)) <= 64
        if fits:
            self.obj.set(v)
            self.model = v
        else:
            with pytest.raises(ValueError, match="max_bytes"):
                self.obj.set(v)

    @precondition(lambda self: isinstance(self.model, int))
    @rule(n=st.integers(-1000, 1000))
    def add(self, n: int) -> None:
        self.model += n
        assert self.obj.add(n) == self.model

    @rule()
    def update_that_fails(self) -> None:
        def boom(v: Any) -> Any:
            raise KeyError(v)

        with pytest.raises(KeyError):
            self.obj.update(boom)

    @invariant()
    def same_value(self) -> None:
        assert self.obj.get() == self.model


for machine in (LockMachine, RLockMachine, SemaphoreMachine, EventMachine, ValueMachine):
    name = "Test" + machine.__name__
    globals()[name] = machine.TestCase
    globals()[name].settings = FAST


LOCK_ARGS = [(True, -1), (False, -1), (True, 0), (True, 0.01), (False, 0.5), (True, -2),
             (True, 1e20), (True, "x"), (False, 0)]  # fmt: skip


@pytest.mark.parametrize("cls, ref", [(Lock, threading.Lock), (RLock, threading.RLock)])
@pytest.mark.parametrize("args", LOCK_ARGS)
def test_acquire_argument_validation_matches_threading(cls: Any, ref: Any, args: Any) -> None:
    got, want = outcome(lambda: cls().acquire(*args)), outcome(lambda: ref().acquire(*args))
    assert got == want


@pytest.mark.parametrize("args", [(False, 1), (True, -1), (True, 0), (False, None)])
def test_semaphore_argument_validation_matches_threading(args: Any) -> None:
    assert outcome(lambda: Semaphore(0).acquire(*args)) == outcome(
        lambda: threading.Semaphore(0).acquire(*args)
    )
    assert outcome(lambda: Semaphore(-1)) == outcome(lambda: threading.Semaphore(-1))


@pytest.mark.parametrize("cls", [Lock, RLock, Semaphore, BoundedSemaphore])
def test_context_manager_returns_true_and_releases(cls: Any) -> None:
    obj = cls()
    with obj as entered:
        assert entered is True
    assert obj.acquire(False)


@pytest.mark.parametrize("how", ["argument", "container", "closure"])
def test_pickled_objects_share_state(how: str) -> None:
    lock, value, event = Lock(), Value({"n": 1}), Event()
    if how == "argument":
        lock2, value2, event2 = (pickle.loads(pickle.dumps(o)) for o in (lock, value, event))
    elif how == "container":
        nested = pickle.loads(pickle.dumps([{"lock": lock}, (value, [event])]))
        lock2, (value2, [event2]) = nested[0]["lock"], nested[1]
    else:
        grab = cloudpickle.loads(cloudpickle.dumps(lambda: (lock, value, event)))
        lock2, value2, event2 = grab()
    with lock:
        assert not lock2.acquire(False)
    value2.set({"n": 2})
    assert value.get() == {"n": 2}
    event2.set()
    assert event.wait(0)


def test_threads_contend_on_one_lock_exactly() -> None:
    lock, counter, value = Lock(), [0], Value(0)
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(500):
            with lock:
                n = counter[0]
                counter[0] = n + 1
            value.add(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter[0] == value.get() == 2000


def test_event_wakes_thread_waiters_and_pulse_is_seen() -> None:
    event = Event()
    results: list[bool] = []
    ready = threading.Barrier(3)

    def waiter() -> None:
        ready.wait()
        results.append(event.wait(30))

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    ready.wait()
    deadline = time.monotonic() + 30
    while event._w[_WAITERS] < 2 and time.monotonic() < deadline:  # both registered
        threading.Event().wait(0.001)
    event.set()
    event.clear()  # a pulse: waiters registered before set() still return True
    for t in threads:
        t.join()
    assert results == [True, True]


def test_value_update_returns_new_value_and_is_atomic_with_get_lock() -> None:
    value: Value[list[int]] = Value([1])
    assert value.update(lambda v: [*v, 2]) == [1, 2]
    with value.get_lock():
        value.set([*value.get(), 3])
    assert value.get() == [1, 2, 3]
    with pytest.raises(ValueError, match="max_bytes"):
        Value(b"x" * 100, max_bytes=50)


def test_value_contents_that_cannot_be_pickled_are_a_typed_error_naming_them() -> None:
    from smartpool import SerializationError

    with pytest.raises(SerializationError, match=r"Value cannot hold this dict.*_thread\.lock"):
        Value({"lock": threading.Lock()})
    value: Value[object] = Value(1)
    with pytest.raises(TypeError, match="cannot be pickled"):  # SerializationError is a TypeError
        value.set(threading.Lock())
    assert value.get() == 1


def test_value_add_checks_the_size_and_its_kept_copy_follows_other_writers() -> None:
    """``add``'s short path for numbers still refuses a sum too large for the Value (leaving it
    unchanged), and the copy a process keeps of the last value is dropped as soon as anyone
    else writes (here: another handle on the same block, as another process would be)."""
    value = Value(0, max_bytes=64)
    assert value.add(2) == 2
    with pytest.raises(ValueError, match="at most 64 bytes"):
        value.add(10**200)
    assert value.get() == 2
    other = pickle.loads(pickle.dumps(value))
    other._cache = (-1, None)  # a handle of its own, as in another process
    other.set(40)
    assert value.get() == 40 and value.add(2) == 42 and other.get() == 42
