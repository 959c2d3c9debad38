"""Shared state on a Dask cluster that reaches other machines: smartpool's primitives, backed by
dask's.

``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Event`` and ``Value`` live in this
machine's shared memory, which a worker on another machine cannot open. Made inside a
``using()`` scope (or with ``configure(cluster=...)``) whose cluster has a worker on another
machine, they are *cluster-wide* instead: the same methods, backed by ``distributed.Lock``,
``Semaphore``, ``Event`` and ``Variable`` on the scheduler (``isinstance(lock, smartpool.Lock)``
still holds). On a cluster whose workers all share the caller's machine (``LocalCluster``)
nothing changes. Where a primitive lives is decided when it is made; one made for this machine
and sent to a worker on another is a :class:`~smartpool.SerializationError` there.

"Another machine" means another shared-memory namespace: :func:`machine_identity` is the host
name, the kernel's boot id and the identity of ``/dev/shm`` (a container with a ``/dev/shm`` of
its own counts as another machine).
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from . import _cluster, _config
from ._sync import BoundedSemaphore, Event, Lock, RLock, Semaphore, Value
from ._work import context

#: How long what the workers' machines are is trusted before they are asked again.
MACHINES_TTL_SECONDS = 2.0

#: Set on a worker by tests (``client.run(pretend_machine, ...)``) to stand for another machine.
_pretended: str | None = None
_machines: dict[int, tuple[float, bool]] = {}
_carried = threading.local()


def machine_identity() -> str:
    """This process's machine as shared memory sees it: host, boot id, ``/dev/shm``."""
    if _pretended is not None:
        return _pretended
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    try:
        shm = os.stat("/dev/shm")
        memory = f"{shm.st_dev}:{shm.st_ino}"
    except OSError:
        memory = ""
    return f"{socket.gethostname()}|{boot}|{memory}"


def pretend_machine(identity: str | None) -> None:
    """Make this process report ``identity`` as its machine (None: the real one). For tests."""
    global _pretended
    _pretended = identity


def reaches_other_machines(client: Any) -> bool:
    """Whether a worker of ``client``'s cluster is on another machine than this process."""
    now = time.monotonic()
    known = _machines.get(id(client))
    if known is not None and now - known[0] < MACHINES_TTL_SECONDS:
        return known[1]
    here = machine_identity()
    theirs: dict[str, str] = client.run(machine_identity)
    answer = any(identity != here for identity in theirs.values())
    _machines[id(client)] = (now, answer)
    return answer


def forget_machines() -> None:
    """Ask the workers again next time (their machines changed: for tests)."""
    _machines.clear()


def carried() -> int:
    """How many cluster-wide primitives this thread has pickled so far (a chunk that carries
    one must run where a dask client is at hand: on a dask worker's thread)."""
    return int(getattr(_carried, "count", 0))


def _pickled() -> None:
    _carried.count = carried() + 1


def _distributed() -> Any:
    return importlib.import_module("distributed")


class ClusterLock:
    """``smartpool.Lock`` across machines: a ``distributed.Lock`` (a lease on the scheduler).

    Differences: a holder that dies keeps the lock until its lease expires (the scheduler's
    ``distributed.scheduler.locks.lease-timeout``, 30 s by default), not at once; only the
    object that acquired it may release it (each copy sent to a task is its own holder).
    """

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        self.name = name or f"smartpool-lock-{uuid.uuid4().hex}"
        rpc = {} if client is None else {"scheduler_rpc": client.scheduler, "loop": client.loop}
        self._lock: Any = _distributed().Lock(self.name, **rpc)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be a non-negative number")
        return bool(self._lock.acquire(blocking, None if timeout == -1 else timeout))

    def release(self) -> None:
        try:
            self._lock.release()
        except RuntimeError as exc:
            raise RuntimeError("release unlocked lock") from exc

    def locked(self) -> bool:
        return bool(self._lock.locked())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __reduce__(self) -> tuple[Any, ...]:
        _pickled()
        return (type(self), (self.name,))


class ClusterRLock(ClusterLock):
    """``smartpool.RLock`` across machines: a ``distributed.Lock`` that its owning thread may
    take again (the count is kept in this object: each copy sent to a task is its own owner)."""

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        super().__init__(name, client)
        self._owner: int | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        if self._owner == me:
            self._count += 1
            return True
        if not super().acquire(blocking, timeout):
            return False
        self._owner, self._count = me, 1
        return True

    def release(self) -> None:
        if self._owner != threading.get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            super().release()


