"""Backends by name, their traits, and leases on warm pools.

A backend is registered once with its name, where its class lives (loaded on first use, so that
``import smartpool`` loads no pool machinery) and its :class:`BackendTraits`. The planner reads the
traits as data; a run takes a :class:`Lease` on a pool and holds it until its last chunk settles.

Pools are kept warm between calls, one per (backend, workers, settings). A pool lives while any
lease on it is held: only idle pools are evicted (the least recently used first, when more than
``MAX_IDLE_POOLS_PER_KIND`` of one kind are idle), so nothing shuts a pool down under a run.
A caller that needs workers of its own (an initializer, say) takes a private lease: a pool nobody
else is given, shut down when the lease is released.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from .. import _options
from .._work.setup import WorkerSetup
from .base import Backend, BackendTraits

#: Idle pools of one kind kept warm; beyond that the least recently used idle one is shut down.
MAX_IDLE_POOLS_PER_KIND = 4


@dataclass(frozen=True)
class Registration:
    name: str
    #: "module:Class", imported on first use.
    target: str
    traits: BackendTraits
    #: Why this backend cannot run in this interpreter (asking for it is an error), or None.
    unavailable: str | None = None


_registered: dict[str, Registration] = {}
_classes: dict[str, type[Backend]] = {}


def register(name: str, target: str, traits: BackendTraits, unavailable: str | None = None) -> None:
    """Make ``backend=name`` available; ``target`` is "module:Class" of a :class:`Backend`.

    With ``unavailable`` (the reason, and how to get it), the name is known but asking for it
    fails with that message (a backend that needs a newer Python, say).
    """
    _registered[name] = Registration(name, target, traits, unavailable)
    if name not in _options.BACKEND_NAMES:
        _options.BACKEND_NAMES.append(name)
    if unavailable is not None:
        _options.UNAVAILABLE_BACKENDS[name] = unavailable
    else:
        _options.UNAVAILABLE_BACKENDS.pop(name, None)


def unregister(name: str) -> None:
    """Remove backend ``name`` (its idle pools are shut down; calls holding one keep it)."""
    _registered.pop(name, None)
    _classes.pop(name, None)
    if name in _options.BACKEND_NAMES:
        _options.BACKEND_NAMES.remove(name)
    _options.UNAVAILABLE_BACKENDS.pop(name, None)
    with _lock:
        idle = [k for k, p in _pools.items() if p.backend.name == name and p.holders <= 0]
        evicted = [_pools.pop(k).backend for k in idle]
    for backend in evicted:
        backend.shutdown(wait=False)


def names() -> tuple[str, ...]:
    """The registered backends, in registration order."""
    return tuple(_registered)


def available(name: str) -> bool:
    """Whether backend ``name`` is registered and can run in this interpreter."""
    entry = _registered.get(name)
    return entry is not None and entry.unavailable is None


def traits(name: str) -> BackendTraits:
    """What backend ``name`` is like (KeyError for an unknown name)."""
    return _registered[name].traits


def backend_class(name: str) -> type[Backend]:
    cls = _classes.get(name)
    if cls is None:
        module, _, attr = _registered[name].target.partition(":")
        cls = _classes[name] = getattr(importlib.import_module(module), attr)
    return cls


@dataclass
class _Pool:
    backend: Backend
    holders: int = 0


@dataclass(eq=False)
class Lease:
    """A hold on a backend's pool: the pool is not shut down until every lease is released."""

    backend: Backend
    _key: Hashable | None
    _released: bool = field(default=False, repr=False)
    _generation: int = field(default_factory=lambda: _generation, repr=False)

    @property
    def stale(self) -> bool:
        """Whether :func:`shutdown` stopped every pool since this lease was taken (a holder
        that lives on, such as an executor, takes a new lease then)."""
        return self._generation != _generation

    def release(self) -> None:
        """Let go of the pool (once; later calls do nothing). A private pool is shut down."""
        with _lock:
            if self._released:
                return
            self._released = True
            evicted: list[Backend] = []
            if self._key is not None:
                entry = _pools.get(self._key)
                if entry is not None and entry.backend is self.backend:
                    entry.holders -= 1
                    if entry.holders <= 0:  # one more idle pool of its kind
                        evicted = _evict_idle(self.backend.name)
            else:
                evicted = [self.backend]
        for backend in evicted:
            backend.shutdown(wait=False)

    def __enter__(self) -> Backend:
        return self.backend

    def __exit__(self, *exc: object) -> None:
        self.release()


_pools: OrderedDict[Hashable, _Pool] = OrderedDict()
_lock = threading.Lock()
#: How many times :func:`shutdown` stopped every pool.
_generation = 0


