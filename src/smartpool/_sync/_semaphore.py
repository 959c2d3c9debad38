"""``Semaphore`` and ``BoundedSemaphore``: ``threading`` semantics across processes.

Permits live in a named POSIX semaphore. To survive holder death, each process that acquires
gets a *slot* in shared memory (its token and its net number of permits taken); a blocked
acquirer that finds the slot of a dead process with permits in it gives those permits back to
the semaphore and warns. Slots are claimed once per process under the meta lock; afterwards the
bookkeeping is one increment under a process-local lock.

A bounded semaphore has a second named semaphore, ``taken``, counting the permits out (its
bound minus its value): acquire posts it, release takes from it first. Taking is atomic, so
releases beyond the bound fail with ValueError even when they race, in any processes (checking
the value and then posting, in two steps, let two racing releasers both through).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ._base import SemaphoreBinding, SharedObject
from ._lock import ACCELERATED
from ._owner import wait_for_permit, warn_abandoned
from ._proc import _current, is_alive
from ._shm import HEADER_WORDS, SEM_VALUE_MAX, Handle, new_handle

_SEMAPHORE_KIND = 3
_BOUND = HEADER_WORDS  # initial value of a bounded semaphore, -1 when unbounded
_SLOTS = HEADER_WORDS + 1  # slot i: token at _SLOTS + 2i, net permits at _SLOTS + 2i + 1
NSLOTS = 128
_NO_SLOT = -1


class PySemCore:
    """:class:`Semaphore`'s acquire, release and accounting in Python (the C extension's twin
    and fallback). Acquires with arguments or without a free permit go to ``_acquire_slow``."""

    __slots__ = ()
    _h: Handle
    _sem: Any
    _taken: Any
    _w: memoryview
    _mine: tuple[int, int]
    _acquire_slow: Callable[[bool, float | None], bool]
    _slot: Callable[[], int]

    def _bind_core(self, sem: Any, taken: Any, words: memoryview) -> None:
        # (token, slot) cache; the token changes in a forked child. (The slot is declared by
        # the concrete class, see Semaphore.)
        self._mine = (0, _NO_SLOT)  # type: ignore[misc]

    def _set_slot(self, token: int, slot: int) -> None:
        self._mine = (token, slot)  # type: ignore[misc]

    def _count(self, n: int) -> None:
        """Record ``n`` more permits held by this process in its slot."""
        mine = self._mine
        slot = mine[1] if mine[0] == _current[0] else self._slot()
        if slot != _NO_SLOT:
            with self._h.local_lock:
                self._w[slot + 1] += n

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take one permit; arguments and result as :meth:`threading.Semaphore.acquire`."""
        return self._acquire_slow(blocking, timeout)

    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits, waking up to ``n`` waiters."""
        if n < 1:
            raise ValueError("n must be one or more")
        taken = self._taken
        if taken is not None:
            for got in range(n):
                if not taken.acquire(False):
                    # Fewer than n permits are out. (Until the ones taken here are given
                    # back, a concurrent release may fail instead of this one: which of
                    # several releases that together exceed the bound fails is not fixed.)
                    for _ in range(got):
                        taken.release()
                    raise ValueError("Semaphore released too many times")
        self._count(-n)
        for done in range(n):
            try:
                self._sem.release()
            except ValueError:
                self._count(n - done)
                raise ValueError("Semaphore released too many times") from None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _load_core() -> type[PySemCore]:
    """The C core if it was built and not disabled, else the pure-Python one."""
    if not ACCELERATED:  # not built, or SMARTPOOL_PURE_PYTHON=1
        return PySemCore
    from . import _fastlock  # built, and its process token set by ``_lock``

    return cast("type[PySemCore]", _fastlock.SemCore)  # its twin, method for method


if TYPE_CHECKING:
    _SemCore = PySemCore
else:
    _SemCore = _load_core()


class Semaphore(_SemCore, SemaphoreBinding, SharedObject):
    """A counting semaphore with the semantics of :class:`threading.Semaphore`, for every backend.

    If a process dies holding permits, a blocked acquirer returns them to the semaphore within
    about 50 ms and an :class:`AbandonedLockWarning` names the dead pid. (A process's permits are
    the ones it acquired minus the ones it released; up to 128 processes are tracked at once.)

    Example::

        slots = smartpool.Semaphore(2)  # at most two downloads at a time, across all workers

        def fetch(url):
            with slots:
                return download(url)
    """

    __slots__ = ("_h", "_mine", "_sem", "_taken", "_w")
    _KIND = _SEMAPHORE_KIND
    _bounded = False

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._init_shared(value)

    def _create(self, value: int) -> None:
        sems = [(value, value), (0, value)] if self._bounded else [(value, SEM_VALUE_MAX)]
        handle = new_handle(self._KIND, _SLOTS + 2 * NSLOTS, 0, sems)
        handle.words[_BOUND] = value if self._bounded else -1
        self._bind(handle)

    def _bind(self, handle: Handle) -> None:
        super()._bind(handle)
        #: Permits out, for a bounded semaphore (see the module's docstring); else None.
        self._taken = handle.sems[1] if len(handle.sems) > 1 else None
        self._bind_core(self._sem, self._taken, self._w)

    def _acquire_slow(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """``acquire`` with arguments or without a free permit: wait, recovering the permits
        of dead holders."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        self._slot()  # claimed before taking a permit: a death right after counts
        if not self._sem.acquire(False) and not (
            blocking and wait_for_permit(self._sem, timeout, self._recover)
        ):
            return False
        if self._taken is not None:
            self._taken.release()
        self._count(1)
        return True

    def _value(self) -> int:
        """Current number of free permits (for tests and repr; racy by nature)."""
        return int(self._sem._get_value())

    def _slot(self) -> int:
        """Index of this process's slot, claimed on first use (``_NO_SLOT`` if all are busy),
        and cached in the core."""
        handle = self._h
        token = _current[0]
        slot = handle.local.get(token)
        if slot is None:
            with handle.local_lock:
                slot = handle.local.get(token)
                if slot is None:
                    slot = handle.local[token] = self._claim_slot(token)
        self._set_slot(token, slot)
        return slot

    def _claim_slot(self, token: int) -> int:
        w = self._w
        with self._h.meta:
            free = _NO_SLOT
            for i in range(_SLOTS, _SLOTS + 2 * NSLOTS, 2):
                if w[i] == token:
                    return i
                if free == _NO_SLOT and (w[i] == 0 or (w[i + 1] <= 0 and not is_alive(w[i]))):
                    free = i
            if free != _NO_SLOT:
                w[free], w[free + 1] = token, 0
            return free  # all slots busy: this process's permits go untracked

    def _recover(self) -> bool:
        """Return the permits of dead holders to the semaphore (called while blocked)."""
        w = self._w
        dead = [
            i
            for i in range(_SLOTS, _SLOTS + 2 * NSLOTS, 2)
            if w[i] != 0 and w[i + 1] > 0 and not is_alive(w[i])
        ]
        if not dead:
            return False
        taken = self._taken
        with self._h.meta:
            for i in dead:
                token, held = w[i], w[i + 1]
                if token == 0 or held <= 0 or is_alive(token):
                    continue
                w[i], w[i + 1] = 0, 0
                for _ in range(held):
                    if taken is not None and not taken.acquire(False):
                        break  # never beyond the bound
                    self._sem.release()
                warn_abandoned(type(self).__name__, self._h.name, token, stacklevel=5)
        return False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__module__}.{type(self).__qualname__} {self._h.name} "
            f"value={self._value()}>"
        )


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` that refuses to exceed its initial value, as
    :class:`threading.BoundedSemaphore`: releasing too many times raises ValueError.

    Example::

        pool_slots = smartpool.BoundedSemaphore(4)
        with pool_slots:
            ...
    """

    __slots__ = ()
    _bounded = True
