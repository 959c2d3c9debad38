"""The probe's sender (``_routing.beside.Sender``) on its own, with a stand-in for the worker
processes: when it starts sending items beside the caller's, and when it starts again."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from smartpool._routing.beside import SEND_BESIDE_CPU, Sender
from smartpool._routing.clock import ThreadClock
from smartpool._routing.numbered import Numbered
from smartpool._work.feed import Feed
from smartpool._work.task import ChunkResult

DEADLINE = 30.0


class _NoWorkerYet:
    """Worker processes that are not running when sending first begins (``ready`` says so, once
    ``decide`` allows it), and can be started from the caller (``get_ready``)."""

    slots = 1

    def __init__(self) -> None:
        self.deciding, self.decide = threading.Event(), threading.Event()
        self.readies = self.got_ready = 0
        self.sent: list[int] = []
        self.all_sent = threading.Event()  # the three items of the test

    def get_ready(self) -> bool:
        self.got_ready += 1
        return True

    def ready(self) -> bool:
        self.readies += 1
        if self.readies > 1:
            return True
        self.deciding.set()
        assert self.decide.wait(DEADLINE)
        return False

    def send(self, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        self.sent.append(start)
        if len(self.sent) == 3:
            self.all_sent.set()
        future: Future[ChunkResult] = Future()
        future.set_result(ChunkResult(start, list(items), None, 1.0, "stand-in", 1.0))
        return future


def _ready_items(count: int) -> Callable[[int], list[int] | None]:
    """``take_now`` over ``count`` items, all ready at once."""
    left = list(range(count))

    def take_now(n: int) -> list[int]:
        taken, left[:] = left[:n], left[n:]
        return taken

    return take_now


def _once_waiting(thread: threading.Thread, then: threading.Event) -> None:
    """Set ``then`` once ``thread`` waits on a ``threading`` primitive (or after 5 s, if it
    never does). Looking, not timing: the outcome does not depend on how long anything takes."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident or 0)
        if frame is not None and frame.f_code.co_filename == threading.__file__:
            break
        threading.Event().wait(0.001)
    then.set()


def test_starting_now_while_an_earlier_start_is_still_finding_no_worker_sends_items() -> None:
    """Sending began while the first item ran (the deadline watcher saw it long), and that
    thread is still finding out that no worker runs when the caller, its first item done, asks
    to start workers now: it waits for the answer, then starts sending again. (It once returned
    at once, seeing a sender at work, and nothing was sent for the rest of the probe.)"""
    elsewhere = _NoWorkerYet()
    sender = Sender(elsewhere, Numbered(Feed(range(3)), _ready_items(3)))
    sender.prepare(lambda: False, 0.01, ThreadClock(), 0.0)
    with sender._lock:  # as the deadline watcher does once the first item is long
        sender._begin()
    assert elsewhere.deciding.wait(DEADLINE)
    # The sending thread answers only once the caller waits for it.
    answering = threading.Thread(
        target=_once_waiting, args=(threading.current_thread(), elsewhere.decide)
    )
    answering.start()
    try:
        sender.start_now()
    finally:
        answering.join(DEADLINE)
    try:
        assert elsewhere.all_sent.wait(DEADLINE), "nothing sent after starting again"
    finally:
        sent = sender.stop()
    assert (elsewhere.got_ready, elsewhere.readies) == (1, 2)
    assert [s.start for s in sent] == elsewhere.sent == [0, 1, 2]