def lease(
    name: str,
    workers: int,
    *,
    private: bool = False,
    setup: WorkerSetup | None = None,
    **settings: Any,
) -> Lease:
    """A lease on a warm pool of backend ``name`` with ``workers`` workers, made on first use.

    ``settings`` are passed to the backend's constructor and tell pools apart (the process
    backend's start method); a backend class may add defaults (``default_settings``). A
    ``setup`` (what each worker runs first) is one more setting; one with an initializer makes
    the pool private, so that no other call ever gets workers it set up.
    """
    cls = backend_class(name)
    settings = {**cls.default_settings(), **settings}
    setup = None if setup is None else cls.worker_setup(setup)
    if setup is not None:
        settings["setup"] = setup
        private = private or setup.private
    if private:
        return Lease(cls(workers, **settings), None)
    key = (name, workers, tuple(sorted(settings.items())))
    evicted: list[Backend] = []
    with _lock:
        entry = _pools.get(key)
        if entry is None:  # a new pool: the idle ones of its kind may now be too many
            entry = _pools[key] = _Pool(cls(workers, **settings))
            evicted = _evict_idle(name)
        else:
            _pools.move_to_end(key)
        entry.holders += 1
    for backend in evicted:
        backend.shutdown(wait=False)
    return Lease(entry.backend, key)


def _evict_idle(name: str) -> list[Backend]:
    """Under ``_lock``: take the least recently used idle pools of kind ``name`` beyond the cap."""
    idle = [k for k, p in _pools.items() if p.backend.name == name and p.holders <= 0]
    return [_pools.pop(k).backend for k in idle[: max(0, len(idle) - MAX_IDLE_POOLS_PER_KIND)]]


def get_ready(name: str) -> bool:
    """In the caller, while its other threads wait: whether a pool of kind ``name`` can start
    its workers later from another thread at no lasting cost (see ``Backend.get_ready``)."""
    cls = backend_class(name)
    return cls.get_ready(cls.default_settings())


def warm_workers(name: str) -> int:
    """The most workers already running in any pool of kind ``name``."""
    with _lock:
        return max(
            (p.backend.warm_workers() for p in _pools.values() if p.backend.name == name), default=0
        )


def shutdown(wait: bool = True) -> None:
    """Shut down every pool smartpool started; the next call starts new ones.

    Pools are stopped even if a call still holds them: that call fails with
    :class:`~smartpool.WorkerCrashedError` (or, on threads, its queued items are cancelled).
    Pools also stop at exit.

    Example:
        >>> import smartpool
        >>> smartpool.shutdown()
    """
    global _generation
    with _lock:
        backends = [p.backend for p in _pools.values()]
        _pools.clear()
        _generation += 1
    for backend in backends:
        backend.shutdown(wait=wait)
    for cls in list(_classes.values()):
        cls.release_resources()


def _forget_after_fork() -> None:
    """A forked child inherits copies of the pools whose threads only exist in the parent."""
    global _lock
    _pools.clear()
    _lock = threading.Lock()


register(
    "serial",
    "smartpool._backends.serial:SerialBackend",
    BackendTraits(
        runs_inline=True,
        can_kill=False,
        needs_pickling=False,
        chunk_seconds=0.01,
        window_per_worker=1,
    ),
)
register(
    "thread",
    "smartpool._backends.thread:ThreadBackend",
    BackendTraits(runs_inline=False, can_kill=False, needs_pickling=False, chunk_seconds=0.002),
)
register(
    "process",
    "smartpool._backends.process:ProcessBackend",
    BackendTraits(runs_inline=False, can_kill=True, needs_pickling=True, chunk_seconds=0.02),
)
register(
    "dask",
    "smartpool._backends.dask:DaskBackend",
    # A task's round trip goes through the scheduler, a dask worker and the child running it
    # (a few milliseconds): chunks of ~0.1 s hide it.
    BackendTraits(runs_inline=False, can_kill=True, needs_pickling=True, chunk_seconds=0.1),
)

register(
    "interpreter",
    "smartpool._backends.interpreter:InterpreterBackend",
    BackendTraits(runs_inline=False, can_kill=False, needs_pickling=True, chunk_seconds=0.005),
    unavailable=None
    if sys.version_info >= (3, 14)
    else (
        "backend='interpreter' needs Python 3.14 or later (it runs on concurrent.interpreters); "
        f"this is Python {sys.version_info.major}.{sys.version_info.minor}. Run under CPython "
        "3.14+ to use it, or use backend='process' for CPU parallelism on this Python"
    ),
)
register(  # the planner's choice for I/O-bound work on a cluster (not a BackendChoice)
    "dask-thread",
    "smartpool._backends.dask:DaskThreadBackend",
    BackendTraits(runs_inline=False, can_kill=False, needs_pickling=True, chunk_seconds=0.1),
)

atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)
