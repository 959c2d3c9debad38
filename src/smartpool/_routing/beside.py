"""Items sent elsewhere while the probe times others in the caller, so that no core idles.

The probe runs a job's first items serially in the caller, and a long first item is followed by
a second one there (a first call may carry a one-time cost: see ``first_item``). On a machine
with more cores, those idle meanwhile. So once the first item has computed for
``first_item.LONG_ITEM_SECONDS`` with no thread beside it (it holds the GIL: see
``gil.DuringItem``), further items go to worker processes that the run lends
(:class:`Elsewhere`), one at a time, while the caller goes on timing its own. The caller's items
alone make the measurement, as before; the items sent elsewhere keep their results (no item runs
twice), and the run joins both in input order. Sending stops when the timing does, or as soon as
the caller's items turn out short (the plan may then be serial: dispatch would not pay).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import Any, Protocol

from .._errors import ResourceLimitError
from .._work.schedstat import own_stats
from .._work.spare_threads import Job, spare
from .._work.task import ChunkResult
from .clock import ThreadClock, queued_seconds
from .numbered import Numbered, Sent

logger = logging.getLogger("smartpool")

#: The first item must compute for this share of its time (less time queued for a core) for
#: items to be sent beside it: beside one that waits, the plan runs items on threads anyway.
SEND_BESIDE_CPU = 0.5
#: How often the sender looks again while the input has no item ready (it may be fed by the
#: results the probe holds back).
POLL_SECONDS = 0.005


class Elsewhere(Protocol):
    """Where a run lets its probe send items: worker processes it leases and holds until it ends.
    (The run provides it; routing imports no backend.)"""

    #: How many items may run there at once (the usable cores beside the caller's), once ready.
    slots: int

    def get_ready(self) -> bool:
        """In the caller, between its first and second items, while its other threads wait:
        prepare what lets ``ready`` start workers if none runs yet; False if it cannot."""
        ...

    def ready(self) -> bool:
        """Get ready to take items (lease the workers, pickle the function), on the sending
        thread; False when it cannot (the function does not pickle, no worker is warm)."""
        ...

    def send(self, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        """Run ``items``, the first of which has input index ``start``; raise (having run
        nothing) if they cannot be sent."""
        ...


class Sender:
    """Keeps ``elsewhere.slots`` items running elsewhere, from when the first item is known long
    (``arm``) until ``stop``; ``sent`` lists them."""

    def __init__(self, elsewhere: Elsewhere, items: Numbered) -> None:
        self._elsewhere, self._items = elsewhere, items
        self._lock = threading.Lock()
        self._wake: threading.Event | None = None  # made when sending begins
        self._stopped = self._item_ended = False
        self._running = 0
        self._job: Job | None = None
        self._unready = False  # the job ended at once: nowhere was ready to take items
        self._decided = threading.Event()  # set once the job knows whether to send
        self._until_long = False  # the job waits until the first item is long, then sends
        self._sends = False  # the job began sending
        #: Sends in progress from the threads that see items come back (see ``_send_here``).
        self._sending_here = 0
        self._here_done = threading.Condition(self._lock)
        self._here = threading.local()  # ``active`` on a thread sending from there now
        # Time spent sending: the sending thread's CPU clock and stats file (time queued for a
        # core) while its job runs, their bases, and what its ended jobs and the sends from
        # elsewhere took (see ``cpu_spent``).
        self._clock: int | None = None
        self._stats: int | None = None
        self._clock_base = self._queued_base = self._cpu_done = 0.0
        self.sent: list[Sent] = []

    @property
    def running(self) -> int:
        """Items sent and not back yet (each keeps a worker process computing, or about to)."""
        return self._running

    @property
    def cpu_spent(self) -> float:
        """Time this process spent on sending so far (getting ready, pickling and sending items),
        on whichever thread: computing, or queued for a core on the sending thread (it may hold
        the GIL meanwhile: beside two busy programs, that doubled what the caller waited for it).
        The GIL the caller's items may have waited for (see ``probe``). Read from the caller
        while the sending thread runs."""
        with self._lock:
            spent, clock = self._cpu_done, self._clock
            if clock is not None:
                try:
                    spent += time.clock_gettime(clock) - self._clock_base
                except OSError:  # pragma: no cover - the thread is gone: see ``_send``
                    pass
                spent += queued_seconds(self._stats) - self._queued_base
        return spent

    def prepare(
        self, helped: Callable[[], bool], long_seconds: float, clock: ThreadClock, queued: float
    ) -> None:
        """Called by the caller as its first item starts (``clock`` reading ``queued`` seconds
        queued for a core so far): once ``arm`` is called, begin sending when the item has
        computed for ``long_seconds`` (time queued does not count), unless a thread ``helped``
        beside it (the GIL is free: see ``gil.DuringItem``). Cheap: most first items are short."""
        self._helped, self._long = helped, long_seconds
        self._stats, self._queued = clock.stats_fd, queued
        self._thread, self._cpu = threading.get_ident(), time.thread_time()
        self._began = time.perf_counter()

    def arm(self) -> None:
        """On the deadline watcher's thread, once the first item has run a while holding the GIL
        (see ``gil.DuringItem``): start the sending thread now. It gets ready (leases the
        workers, pickles the function) while the item runs on, and sends once the item is long.
        (Looking again only once it was long, from the watcher, then getting ready on another
        thread, took two or three GIL hand-overs against the caller's pure Python, up to a
        switch interval each: items went out ~20 ms into the first item, not ~10.)"""
        with self._lock:
            if not self._item_ended and not self._stopped and self._job is None:
                self._begin(until_long=True)

    def disarm(self) -> None:
        """The first item ended: if sending has not begun, it never does."""
        with self._lock:
            self._item_ended = True
            wake = self._wake
        if wake is not None:
            wake.set()  # a sending thread waiting for the item to be long stops waiting

    def _due(self) -> float | None:
        """Under the lock: None if the first item is long and computes alone (send now), else
        when to look again (``math.inf``: never)."""
        if self._item_ended or self._stopped:
            return math.inf
        if self._helped():
            logger.debug("probe: a long first item, none sent beside it (a thread is)")
            return math.inf
        try:  # (the caller's clocks, read from here)
            cpu = time.clock_gettime(time.pthread_getcpuclockid(self._thread)) - self._cpu
        except (AttributeError, OSError):  # pragma: no cover - not on this platform
            return math.inf
        queued = queued_seconds(self._stats) - self._queued
        now = time.perf_counter()
        active = now - self._began - queued
        if active < self._long:  # (not long yet, or it was queued for a core meanwhile)
            return now + self._long - active
        if cpu < SEND_BESIDE_CPU * active:
            # It waits, or it is queued for a core right now (that wait is counted only once
            # it runs again): look again, as late again.
            return 2 * now - self._began
        return None

    def _until_item_long(self, wake: threading.Event) -> bool:
        """On the sending thread: wait until the first item is long (True), or ended or the
        sending stopped first (False)."""
        while True:
            with self._lock:
                due = self._due()
                if due is None:
                    self._sends = True  # (before the caller can look: see ``start_now``)
                    return True
            if due == math.inf:
                return False
            wake.wait(max(0.0, due - time.perf_counter()))

    def start_now(self) -> None:
        """From the caller, between its first and second items, after a long first item that
        computed alone while no worker was running to take items beside it: get workers ready
        (see ``Elsewhere.get_ready``) and begin sending while the caller times its second."""
        with self._lock:
            if self._stopped:
                return
            job, decided = self._job, self._decided
        if job is not None:
            # Sending began while the item ran: wait until that thread knows whether a worker
            # was there to take items (it ends at once if none was), and start it again if it
            # sends nothing: none was, or the item ended before that thread saw it long.
            decided.wait()
            with self._lock:
                if self._sends or not (self._unready or self._until_long):
                    return  # it sends (or it gave up for good)
            job.join()  # (the item has ended: a thread waiting for it to be long stops)
            with self._lock:
                if self._sends:
                    return
                self._job = None
        if not self._elsewhere.get_ready():
            return
        with self._lock:
            if self._stopped:
                return
            self._unready = False
            self._begin()

    def _begin(self, until_long: bool = False) -> None:
        """Under the lock: start sending, on a kept thread (``until_long``: once the first item
        is long, see ``arm``)."""
        self._wake, self._decided = threading.Event(), threading.Event()
        self._until_long = until_long
        try:
            self._job = spare.start(self._send)
        except ResourceLimitError:  # no thread to spare: the items run in turn, as usual
            pass

    def _send(self) -> None:
        """On a kept thread: send items as slots free up, until stopped. (Sending only saves
        time: if it fails, the items run as they would have without it.)"""
        wake, decided = self._wake, self._decided
        assert wake is not None
        stats = own_stats()
        base, queued = time.thread_time(), queued_seconds(stats)
        with self._lock:
            self._clock, self._clock_base = _own_clock(), base
            self._stats, self._queued_base = stats, queued
        try:
            self._send_items(wake, decided)
        finally:
            with self._lock:
                self._clock = None
                self._cpu_done += time.thread_time() - base + queued_seconds(stats) - queued

    def _send_items(self, wake: threading.Event, decided: threading.Event) -> None:
        try:
            if not self._elsewhere.ready():
                with self._lock:
                    self._unready = True
                return
        except Exception as exc:  # no process to spare, say
            logger.debug("no items sent beside the probe: %r", exc)
            return
        finally:
            decided.set()
        if self._until_long and not self._until_item_long(wake):
            return
        with self._lock:
            self._sends = True
        while True:
            wake.clear()  # before looking: a wake-up from now on is not missed
            done = self._send_free()
            if done is None:
                return
            free, sent = done
            if sent:
                continue
            # Nothing to do until a slot frees up, an item comes (polled), or the stop.
            wake.wait(POLL_SECONDS if free > 0 and sent is None else None)

    def _send_free(self, here: bool = False) -> tuple[int, list[Sent] | None] | None:
        """Send an item into each free slot: (how many slots were free, what was sent, None if
        no item was ready now); None once sending has stopped, or stops here because an item
        could not be sent. ``here``: from where a result came back (see ``_send_here``): only
        into a free slot, once the sending thread began, and ``stop`` waits for it."""
        with self._lock:
            free = self._elsewhere.slots - self._running
            if self._stopped or (here and (not self._sends or free <= 0)):
                return None
            free = max(free, 0)
            self._running += free  # (given back below for what is not sent)
            if here:
                self._sending_here += 1
        sent: list[Sent] | None = None
        cpu = time.thread_time() if here else 0.0
        try:
            sent = self._items.send_next(free, self._elsewhere.send) if free > 0 else []
        except Exception as exc:  # an item that does not pickle, say: it runs later
            logger.debug("items no longer sent beside the probe: %s: %s", type(exc).__name__, exc)
            with self._lock:
                self._stopped = True  # (from the sending thread and from where results come back)
            return None
        finally:
            with self._lock:
                self._running -= free - len(sent or ())
                self.sent.extend(sent or ())
                if here:
                    self._cpu_done += time.thread_time() - cpu
                    self._sending_here -= 1
                    self._here_done.notify_all()
        for item in sent or ():
            item.future.add_done_callback(self._finished)
        return free, sent

    def _finished(self, future: Future[ChunkResult]) -> None:
        result = None if future.cancelled() or future.exception() else future.result()
        with self._lock:
            self._running -= 1
            # After a failure the run raises there: nothing more is worth sending. After a short
            # item, the first one's time was mostly a one-time cost: sending would cost more
            # than it saves (and crowd the caller's cores while it times the calls after it).
            if result is None or result.error is not None or result.cpu_seconds < self._long:
                self._stopped = True
        assert self._wake is not None
        try:
            self._send_here()  # (first: the sending thread, once woken, finds no slot free)
        finally:
            self._wake.set()

    def _send_here(self) -> None:
        """Send the next item from the thread that saw one come back (a worker process's result
        handler, which holds the GIL now): the sending thread would first have to get the GIL
        from the caller's pure Python, up to a switch interval, while the worker process idles
        (5 to 20 ms between two items sent, traced; 5 to 10 sent from here). The sending thread
        still sends whatever this does not (from an input with nothing ready yet, say)."""
        if getattr(self._here, "active", False):  # (an item sent from here came back at once)
            return
        self._here.active = True
        try:
            self._send_free(here=True)
        finally:
            self._here.active = False

    def stop(self, settle: float = 0.0) -> list[Sent]:
        """Send nothing more (wait for a sending in progress); what was sent. With ``settle``,
        also wait up to that long for the items running elsewhere to come back: the caller
        then times its next items without this process's threads handling their results."""
        with self._lock:
            self._stopped = True
            job = self._job
            while self._sending_here:  # (from where a result came back: see ``_send_here``)
                self._here_done.wait()
        if self._wake is not None:
            self._wake.set()
        if job is not None:
            job.join()
            if settle > 0.0:
                wait([sent.future for sent in self.sent], timeout=settle)
        return self.sent


def _own_clock() -> int | None:
    """This thread's CPU clock, which other threads can read; None where there is none."""
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):  # pragma: no cover - not on this platform
        return None
