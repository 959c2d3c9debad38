"""Backend registry: one warm pool per (backend, worker count), made lazily, shut down at exit."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections import OrderedDict

from ._base import Backend

#: How many idle pools of one kind are kept warm before the least recently used is shut down.
MAX_POOLS_PER_KIND = 4

_pools: OrderedDict[tuple[str, int, str], Backend] = OrderedDict()
_lock = threading.Lock()


def get_backend(name: str, workers: int) -> Backend:
    """The warm backend for ``name`` with ``workers`` workers, created on first use."""
    from .._config import current

    start_method = current().start_method if name == "process" else ""
    key = (name, workers, start_method)
    evicted: list[Backend] = []
    with _lock:
        backend = _pools.get(key)
        if backend is not None:
            _pools.move_to_end(key)
            return backend
        backend = _create(name, workers, start_method)
        _pools[key] = backend
        same_kind = [k for k in _pools if k[0] == name]
        for old in same_kind[: max(0, len(same_kind) - MAX_POOLS_PER_KIND)]:
            evicted.append(_pools.pop(old))
    for old_backend in evicted:
        old_backend.shutdown(wait=False)
    return backend


def warm_workers(name: str) -> int:
    """The most workers already running in any pool of kind ``name``."""
    with _lock:
        return max((b.warm_workers() for k, b in _pools.items() if k[0] == name), default=0)


def discard(backend: Backend) -> None:
    """Forget a backend (after an abort) so the next call builds a fresh one."""
    with _lock:
        for key, value in list(_pools.items()):
            if value is backend:
                del _pools[key]


def shutdown(wait: bool = True) -> None:
    """Shut down every pool smartpool started; the next call starts new ones."""
    with _lock:
        backends = list(_pools.values())
        _pools.clear()
    for backend in backends:
        backend.shutdown(wait=wait)
    launcher = sys.modules.get("smartpool._process.launcher")
    if launcher is not None:
        launcher.stop_server()
    spares = sys.modules.get("smartpool._process.spares")
    if spares is not None:  # large-buffer files kept for reuse
        spares.spares.drop()
    sweep_shared_objects()


def sweep_shared_objects() -> None:
    """Remove shared objects (``smartpool.Lock`` & co.) left behind by workers that died."""
    shm = sys.modules.get("smartpool._sync._shm")
    if shm is not None:
        shm.sweep_orphans()


def _create(name: str, workers: int, start_method: str) -> Backend:
    if name == "serial":
        from .serial import SerialBackend

        return SerialBackend(1)
    if name == "thread":
        from .thread import ThreadBackend

        return ThreadBackend(workers)
    from .process import ProcessBackend

    return ProcessBackend(workers, start_method)


def _forget_after_fork() -> None:
    """A forked child inherits copies of the pools whose threads only exist in the parent."""
    global _lock
    _pools.clear()
    _lock = threading.Lock()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)
