"""Stopping a ``map`` over a list at a deadline, at no cost per item.

Checking the clock between items costs as much as a tiny item itself. Instead, one daemon thread
watches deadlines and, when one passes, moves the chunk's list iterator to its end
(``__setstate__``): the ``map`` consuming it finishes the item in hand and stops. The thread
needs the GIL to act, so a deadline is kept to within the interpreter's switch interval. The
same thread can run any short action at a deadline (``call_at``): the probe uses it to start
sampling the GIL only once an item has run for a while.

The watcher holds no lock while user code could need one, and never imports; it is one of the
two kinds of smartpool thread that may be running when the fork server is forked (see
``_process.forkserver``), the other being probe threads waiting for work (``spare_threads``).
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from .limits import start_thread

_counter = itertools.count()

#: A deadline this close after the watcher's next wake-up does not wake it early: it is acted on
#: at that wake-up. Each early wake-up costs the running chunk a GIL hand-over (tens of us).
SLACK = 0.002
#: Disarmed deadlines are dropped when the watcher comes to them, and when there are this many
#: more than twice those armed (a disarmed deadline stays queued while an earlier one is armed).
COMPACT_AT = 256


class _Watcher:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        #: token -> (action, argument), run as ``action(argument)`` at the deadline.
        self._armed: dict[int, tuple[Callable[[Any], object], Any]] = {}
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the watcher wakes next on its own
        self.native_id: int | None = None

    def start(self) -> None:
        """Start the watcher thread now (before anything is timed), if it is not running."""
        with self._cond:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._watch, name="smartpool-deadlines", daemon=True
                )
                # Out of threads: ResourceLimitError, and the next call tries again.
                start_thread(thread, "the thread that enforces timeouts")
                self._thread = thread

    def arm(self, iterator: Any, length: int, deadline: float) -> int:
        """End ``iterator`` (over ``length`` items) at ``deadline``; returns a token to disarm."""
        return self.call_at(deadline, iterator.__setstate__, length)

    def call_at(self, deadline: float, action: Callable[[Any], object], argument: Any) -> int:
        """Run ``action(argument)`` on the watcher thread at ``deadline`` unless disarmed first;
        returns a token to disarm. Once ``disarm`` returns the action will not start, but may
        have started already: an action that must know has to tell for itself. Other
        deadlines wait while an action runs, so it must be brief."""
        self.start()
        token = next(_counter)
        with self._cond:
            self._armed[token] = (action, argument)
            # Wake the watcher only if it would sleep well past this deadline.
            if deadline < self._wake_at - SLACK:
                self._wake_at = deadline
                self._cond.notify()
            heapq.heappush(self._heap, (deadline, token))
            if len(self._heap) > COMPACT_AT + 2 * len(self._armed):  # mostly disarmed ones
                self._heap = [entry for entry in self._heap if entry[1] in self._armed]
                heapq.heapify(self._heap)
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _watch(self) -> None:
        self.native_id = threading.get_native_id()
        # The latest disarmed deadline dropped: with nothing armed, the watcher waits for it
        # (not for ever), so that deadlines armed again at or after it (a probe re-arms the
        # same one for each batch it times) need not wake it. It acts on none of them.
        idle_until = -math.inf
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    idle_until = max(idle_until, heapq.heappop(self._heap)[0])
                now = time.perf_counter()
                if not self._heap:
                    if idle_until > now:
                        # (Any deadline armed before it wakes the watcher: none of them may
                        # wait for a deadline that is not to be acted on; see ``call_at``.)
                        self._wake_at = idle_until + SLACK
                        self._cond.wait(idle_until - now)
                    else:
                        self._wake_at = math.inf
                        self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                left = deadline - now
                if left > 0:
                    self._wake_at = deadline
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                action, argument = self._armed.pop(token)
                self._cond.release()  # an action may take a while: arming must not wait for it
                try:
                    action(argument)  # for a chunk's iterator: the map stops after this item
                finally:
                    self._cond.acquire()


watcher = _Watcher()


def _forget_after_fork() -> None:
    global watcher
    watcher = _Watcher()


import os  # noqa: E402 - only for the at-fork hook below

os.register_at_fork(after_in_child=_forget_after_fork)
