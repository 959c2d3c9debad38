"""``Event``: ``threading.Event`` semantics across processes.

The flag and a generation counter live in shared memory; waiters sleep on a named semaphore.
``wait`` registers as a waiter under the meta lock; ``set`` bumps the generation and posts one
permit per registered waiter. A waiter returns True once the generation moved, so a short
``set(); clear()`` pulse still wakes everyone who was waiting, as in ``threading``. Waiters also
re-check every :data:`~smartpool._sync._owner.POLL` seconds, so a permit lost to a dead process
can only cost a few milliseconds, never a hang.
"""

from __future__ import annotations

import time

from ._base import SemaphoreObject
from ._owner import POLL
from ._shm import HEADER_WORDS, SEM_VALUE_MAX, new_handle

_EVENT_KIND = 5
_FLAG = HEADER_WORDS
_GEN = HEADER_WORDS + 1
_WAITERS = HEADER_WORDS + 2


class Event(SemaphoreObject):
    """A flag that threads and processes can wait for, with the semantics of
    :class:`threading.Event`: ``set``, ``clear``, ``is_set`` and ``wait(timeout)``.

    Example::

        stop = smartpool.Event()

        def task(x):
            if stop.is_set():
                return None
            ...

        stop.set()  # seen by every worker, whatever the backend
    """

    __slots__ = ()
    _KIND = _EVENT_KIND

    def __init__(self) -> None:
        self._init_shared()

    def _create(self) -> None:
        self._bind(new_handle(self._KIND, HEADER_WORDS + 3, 0, [(0, SEM_VALUE_MAX)]))

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return bool(self._w[_FLAG])

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        w = self._w
        if w[_FLAG]:
            # Already set: the set that set it woke (or is waking, under the meta lock) every
            # waiter registered before it, and later ones see the flag when they register.
            return
        with self._h.meta:
            w[_FLAG] = 1
            w[_GEN] += 1
            waiters, w[_WAITERS] = w[_WAITERS], 0
            for _ in range(waiters):
                self._sem.release()

    def clear(self) -> None:
        """Reset the flag; later ``wait`` calls block until the next ``set``."""
        # One store, no meta lock: waiters watch the generation, not the flag, so a clear
        # racing with a set or a wait leaves either order's outcome, as in ``threading``.
        self._w[_FLAG] = 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds passed; return True if it was set."""
        w = self._w
        if w[_FLAG]:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._h.meta:
            if w[_FLAG]:
                return True
            generation = w[_GEN]
            w[_WAITERS] += 1
        while True:
            remaining = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if remaining > 0:
                self._sem.acquire(True, remaining)  # a permit, a stale permit, or a timeout
            if w[_GEN] != generation:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                with self._h.meta:
                    if w[_GEN] != generation:
                        return True
                    if w[_WAITERS] > 0:
                        w[_WAITERS] -= 1
                return False

    def __repr__(self) -> str:
        state = "set" if self.is_set() else "unset"
        return f"<{type(self).__module__}.{type(self).__qualname__} {self._h.name} {state}>"
