"""A joblib backend: ``Parallel`` batches (scikit-learn's ``n_jobs``) routed by smartpool.

After :func:`register`, ``joblib.parallel_config(backend="smartpool", n_jobs=...)`` sends every
``Parallel`` call in its scope through one smartpool :func:`~smartpool.imap` per call: joblib's
batches are its items, so smartpool's probe (or a hint) picks serial, threads or processes, and
each batch is one chunk, sized as smartpool sizes chunks (to take about ``BATCH_SECONDS``,
from the measured cost of the batches before). joblib's ``prefer="threads"`` is the
``@io_bound`` hint and ``prefer="processes"`` the ``@cpu_bound`` one; ``require="sharedmem"``
keeps the work in this process (threads). A ``Parallel`` call made inside a worker runs inline
there.

This module sits on smartpool's public API; ``import smartpool`` does not import joblib, and
joblib is not a dependency of smartpool: install it to use this module.
"""

from __future__ import annotations

import importlib
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from typing import Any, Literal

import smartpool

# joblib ships no type information: its few names used here are typed at the use.
_joblib: Any = importlib.import_module("joblib")
_parallel: Any = importlib.import_module("joblib.parallel")
_Base: Any = _parallel.ParallelBackendBase

__all__ = ["SmartpoolBackend", "WorkerTraceback", "register"]

#: The name ``parallel_config(backend=...)`` knows this backend by.
NAME = "smartpool"
#: A batch is sized to take about this long (the process backend's chunk target): long enough
#: that the round trip of a batch (queue, worker, callback) is a small part of it.
BATCH_SECONDS = 0.02
#: A batch grows at most this many times over from one to the next (the cost may vary).
MAX_GROWTH = 2


def register() -> None:
    """Make ``backend="smartpool"`` available to joblib (calling it again does nothing more).

    Example:
        >>> import joblib, smartpool.joblib
        >>> smartpool.joblib.register()
        >>> with joblib.parallel_config(backend="smartpool", n_jobs=2):
        ...     joblib.Parallel()(joblib.delayed(abs)(x) for x in [-1, -2, -3])
        [1, 2, 3]
    """
    _parallel.register_parallel_backend(NAME, SmartpoolBackend)


class _RunBatch:
    """Runs one of joblib's batches (a ``BatchedCalls``: the batch's calls, in order).

    In a worker process it first limits the native thread pools (BLAS, OpenMP) to
    ``inner_threads``, once per process, as joblib's loky backend does with its workers'
    environment: ``workers`` processes each running a BLAS pool as large as the machine would
    oversubscribe it many times over. Threads share the caller's pools, which are left alone.
    """

    def __init__(self, inner_threads: int) -> None:
        self.inner_threads = inner_threads
        self.caller = os.getpid()

    def __call__(self, batch: Callable[[], Any]) -> Any:
        if os.getpid() != self.caller:
            _limit_native_threads(self.inner_threads)
        return batch()


_limited_to: int | None = None


def _limit_native_threads(threads: int) -> None:
    """In a worker process: at most ``threads`` threads in native pools, set once per process
    and limit (with threadpoolctl, a scikit-learn dependency, when it is installed)."""
    global _limited_to
    if _limited_to == threads:
        return
    _limited_to = threads
    try:
        threadpoolctl: Any = importlib.import_module("threadpoolctl")
    except ImportError:
        return
    threadpoolctl.threadpool_limits(limits=threads)


_END = object()


