"""BLAS/OpenMP threads inside workers (``inner_threads=``): no oversubscription.

NumPy's BLAS (and OpenMP code) starts a thread per CPU in every process: four worker processes
on four CPUs would run sixteen threads fighting for four cores. A worker process therefore gives
its libraries ``inner_threads`` threads: through the environment variables the libraries read
when they load (free, and enough for the usual worker, which imports NumPy with its first
chunk), and through threadpoolctl for libraries loaded before (a fork of a process using NumPy).
A run on threads limits the caller's libraries with threadpoolctl while it runs.

threadpoolctl is optional (``smartpool[blas]``): without it, libraries already loaded keep
their threads, and smartpool says so once, when it sees NumPy loaded.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Any

#: What the common BLAS and OpenMP runtimes read when they load.
ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: Shared libraries with a thread pool threadpoolctl can limit, as named in /proc/self/maps.
_POOL_LIBRARIES = ("openblas", "libmkl_rt", "libgomp", "libiomp", "libomp", "libblis", "flexiblas")

_applied = 0  # what this (worker) process last set
_warned = False
_warn_lock = threading.Lock()


def limit(threads: int) -> None:
    """In a worker process: give the BLAS/OpenMP libraries ``threads`` threads (0: leave them).

    Called before each chunk is unpickled, so that NumPy imported by its items reads the limit;
    does nothing when the limit is the one already set.
    """
    global _applied
    if threads <= 0 or threads == _applied:
        return
    _applied = threads
    for name in ENV_VARS:
        os.environ[name] = str(threads)
    if pool_library_loaded():
        threadpoolctl = _threadpoolctl()
        if threadpoolctl is not None:
            threadpoolctl.threadpool_limits(limits=threads)


def limited(threads: int | None) -> AbstractContextManager[Any]:
    """In the caller, around a run on threads: the libraries' threads limited to ``threads``
    while it runs (nothing when None, or without threadpoolctl)."""
    if threads is None or not pool_library_loaded():  # nothing to limit (nor to import)
        return nullcontext()
    threadpoolctl = _threadpoolctl()
    if threadpoolctl is None:
        warn_if_unlimited()
        return nullcontext()
    return _CallerLimit(threadpoolctl, threads)


class _CallerLimit:
    """The caller's libraries limited while at least one run on threads holds a limit.

    The limit is process-wide, and runs overlap (two threads of the caller, say) and end in any
    order: the limits from before the first are put back when the last one ends, never the
    limit of a run that ended in between.
    """

    _lock = threading.Lock()
    _holders = 0
    _first: Any = None  # threadpoolctl's limiter that remembers the limits before any run

    def __init__(self, threadpoolctl: Any, threads: int) -> None:
        self._threadpoolctl, self._threads = threadpoolctl, threads

    def __enter__(self) -> None:
        cls = _CallerLimit
        with cls._lock:
            limiter = self._threadpoolctl.threadpool_limits(limits=self._threads)
            if cls._holders == 0:
                cls._first = limiter
            cls._holders += 1

    def __exit__(self, *exc: object) -> None:
        cls = _CallerLimit
        with cls._lock:
            cls._holders -= 1
            if cls._holders == 0:
                first, cls._first = cls._first, None
                first.restore_original_limits()


def warn_if_unlimited() -> None:
    """Warn once, if NumPy is loaded and threadpoolctl is not installed, that BLAS threads
    already started cannot be limited."""
    global _warned
    if _warned or "numpy" not in sys.modules or available():
        return
    with _warn_lock:
        if _warned:
            return
        _warned = True
    warnings.warn(
        "smartpool cannot limit the BLAS threads of libraries already loaded (NumPy is) without "
        "threadpoolctl; workers may oversubscribe the CPUs. Install it: pip install "
        "'smartpool[blas]' (or pass inner_threads=None to silence this)",
        RuntimeWarning,
        stacklevel=2,
    )


def available() -> bool:
    """Whether threadpoolctl is installed (without importing it: that takes tens of ms)."""
    return "threadpoolctl" in sys.modules or importlib.util.find_spec("threadpoolctl") is not None


def _threadpoolctl() -> Any:
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


_modules_seen = -1  # len(sys.modules) when the memory map was last read
_pool_loaded = False


def pool_library_loaded() -> bool:
    """Whether a library with a thread pool is loaded in this process (Linux: from its memory
    map, read again only after modules were imported; elsewhere, NumPy loaded stands for it).

    Without one, there is nothing to limit: no threadpoolctl import (tens of ms), no limits
    set and restored around each run on threads."""
    global _modules_seen, _pool_loaded
    if len(sys.modules) != _modules_seen:
        _modules_seen = len(sys.modules)
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                text = maps.read()
        except OSError:  # pragma: no cover - not Linux
            _pool_loaded = "numpy" in sys.modules
        else:
            _pool_loaded = any(name in text for name in _POOL_LIBRARIES)
    return _pool_loaded
