"""The deadline watcher: one thread that runs short actions at deadlines (a chunk's time budget,
the probe's GIL sample). Each wake-up of it takes the GIL from the caller's items, so it wakes
only when a deadline is due or an earlier one is armed. Each test uses a watcher of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from smartpool._work import deadline as _deadline

GENEROUS = 10.0  # seconds: only a broken watcher takes this long


@pytest.fixture
def watcher() -> Iterator[_deadline._Watcher]:
    watcher = _deadline._Watcher()  # (its daemon thread stays, waiting: tests are few)
    watcher.start()
    yield watcher


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GENEROUS
    while not condition():
        assert time.monotonic() < deadline, f"the watcher never {what}"
        time.sleep(0.001)


def test_an_armed_action_runs_and_a_disarmed_one_never(watcher: _deadline._Watcher) -> None:
    ran: list[str] = []
    done = threading.Event()
    now = time.perf_counter()
    early = watcher.call_at(now + 0.01, ran.append, "disarmed")
    watcher.call_at(now + 0.03, lambda _: (ran.append("armed"), done.set()), None)
    watcher.disarm(early)
    assert done.wait(GENEROUS)
    assert ran == ["armed"]


def test_a_deadline_armed_again_after_a_disarmed_one_wakes_nobody(
    watcher: _deadline._Watcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe arms the same deadline for each batch it times, and disarms it after the batch:
    the watcher, woken once for an earlier deadline, keeps waiting for that one rather than
    going idle, so that re-arming it does not wake the watcher (and take the GIL) every batch."""
    now = time.perf_counter()
    first = watcher.call_at(now + 0.02, lambda _: None, None)
    later = now + 30.0
    batch = watcher.call_at(later, lambda _: None, None)
    watcher.disarm(batch)
    watcher.disarm(first)
    wait_until(lambda: watcher._wake_at >= later, "waited for the later deadline")

    notified: list[int] = []
    notify = watcher._cond.notify
    monkeypatch.setattr(watcher._cond, "notify", lambda n=1: (notified.append(n), notify(n)))
    for _ in range(10):
        watcher.disarm(watcher.call_at(later, lambda _: None, None))
    assert notified == []


def test_disarmed_deadlines_do_not_pile_up(watcher: _deadline._Watcher) -> None:
    far = time.perf_counter() + 3600.0
    kept = watcher.call_at(far, lambda _: None, None)
    for _ in range(20 * _deadline.COMPACT_AT):
        watcher.disarm(watcher.call_at(far, lambda _: None, None))
    assert len(watcher._heap) <= _deadline.COMPACT_AT + 3
    assert kept in {token for _, token in watcher._heap}
    done = threading.Event()
    watcher.call_at(time.perf_counter(), lambda _: done.set(), None)  # still acts
    assert done.wait(GENEROUS)


def test_a_deadline_armed_before_the_one_waited_for_wakes_the_watcher(
    watcher: _deadline._Watcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing armed, the watcher waits for the latest deadline it dropped; one armed a
    little before that (within the slack allowed for armed ones) must still wake it: the probe's
    GIL sample reads how late the watcher came as how long the item held the GIL."""
    later = time.perf_counter() + 30.0
    watcher.disarm(watcher.call_at(later, lambda _: None, None))
    # (Arming it set ``_wake_at`` to it; the watcher, woken, then waits for it as dropped.)
    wait_until(lambda: watcher._wake_at > later, "waited for the dropped deadline")

    notified: list[int] = []
    notify = watcher._cond.notify
    monkeypatch.setattr(watcher._cond, "notify", lambda n=1: (notified.append(n), notify(n)))
    watcher.disarm(watcher.call_at(later - _deadline.SLACK / 2, lambda _: None, None))
    assert notified == [1]