class _Stream:
    """One ``Parallel`` call's batches fed to one ``smartpool.imap``, results read on a thread.

    ``submit`` queues a batch and returns its Future; the reader thread settles the Futures as
    results come (in completion order), which runs joblib's callbacks, which submit more.
    """

    def __init__(
        self, fn: Callable[[Any], Any], backend: Literal["auto", "thread"], workers: int
    ) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._futures: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._count = 0
        self._results = smartpool.imap(
            fn,
            self._batches(),
            backend=backend,
            max_workers=workers,
            chunksize=1,
            ordered=False,
            with_index=True,
        )
        self._reader = threading.Thread(target=self._read, name="smartpool-joblib", daemon=True)
        self._reader.start()

    def _batches(self) -> Iterator[object]:
        return iter(self._queue.get, _END)

    def submit(self, batch: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self._futures[self._count] = future
            self._count += 1
        self._queue.put(batch)
        return future

    def _read(self) -> None:
        try:
            for index, value in self._results:
                with self._lock:
                    future = self._futures.pop(index)
                future.set_result(value)
        except BaseException as exc:  # the first failing batch's error, or a cancel
            self._fail(exc)
        self._fail(CancelledError())  # batches submitted after the input ended never ran

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            pending = list(self._futures.values())
            self._futures.clear()
        for future in pending:
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        """No more batches: the reader ends once the last result is in."""
        self._queue.put(_END)
        if threading.current_thread() is not self._reader:
            self._reader.join()

    def cancel(self) -> None:
        """Stop now: batches not started never start; worker processes running one are killed."""
        self._results.cancel()
        self._queue.put(_END)
        if threading.current_thread() is not self._reader:
            self._reader.join()


class SmartpoolBackend(_Base):  # type: ignore[misc]
    """joblib's interface to smartpool (see the module's docstring); made by joblib, one per
    ``parallel_config`` scope or ``Parallel`` object.

    Example:
        >>> from smartpool.joblib import SmartpoolBackend
        >>> backend = SmartpoolBackend()
        >>> backend.configure(n_jobs=2, prefer="threads")  # how many workers joblib may use
        2
    """

    supports_retrieve_callback = True
    #: ``require="sharedmem"`` is honoured here (threads only), not by falling back to joblib's.
    supports_sharedmem = True
    uses_threads = False

    def __init__(self, nesting_level: int | None = None, **kwargs: Any) -> None:
        _Base.__init__(self, nesting_level=nesting_level, **kwargs)
        self._stream: _Stream | None = None
        self._workers = 1
        self._backend: Literal["auto", "thread"] = "auto"
        self._hint: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None
        self._batch_size = 1

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """joblib's meaning: a negative count is relative to ``joblib.cpu_count()`` (-1: all)."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(int(_joblib.cpu_count()) + 1 + n_jobs, 1)
        return int(n_jobs)

    def configure(
        self,
        n_jobs: int | None = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **backend_kwargs: Any,
    ) -> int:
        self.parallel = parallel
        self._workers = self.effective_n_jobs(n_jobs)
        self._backend = "thread" if require == "sharedmem" else "auto"
        hints = {"threads": smartpool.io_bound, "processes": smartpool.cpu_bound}
        self._hint = None if require == "sharedmem" else hints.get(prefer or "")
        self._batch_size = 1
        return self._workers

    def compute_batch_size(self) -> int:
        """Tasks per batch when ``batch_size="auto"`` (joblib's default)."""
        return self._batch_size

    def batch_completed(self, batch_size: int, duration: float) -> None:
        """Size the next batches from how long this one took (``BATCH_SECONDS`` each)."""
        if batch_size <= 0 or duration <= 0:
            return
        ideal = max(1, int(BATCH_SECONDS * batch_size / duration))
        self._batch_size = min(ideal, MAX_GROWTH * self._batch_size)

    def start_call(self) -> None:
        # A new function for each call: smartpool keeps no decision from another call's batches.
        run: Callable[[Any], Any] = _RunBatch(max(1, (os.cpu_count() or 1) // self._workers))
        if self._hint is not None:
            run = self._hint(run)
        self._stream = _Stream(run, self._backend, self._workers)

    def stop_call(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def terminate(self) -> None:
        self.stop_call()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()
        if ensure_ready:
            self.start_call()

    def submit(self, func: Callable[[], Any], callback: Callable[[Any], Any] | None = None) -> Any:
        if self._stream is None:
            self.start_call()
        assert self._stream is not None
        future = self._stream.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        try:
            return out.result()
        except BaseException as exc:
            _keep_frames(exc)
            raise

    def get_nested_backend(self) -> tuple[Any, None]:
        """Inside a worker, ``Parallel`` runs inline: the workers already use the machine."""
        level: int = (self.nesting_level or 0) + 1
        return _parallel.SequentialBackend(nesting_level=level), None


class WorkerTraceback(Exception):
    """The frames where a batch failed, as text: joblib drops an error's traceback before it
    re-raises it, so they travel as its ``__cause__`` (as joblib's own loky backend does).

    Example:
        >>> import joblib, smartpool.joblib
        >>> smartpool.joblib.register()
        >>> try:
        ...     with joblib.parallel_config(backend="smartpool", n_jobs=2):
        ...         joblib.Parallel()(joblib.delayed(int)(x) for x in ["1", "x"])
        ... except ValueError as error:
        ...     print(type(error.__cause__).__name__, "Traceback" in str(error.__cause__))
        WorkerTraceback True
    """

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


def _keep_frames(exc: BaseException) -> None:
    if exc.__traceback__ is None or exc.__cause__ is not None:
        return
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__cause__ = WorkerTraceback(text)
