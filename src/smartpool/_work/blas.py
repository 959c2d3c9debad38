"""BLAS/OpenMP threads inside workers (``inner_threads=``): no oversubscription.

NumPy's BLAS (and OpenMP code) starts a thread per CPU in every process: four worker processes
on four CPUs would run sixteen threads fighting for four cores. A worker process therefore gives
its libraries ``inner_threads`` threads: through the environment variables the libraries read
when they load (free, and enough for the usual worker, which imports NumPy with its first
chunk), and through threadpoolctl for libraries loaded before (a fork of a process using NumPy).
A run on threads limits the process's BLAS libraries from the caller's thread while it has
chunks in flight (that limit is process-wide), and the OpenMP runtimes in each worker thread
around each of its chunks (OpenMP's limit is per thread).

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
from typing import Any, ClassVar

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
    """In the caller, while a run has chunks on threads: the BLAS libraries' threads limited to
    ``threads`` (nothing when None, or without threadpoolctl).

    A BLAS library's limit is process-wide; set it and put it back from the same thread (the
    caller's): OpenBLAS ignores a count put back from another thread. An OpenMP runtime's limit
    is per thread (see :func:`in_this_thread`)."""
    if threads is None or not pool_library_loaded():  # nothing to limit (nor to import)
        return nullcontext()
    if not available():
        warn_if_unlimited()
        return nullcontext()
    return _ProcessLimit(threads)


def in_this_thread(threads: int | None) -> AbstractContextManager[Any]:
    """In a worker thread, around one chunk: the OpenMP runtimes' threads for the code this
    thread runs limited to ``threads``, and put back after (the thread serves other calls).

    OpenMP's thread count is a setting of the calling thread, which a limit set in the caller
    does not reach; three calls into the runtime a chunk (a few microseconds)."""
    if threads is None or not openmp_loaded():
        return nullcontext()
    runtimes = _libraries().openmp
    if not runtimes:
        return nullcontext()
    return _ThreadLimit(runtimes, threads)


class _ThreadLimit:
    """One chunk's OpenMP limit in the thread running it."""

    __slots__ = ("_before", "_runtimes", "_threads")

    def __init__(self, runtimes: list[Any], threads: int) -> None:
        self._runtimes, self._threads = runtimes, threads

    def __enter__(self) -> None:
        self._before = [runtime.get_num_threads() for runtime in self._runtimes]
        for runtime in self._runtimes:
            runtime.set_num_threads(self._threads)

    def __exit__(self, *exc: object) -> None:
        for runtime, before in zip(self._runtimes, self._before, strict=True):
            if before is not None:
                runtime.set_num_threads(before)


class _ProcessLimit:
    """The BLAS libraries limited while at least one run holds a limit.

    The limit is process-wide, and runs overlap (two threads of the caller, say) and end in any
    order: the limits from before the first are put back when the last one ends, never the
    limit of a run that ended in between.
    """

    _lock = threading.Lock()
    _holders = 0
    #: Each library's thread count from before the first holder (a library loaded meanwhile
    #: is added when a holder limits it).
    _before: ClassVar[dict[str, tuple[Any, int]]] = {}

    def __init__(self, threads: int) -> None:
        self._threads = threads

    def __enter__(self) -> None:
        cls = _ProcessLimit
        with cls._lock:
            for library in _libraries().blas:
                if library.filepath not in cls._before:
                    cls._before[library.filepath] = (library, library.get_num_threads())
                library.set_num_threads(self._threads)
            cls._holders += 1

    def __exit__(self, *exc: object) -> None:
        cls = _ProcessLimit
        with cls._lock:
            cls._holders -= 1
            if cls._holders == 0:
                before, cls._before = cls._before, {}
                for library, threads in before.values():
                    library.set_num_threads(threads)


class _Libraries:
    """The thread pools threadpoolctl found loaded here: BLAS libraries and OpenMP runtimes."""

    def __init__(self, blas: list[Any], openmp: list[Any]) -> None:
        self.blas, self.openmp = blas, openmp


_NO_LIBRARIES = _Libraries([], [])
_libraries_lock = threading.Lock()
_libraries_seen = -1  # len(sys.modules) when the libraries were last looked for
_found = _NO_LIBRARIES


def _libraries() -> _Libraries:
    """The libraries' controllers, looked for again only after modules were imported (finding
    them reads every loaded library's symbols: milliseconds)."""
    global _libraries_seen, _found
    if len(sys.modules) == _libraries_seen:
        return _found
    with _libraries_lock:
        modules = len(sys.modules)
        if modules != _libraries_seen:
            threadpoolctl = _threadpoolctl() if pool_library_loaded() else None
            if threadpoolctl is None:
                _found = _NO_LIBRARIES
            else:
                controller = threadpoolctl.ThreadpoolController()
                _found = _Libraries(
                    list(controller.select(user_api="blas").lib_controllers),
                    list(controller.select(user_api="openmp").lib_controllers),
                )
            _libraries_seen = modules
    return _found


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
_openmp_loaded = False
_OPENMP_LIBRARIES = ("libgomp", "libiomp", "libomp")


def pool_library_loaded() -> bool:
    """Whether a library with a thread pool is loaded in this process (Linux: from its memory
    map, read again only after modules were imported; elsewhere, NumPy loaded stands for it).

    Without one, there is nothing to limit: no threadpoolctl import (tens of ms), no limits
    set and restored around each run on threads."""
    _read_memory_map()
    return _pool_loaded


def openmp_loaded() -> bool:
    """Whether an OpenMP runtime is loaded in this process (as :func:`pool_library_loaded`)."""
    _read_memory_map()
    return _openmp_loaded


def _read_memory_map() -> None:
    global _modules_seen, _pool_loaded, _openmp_loaded
    modules = len(sys.modules)
    if modules == _modules_seen:
        return
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            text = maps.read()
    except OSError:  # pragma: no cover - not Linux
        _pool_loaded = _openmp_loaded = "numpy" in sys.modules
    else:
        _pool_loaded = any(name in text for name in _POOL_LIBRARIES)
        _openmp_loaded = any(name in text for name in _OPENMP_LIBRARIES)
    _modules_seen = modules  # last: a thread seeing it sees the flags it stands for