class ClusterSemaphore:
    """``smartpool.Semaphore`` across machines: a ``distributed.Semaphore`` of ``value`` leases.

    Differences: the count never exceeds ``value`` (a release without an acquire by the same
    object is a ``ValueError``, as on ``BoundedSemaphore``); a holder that dies keeps its lease
    until it expires (30 s by default), not at once.
    """

    def __init__(self, value: int = 1, name: str | None = None, client: Any = None) -> None:
        if value < 1:
            raise ValueError(
                f"Semaphore({value}) has no cluster-wide form: a distributed.Semaphore holds at "
                "least one lease (make it outside the using() scope to keep it on this machine)"
            )
        self.name, self.value = name or f"smartpool-semaphore-{uuid.uuid4().hex}", value
        rpc = {} if client is None else {"scheduler_rpc": client.scheduler, "loop": client.loop}
        self._sem: Any = _distributed().Semaphore(value, self.name, **rpc)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        return bool(self._sem.acquire(0 if not blocking else timeout))

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        for _ in range(n):
            try:
                self._sem.release()
            except RuntimeError as exc:
                raise ValueError("Semaphore released too many times") from exc

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __reduce__(self) -> tuple[Any, ...]:
        _pickled()
        return (type(self), (self.value, self.name))


class ClusterEvent:
    """``smartpool.Event`` across machines: a ``distributed.Event`` on the scheduler."""

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        self.name = name or f"smartpool-event-{uuid.uuid4().hex}"
        self._event: Any = _distributed().Event(self.name, client)

    def is_set(self) -> bool:
        return bool(self._event.is_set())

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._event.wait(timeout))

    def __reduce__(self) -> tuple[Any, ...]:
        _pickled()
        return (type(self), (self.name,))


class ClusterValue:
    """``smartpool.Value`` across machines: a ``distributed.Variable``, its writers serialized by
    a cluster-wide ``RLock``. Differences: ``max_bytes`` is not enforced (the scheduler keeps
    the value); each operation is a round trip to the scheduler (about a millisecond, where a
    shared-memory ``Value`` takes a microsecond); the variable is deleted when the object made
    in the caller is collected."""

    def __init__(
        self, initial: Any = None, max_bytes: int = 0, name: str | None = None, client: Any = None
    ) -> None:
        self.name = name or f"smartpool-value-{uuid.uuid4().hex}"
        self._var: Any = _distributed().Variable(self.name, client)
        self._lock = ClusterRLock(f"{self.name}-writers", client)
        if client is not None:  # made here, not attached: set it, and delete it when collected
            self._var.set(initial)
            weakref.finalize(self, _delete, self._var)

    def get_lock(self) -> ClusterRLock:
        return self._lock

    def get(self) -> Any:
        return self._var.get()

    def set(self, value: Any) -> None:
        with self._lock:
            self._var.set(value)

    def update(self, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            value = fn(self._var.get())
            self._var.set(value)
            return value

    def add(self, n: Any) -> Any:
        return self.update(lambda value: value + n)

    def __reduce__(self) -> tuple[Any, ...]:
        _pickled()
        return (type(self), (None, 0, self.name))


def _delete(variable: Any) -> None:
    try:
        variable.delete()
    except Exception:  # the client closed first: the scheduler went with it
        pass


def _semaphore(client: Any, value: int = 1) -> ClusterSemaphore:
    return ClusterSemaphore(value, client=client)


def _value(client: Any, initial: Any, max_bytes: int = 0) -> ClusterValue:
    return ClusterValue(initial, max_bytes, client=client)


def _lock_of(kind: type[ClusterLock]) -> Callable[[Any], ClusterLock]:
    def make(client: Any) -> ClusterLock:
        return kind(client=client)

    return make


def _event(client: Any) -> ClusterEvent:
    return ClusterEvent(client=client)


#: Each machine-local primitive and what it is across machines.
TWINS: dict[type[Any], Callable[..., object]] = {
    Lock: _lock_of(ClusterLock),
    RLock: _lock_of(ClusterRLock),
    Semaphore: _semaphore,
    BoundedSemaphore: _semaphore,
    Event: _event,
    Value: _value,
}
for _local, _twin in (
    (Lock, ClusterLock),
    (RLock, ClusterRLock),
    (BoundedSemaphore, ClusterSemaphore),
    (Event, ClusterEvent),
    (Value, ClusterValue),
):
    _local.register(_twin)  # isinstance(lock, smartpool.Lock) holds for the twin too


def twin(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> object | None:
    """The cluster-wide primitive to make instead of ``cls(*args, **kwargs)``: when a cluster
    that reaches other machines is attached here (not inside a task); else None."""
    make = TWINS.get(cls)
    if make is None or _config.cluster() is None or context.in_worker():
        return None
    client = _cluster.attached_client()
    if client is None or not reaches_other_machines(client):
        return None
    return make(client, *args, **kwargs)
