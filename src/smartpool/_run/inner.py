"""A run's BLAS/OpenMP threads (``inner_threads=``), as its plan says.

Worker processes are told with each chunk (``Call.inner_threads``). On threads, the chunks
carry the limit too: each worker thread limits its OpenMP runtimes around each chunk (that
limit is per thread). The BLAS libraries' limit is process-wide, and set and put back from the
caller's thread (OpenBLAS does not always take a count set from another thread): the run holds
it from the chunk it sends to threads until the caller has taken the result of the last chunk
in flight, or the run ends (closed, failed, collected). So an ``imap`` whose every result was
taken leaves the libraries as they were, even if nobody closes it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from .._routing.planner import Plan
from .._work import blas
from .._work.task import Call


class InnerThreads:
    """What one run does to the BLAS/OpenMP threads; :meth:`close` undoes what is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: int | None = None  # the BLAS limit of chunks sent to threads now
        self._running: set[Future[Any]] = set()  # chunks on threads that hold the limit
        self._held: AbstractContextManager[Any] | None = None
        self._closed = False

    @staticmethod
    def call_for(call: Call, plan: Plan) -> Call:
        """``call`` with the plan's threads for its workers (processes or threads)."""
        if plan.backend not in ("process", "thread") or call.inner_threads == plan.inner_threads:
            return call
        if plan.inner_threads is not None and plan.backend == "process":
            blas.warn_if_unlimited()  # workers forked after NumPy loaded need threadpoolctl
        return replace(call, inner_threads=plan.inner_threads)

    def use(self, plan: Plan) -> None:
        """The run sends its next chunks on ``plan``."""
        self._threads = plan.inner_threads if plan.backend == "thread" else None

    def sent(self, chunk: Future[Any]) -> None:
        """In the caller: ``chunk`` is about to go to a thread; the BLAS limit holds until the
        caller has taken the results of it and of every other chunk of the run on threads."""
        threads = self._threads
        if threads is None or not blas.pool_library_loaded():
            return
        with self._lock:
            if self._closed:
                return
            if not self._running:
                self._held = blas.limited(threads)
                self._held.__enter__()
            self._running.add(chunk)

    def ended(self, chunk: Future[Any]) -> None:
        """In the caller: ``chunk``'s result was taken."""
        with self._lock:
            if chunk not in self._running:
                return
            self._running.discard(chunk)
            if self._running:
                return
            held, self._held = self._held, None
        if held is not None:
            held.__exit__(None, None, None)

    def close(self) -> None:
        """The run ended: let go of the limit, even for chunks abandoned still running."""
        with self._lock:
            self._closed = True
            self._running.clear()
            held, self._held = self._held, None
        if held is not None:
            held.__exit__(None, None, None)
