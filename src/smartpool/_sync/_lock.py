"""``Lock`` and ``RLock``: ``threading`` semantics, shared by threads and processes alike.

The lock itself is a named POSIX semaphore (the one ``multiprocessing.Lock`` uses), 1 while
the lock is free, and a second one, ``held``, 1 while it is held: acquire takes the first and
posts the second, release takes the second and posts the first. Taking ``held`` is what makes a
release succeed, atomically, so of two racing releasers exactly one does (checking the lock's
value and then posting let both through, and then two acquirers). An uncontended
acquire/release is four semaphore calls (atomic instructions, no system call) plus one store of
the holder's token into shared memory. The token (pid and start time) is what lets a blocked
acquirer notice that the holder died and take the lock over (see ``_owner``). ``RLock`` needs no
``held``: only its owning thread may release it.

Both locks' fast paths live in a small C extension (``_fastlock.c``, ``_fastrlock.c``): in
Python, the method calls alone would cost more than twice ``multiprocessing.Lock``'s whole pair.
A plain ``acquire()`` of a lock held elsewhere also sleeps there, without the GIL, for one slice
of :data:`~smartpool._sync._owner.POLL` seconds before the Python slow path looks for a dead
holder (looking on every contended acquire made a contended Lock 5x slower than
``multiprocessing.Lock``). Where the extension was not built (or ``SMARTPOOL_PURE_PYTHON=1`` is
set) :class:`PyLockCore` and :class:`PyRLockCore`, the pure-Python twins, take their place with
the same behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ._base import SemaphoreBinding, SharedObject
from ._owner import check_lock_args, wait_for_permit, warn_abandoned
from ._proc import _current, is_alive, on_fork_in_child
from ._shm import HEADER_WORDS, new_handle

_LOCK_KIND = 1
_RLOCK_KIND = 2
_OWNER = HEADER_WORDS  # token of the holding process, 0 when free
_TID = HEADER_WORDS + 1  # RLock: thread ident of the holder within its process
_COUNT = HEADER_WORDS + 2  # RLock: recursion level


class PyLockCore:
    """The uncontended path of :class:`Lock` in Python (the C extension's twin and fallback).

    Anything but an uncontended ``acquire()`` goes to ``_acquire_slow``, as in the C version.
    """

    __slots__ = ()
    _sem: Any
    _held: Any
    _w: memoryview

    #: ``acquire`` with arguments or on a taken lock, as the C core calls it; :class:`Lock`
    #: provides it.
    _acquire_slow: Callable[[bool, float], bool]

    def _bind_core(self, sem: Any, held: Any, words: memoryview, index: int) -> None:
        """Nothing to do: the Python methods read ``_sem``, ``_held`` and ``_w`` directly."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock; arguments and result as :meth:`threading.Lock.acquire`."""
        if blocking is True and timeout == -1 and self._sem.acquire(False):
            self._held.release()
            self._w[_OWNER] = _current[0]
            return True
        return self._acquire_slow(blocking, timeout)

    def release(self) -> None:
        """Release the lock; RuntimeError if it is not locked."""
        if not self._held.acquire(False):
            raise RuntimeError("release unlocked lock")
        self._w[_OWNER] = 0
        self._sem.release()

    def locked(self) -> bool:
        """Whether some thread of some process holds the lock."""
        return bool(self._sem._is_zero())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class PyRLockCore:
    """:class:`RLock`'s acquire and release in Python (the C extension's twin and fallback).

    Arguments, and acquires that must wait, go to ``_acquire_slow``, as in the C version.
    """

    __slots__ = ()
    _sem: Any
    _w: memoryview
    _acquire_slow: Callable[[bool, float], bool]

    def _bind_core(self, sem: Any, held: Any, words: memoryview, index: int) -> None:
        """Nothing to do: the Python methods read ``_sem`` and ``_w`` directly."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire, or re-enter if this thread holds it; as :meth:`threading.RLock.acquire`."""
        if blocking is not True or timeout != -1:
            return self._acquire_slow(blocking, timeout)
        w = self._w
        me = get_ident()
        token = _current[0]
        if w[_TID] == me and w[_OWNER] == token:
            w[_COUNT] += 1
            return True
        if not self._sem.acquire(False):
            return self._acquire_slow(blocking, timeout)
        w[_TID] = me
        w[_COUNT] = 1
        w[_OWNER] = token
        return True

    def release(self) -> None:
        """Release one level; RuntimeError unless the calling thread holds the lock."""
        w = self._w
        if w[_OWNER] != _current[0] or w[_TID] != get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        count = w[_COUNT] - 1
        w[_COUNT] = count
        if count == 0:
            w[_OWNER] = 0
            w[_TID] = 0
            self._sem.release()

    def locked(self) -> bool:
        """Whether some thread of some process holds the lock."""
        return bool(self._sem._is_zero())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _load_cores() -> tuple[type[PyLockCore], type[PyRLockCore]]:
    """The C cores if they were built and not disabled, else the pure-Python ones."""
    if os.environ.get("SMARTPOOL_PURE_PYTHON", "") not in ("", "0"):
        return PyLockCore, PyRLockCore
    try:
        from . import _fastlock
    except ImportError:
        return PyLockCore, PyRLockCore

    def refresh_token() -> None:
        _fastlock.set_token(_current[0])

    refresh_token()
    on_fork_in_child(refresh_token)
    # The C types are their twins, method for method.
    return (
        cast("type[PyLockCore]", _fastlock.LockCore),
        cast("type[PyRLockCore]", _fastlock.RLockCore),
    )


if TYPE_CHECKING:
    _LockCore = PyLockCore
    _RLockCore = PyRLockCore
else:
    _LockCore, _RLockCore = _load_cores()

#: Whether the locks' fast paths run in C (False: the pure-Python fallback).
ACCELERATED = _LockCore is not PyLockCore


class _LockBase(SemaphoreBinding, SharedObject):
    """What :class:`Lock` and :class:`RLock` share: creation, binding, owner-death recovery.

    Each puts its core (C, or its pure-Python twin) first among its bases; a base class with
    instance slots of its own would conflict with the C core's layout, so the slots are declared
    by the concrete classes.
    """

    __slots__ = ()
    _NWORDS: int
    #: (value, maxvalue) of the block's semaphores.
    _SEMS: tuple[tuple[int, int], ...]
    _held: Any
    _bind_core: Callable[[Any, Any, memoryview, int], None]

    def _create(self) -> None:
        self._bind(new_handle(self._KIND, self._NWORDS, 0, list(self._SEMS)))

    def _bind(self, handle: Any) -> None:
        super()._bind(handle)
        self._held = handle.sems[1] if len(handle.sems) > 1 else None
        self._bind_core(self._sem, self._held, self._w, _OWNER)

    def _recover(self) -> bool:
        """Take the lock over if its recorded holder is dead (called while blocked).

        On True the caller holds the lock without having taken the semaphore; a :class:`Lock`
        has also taken ``held`` from the dead holder, and posts it as after any acquire.
        """
        token = self._w[_OWNER]
        if token == 0 or is_alive(token):
            return False
        held = self._held
        with self._h.meta:
            if self._w[_OWNER] != token:
                return False  # released, or already taken over by another waiter
            # Another process may release the dead holder's lock (any process may): then that
            # release owns ``held`` now and the semaphore brings the lock; else this claim keeps
            # such a release out until the lock has changed hands.
            if held is not None and not held.acquire(False):
                return False
            self._prepare_take_over()
            self._w[_OWNER] = _current[0]
        warn_abandoned(type(self).__name__, self._h.name, token)
        return True

    def _prepare_take_over(self) -> None:
        pass

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"  # type: ignore[attr-defined]
        return f"<{type(self).__module__}.{type(self).__qualname__} {self._h.name} {state}>"


class Lock(_LockCore, _LockBase):
    """A mutual-exclusion lock with the semantics of :class:`threading.Lock`, for every backend.

    Any thread of any process may release it (as with ``threading.Lock``). If the holding process
    dies, the next acquirer gets the lock within about 50 ms and an
    :class:`AbandonedLockWarning` names the dead pid.

    Example::

        lock = smartpool.Lock()

        def task(x):
            with lock:  # same meaning inline, on a thread, in a worker process
                append_to_log(x)

        smartpool.parallel_map(task, items, backend="process")
    """

    __slots__ = ("_h", "_held", "_sem", "_w")
    _KIND = _LOCK_KIND
    _NWORDS = HEADER_WORDS + 1
    _SEMS = ((1, 1), (0, 1))  # free, held

    def __init__(self) -> None:
        self._init_shared()

    def _acquire_slow(self, blocking: bool = True, timeout: float = -1) -> bool:
        """``acquire`` with arguments or on a taken lock: wait, watching for a dead holder."""
        if timeout != -1:
            check_lock_args(blocking, timeout)
        if not self._sem.acquire(False) and not (
            blocking and wait_for_permit(self._sem, None if timeout < 0 else timeout, self._recover)
        ):
            return False
        self._held.release()
        self._w[_OWNER] = _current[0]
        return True


class RLock(_RLockCore, _LockBase):
    """A re-entrant lock with the semantics of :class:`threading.RLock`, for every backend.

    It is owned by one thread of one process; that thread may acquire it again and must release
    it as many times. Releasing it from any other thread or process raises RuntimeError. Owner
    death is handled as for :class:`Lock`.

    Example::

        rlock = smartpool.RLock()

        def task(x):
            with rlock:
                with rlock:  # re-entrant
                    return x
    """

    __slots__ = ("_h", "_held", "_sem", "_w")
    _KIND = _RLOCK_KIND
    _NWORDS = HEADER_WORDS + 3
    _SEMS = ((1, 1),)

    def __init__(self) -> None:
        self._init_shared()

    def _acquire_slow(self, blocking: bool = True, timeout: float = -1) -> bool:
        """``acquire`` with arguments or on a lock held elsewhere: re-enter, or wait watching
        for a dead holder."""
        if timeout != -1:
            check_lock_args(blocking, timeout)
        w = self._w
        me = get_ident()
        if w[_OWNER] == _current[0] and w[_TID] == me:
            w[_COUNT] += 1
            return True
        if not self._sem.acquire(False) and not (
            blocking and wait_for_permit(self._sem, None if timeout < 0 else timeout, self._recover)
        ):
            return False
        w[_TID] = me
        w[_COUNT] = 1
        w[_OWNER] = _current[0]
        return True

    def _prepare_take_over(self) -> None:
        self._w[_TID] = get_ident()
        self._w[_COUNT] = 0  # set to 1 by acquire once it returns

    def _is_owned(self) -> bool:
        return self._w[_OWNER] == _current[0] and self._w[_TID] == get_ident()