def test_looking_ahead_never_waits_for_items_the_input_has_not_given() -> None:
    """The probe pickles a few items ahead to see whether they share a buffer. An input fed by
    results (joblib's ``Parallel`` dispatches a batch when one completes) gives nothing more
    while the probe holds its results back: looking ahead takes only what is ready, at once,
    and leaves it in place. (It once waited for the input: 10 ms on every joblib call.)"""
    gate = threading.Event()

    def items() -> Any:
        yield from (1, 2)
        gate.wait(DEADLINE)  # the third comes only once a result would have gone out
        yield 3

    feed = Feed(items())
    feed.read_ahead(lambda: None)
    numbered = Numbered(feed, feed.take_ready)
    assert list(numbered.take(2)) == [1, 2]
    numbered.give_back([2])
    ahead = numbered.look_ahead(3)
    gate.set()
    assert ahead == [2]  # what the caller gave back, and nothing the input had not given
    assert list(numbered.take(3)) == [2, 3]
    assert numbered.close() == 3


class _Warm:
    """Worker processes already running: ``ready`` at once; every item sent is recorded."""

    slots = 1

    def __init__(self) -> None:
        self.ready_called = threading.Event()
        self.got_ready = 0
        self.sent: list[int] = []
        self.first_sent = threading.Event()

    def get_ready(self) -> bool:
        self.got_ready += 1
        return True

    def ready(self) -> bool:
        self.ready_called.set()
        return True

    def send(self, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        self.sent.append(start)
        self.first_sent.set()
        future: Future[ChunkResult] = Future()
        future.set_result(ChunkResult(start, list(items), None, 1.0, "stand-in", 1.0))
        return future


def test_armed_it_gets_ready_at_once_and_sends_once_the_item_is_long() -> None:
    """Once the first item is known to hold the GIL (``arm``, from the deadline watcher), the
    sending thread leases and pickles while the item runs, and sends as soon as the item has
    computed ``long`` seconds: one GIL hand-over then, not two or three."""
    elsewhere = _Warm()
    sender = Sender(elsewhere, Numbered(Feed(range(3)), _ready_items(3)))
    long = 0.05
    sender.prepare(lambda: False, long, ThreadClock(), 0.0)
    began = time.thread_time()
    sender.arm()
    try:
        assert elsewhere.ready_called.wait(DEADLINE)
        # The caller's "item": it computes (holding the GIL, as pure Python does) until an item
        # has been sent beside it, for at most the deadline.
        deadline = time.monotonic() + DEADLINE
        while not elsewhere.first_sent.is_set() and time.monotonic() < deadline:
            pass
        computed = time.thread_time() - began
    finally:
        sent = sender.stop()
    assert elsewhere.sent, "nothing sent beside a long item"
    # Not before the item was long: ``long`` seconds less its time queued for a core, half of
    # them computing at least (beside two busy programs, the item computes half the time).
    assert computed >= SEND_BESIDE_CPU * long
    assert elsewhere.got_ready == 0
    assert [s.start for s in sent] == elsewhere.sent


def test_an_item_that_ends_before_it_is_long_sends_nothing_until_started_again() -> None:
    """Armed, the sending thread waits for the item to be long; the item ends first (``disarm``):
    nothing is sent, and the thread ends. Asked to start now (the caller found the item long
    after all, counting differently), sending starts again rather than finding a sender at work
    and doing nothing for the rest of the probe."""
    elsewhere = _Warm()
    sender = Sender(elsewhere, Numbered(Feed(range(3)), _ready_items(3)))
    sender.prepare(lambda: False, 3600.0, ThreadClock(), 0.0)  # never long while armed
    sender.arm()
    try:
        assert elsewhere.ready_called.wait(DEADLINE)
        sender.disarm()
        assert not elsewhere.sent
        sender.start_now()
        assert elsewhere.first_sent.wait(DEADLINE), "nothing sent after starting again"
    finally:
        sent = sender.stop()
    assert elsewhere.got_ready == 1
    assert [s.start for s in sent] == elsewhere.sent and elsewhere.sent[0] == 0


class _Handled:
    """Worker processes whose results come back on a thread of their own, as a process pool's
    result handler settles them; ``send`` records the thread each item was sent from."""

    slots = 1

    def __init__(self) -> None:
        self.ready_called = threading.Event()
        self.senders: list[int] = []
        self.futures: list[Future[ChunkResult]] = []
        self.two_sent = threading.Event()

    def get_ready(self) -> bool:
        return True

    def ready(self) -> bool:
        self.ready_called.set()
        return True

    def send(self, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        self.senders.append(threading.get_ident())
        future: Future[ChunkResult] = Future()
        self.futures.append(future)
        if len(self.futures) == 2:
            self.two_sent.set()
        return future


def _sending_now(elsewhere: Any, count: int) -> tuple[Sender, Numbered]:
    """A sender over ``count`` items, all ready, sending at once (as ``start_now`` has it)."""
    feed = Feed(list(range(count)))
    numbered = Numbered(feed, feed.take_ready)
    sender = Sender(elsewhere, numbered)
    sender.prepare(lambda: False, 0.0, ThreadClock(), 0.0)
    with sender._lock:
        sender._begin()
    return sender, numbered


def _first_send(elsewhere: _Handled) -> Future[ChunkResult]:
    """The Future of the first item sent, once it is (polling for it, not timing it)."""
    deadline = time.monotonic() + DEADLINE
    while not elsewhere.futures and time.monotonic() < deadline:
        threading.Event().wait(0.001)
    assert elsewhere.futures, "nothing sent"
    return elsewhere.futures[0]


def test_the_next_item_is_sent_from_where_the_last_came_back() -> None:
    """When an item sent comes back, the next goes out from the thread that settled it (a
    process pool's result handler, holding the GIL): the sending thread would first have to
    get the GIL from the caller's pure Python while the worker process idled."""
    elsewhere = _Handled()
    sender, _ = _sending_now(elsewhere, 3)
    handler_ident: list[int] = []
    try:
        first = _first_send(elsewhere)

        def settle_first() -> None:  # the result handler
            handler_ident.append(threading.get_ident())
            first.set_result(ChunkResult(0, [0], None, 1.0, "stand-in", 1.0))

        handler = threading.Thread(target=settle_first)
        handler.start()
        handler.join(DEADLINE)
        assert elsewhere.two_sent.wait(DEADLINE)
    finally:
        for future in elsewhere.futures[1:]:
            future.set_result(ChunkResult(1, [1], None, 1.0, "stand-in", 1.0))
        sent = sender.stop()
    assert elsewhere.senders[1] == handler_ident[0]
    assert [s.start for s in sent][:2] == [0, 1]


class _FailsAt(_Handled):
    """``_Handled``, but sending the item at input index ``bad`` raises (it does not pickle)."""

    def __init__(self, bad: int, once: bool = False) -> None:
        super().__init__()
        self.bad, self.once = bad, once
        self.failed = threading.Event()

    def send(self, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        if start == self.bad and not (self.once and self.failed.is_set()):
            self.failed.set()
            raise TypeError("cannot pickle")
        return super().send(items, start)


def _settle(future: Future[ChunkResult], start: int) -> None:
    """Settle ``future`` from a thread of its own, as a process pool's result handler does."""
    handler = threading.Thread(
        target=future.set_result, args=(ChunkResult(start, [start], None, 1.0, "stand-in", 1.0),)
    )
    handler.start()
    handler.join(DEADLINE)


def test_an_item_that_cannot_be_sent_from_the_result_handler_ends_the_sending() -> None:
    """The next item, sent from where the last came back, does not pickle: nothing more is sent
    from anywhere, and the item goes back to the input, to run in the caller or the plan."""
    elsewhere = _FailsAt(bad=1)
    sender, numbered = _sending_now(elsewhere, 4)
    try:
        _settle(_first_send(elsewhere), 0)
        assert elsewhere.failed.wait(DEADLINE)
    finally:
        sent = sender.stop()
    assert [s.start for s in sent] == [0]
    assert list(numbered.take(3)) == [1, 2, 3]  # the unsent item first, in its place


def test_an_item_that_cannot_be_sent_from_the_sending_thread_ends_the_sending() -> None:
    """The same failure on the sending thread: the result handler sends nothing after it, even
    what would go now (a failure that would not happen twice)."""
    elsewhere = _FailsAt(bad=0, once=True)
    sender, numbered = _sending_now(elsewhere, 3)
    try:
        assert elsewhere.failed.wait(DEADLINE)
        sender._finished(_done_future())  # as if an earlier item came back now
    finally:
        sent = sender.stop()
    assert sent == [] and elsewhere.futures == []
    assert list(numbered.take(3)) == [0, 1, 2]


def _done_future() -> Future[ChunkResult]:
    future: Future[ChunkResult] = Future()
    future.set_result(ChunkResult(9, [9], None, 1.0, "stand-in", 1.0))
    return future


def _compute(seconds: float) -> None:
    """Pure Python (holding the GIL but for the interpreter's switches) for ``seconds`` of this
    thread's CPU time."""
    began = time.thread_time()
    while time.thread_time() - began < seconds:
        pass


class _SlowToGetReady(_Warm):
    """Worker processes whose ``ready`` computes in Python (leasing, pickling, starting workers
    on a first call) for ``seconds`` of CPU time before it says no worker can take items;
    ``getting_ready`` is set while it does, ``let_go`` ends it once it has."""

    def __init__(self, seconds: float, hold: bool = False) -> None:
        super().__init__()
        self.seconds, self.hold = seconds, hold
        self.getting_ready, self.computed, self.let_go = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

    def ready(self) -> bool:
        self.getting_ready.set()
        _compute(self.seconds)
        self.computed.set()
        if self.hold:
            assert self.let_go.wait(DEADLINE)
        return False


def test_the_cpu_time_spent_sending_is_counted_while_the_sending_thread_runs() -> None:
    """``cpu_spent`` reads the sending thread's CPU clock from another thread while it is still
    at work, and keeps what it took once its job has ended."""
    elsewhere = _SlowToGetReady(0.03, hold=True)
    sender = Sender(elsewhere, Numbered(Feed(range(3)), _ready_items(3)))
    assert sender.cpu_spent == 0.0
    sender.start_now()
    try:
        assert elsewhere.computed.wait(DEADLINE)
        assert sender.cpu_spent >= 0.03  # read while its job still runs
    finally:
        elsewhere.let_go.set()
        sender.stop()
    assert sender.cpu_spent >= 0.03


def _spin_for(seconds: float) -> float:
    _compute(seconds)
    return seconds


def test_python_the_sender_runs_does_not_read_as_the_calls_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the caller times its items (pure Python, ~15 ms each), the sender gets ready on
    another thread, computing 40 ms in Python: the caller's items wait for the GIL meanwhile.
    That is the probe's own doing, not the function's: it still reads as computing all along
    (before, ~0.5 of its time; a first call's 93 % planned three workers on two cores)."""
    from smartpool._routing import gil
    from smartpool._routing import probe as _probe

    # No thread beside the first item (on a loaded machine the sampler can take it for one that
    # frees the GIL, and the sender then stays out of the way: see test_probe_beside.py). The
    # items are ready at once: if the sampler cannot tell during the first item that it holds
    # the GIL (a busy machine), the sender still starts after it (``start_now``).
    monkeypatch.setattr(gil, "HELPER_AFTER", sys.maxsize)
    elsewhere = _SlowToGetReady(0.04)
    items = [0.015] * 6
    feed = Feed(items)
    ran = _probe.probe_items(
        _spin_for,
        feed,
        gil_matters=lambda _: False,
        elsewhere=elsewhere,
        take_now=feed.take_ready,
    )
    assert elsewhere.getting_ready.is_set(), "the sender never started: nothing under test"
    assert elsewhere.computed.is_set()
    assert ran.measurement.cpu_fraction >= 0.9, ran.measurement
