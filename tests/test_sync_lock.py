"""Lock and RLock behave like their threading counterparts, in one process."""

from __future__ import annotations

import pickle
import threading

import pytest

from smartpool._sync import Lock, RLock


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
