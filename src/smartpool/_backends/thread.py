"""The thread backend: a pool of daemon threads that can abandon a task that overran its timeout.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit, so one stuck task would hang
the interpreter, and it cannot give up on a task. Here each task may carry a deadline; a watchdog
thread fails the task's Future with :class:`~smartpool.TaskTimeoutError` at the deadline, retires
the thread running it (it exits once the call returns) and starts a replacement.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from .. import _context
from .._errors import TaskTimeoutError
from .._task import ChunkResult, run_chunk
from ._base import Backend, Call, settle

_ids = itertools.count(1)


@dataclass(order=True)
class _Work:
    deadline: float
    future: Future[ChunkResult] = field(compare=False)
    run: Callable[[], ChunkResult] = field(compare=False)
    start: int = field(compare=False, default=0)
    timeout: float | None = field(compare=False, default=None)
    thread: threading.Thread | None = field(compare=False, default=None)


class ThreadPool:
    """Up to ``workers`` daemon threads taking work from one queue, started on demand."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live: set[threading.Thread] = set()
        self._retired: set[threading.Thread] = set()
        self._nesting: set[threading.Thread] = set()
        self._idle = threading.Semaphore(0)
        self._deadlines: list[_Work] = []
        self._watch = threading.Condition(self._lock)
        self._watchdog: threading.Thread | None = None
        self._closed = False

    def submit(self, work: _Work) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a thread pool that was shut down")
            me = threading.current_thread()
            if me in self._live:
                self._nesting.add(me)
        self._queue.put(work)
        if not self._idle.acquire(blocking=False):
            self._grow()

    def _limit(self) -> int:
        """``workers``, plus one stand-in for each of our threads that waits on a nested call.

        A task that calls ``parallel_map`` on this same pool blocks its thread until the inner
        chunks finish; without a stand-in, a full pool would wait on itself forever.
        """
        return self.workers + len(self._nesting)

    def _grow(self) -> None:
        with self._lock:
            if self._closed or len(self._live) >= self._limit():
                return
            thread = threading.Thread(
                target=self._worker, name=f"smartpool-thread-{next(_ids)}", daemon=True
            )
            self._live.add(thread)
        thread.start()

    def _worker(self) -> None:
        me = threading.current_thread()
        while True:
            work = self._queue.get()
            if work is None:
                self._queue.put(None)  # let the other threads see it too
                return
            if not work.future.set_running_or_notify_cancel():
                self._idle.release()
                continue
            if work.timeout is not None:
                self._track(work, me)
            try:
                with _context.running_task():
                    settle(work.future, work.run())
            except BaseException as exc:  # pragma: no cover - run_chunk captures errors
                settle(work.future, error=exc)
            with self._lock:
                self._nesting.discard(me)
                if me in self._retired:  # abandoned after a timeout: a replacement took our place
                    self._retired.discard(me)
                    return
                if len(self._live) > self._limit():  # a stand-in that is no longer needed
                    self._live.discard(me)
                    return
            self._idle.release()

    def _track(self, work: _Work, thread: threading.Thread) -> None:
        assert work.timeout is not None
        work.deadline = time.monotonic() + work.timeout
        work.thread = thread
        with self._watch:
            heapq.heappush(self._deadlines, work)
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch_deadlines, name="smartpool-thread-watchdog", daemon=True
                )
                self._watchdog.start()
            self._watch.notify()

    def _watch_deadlines(self) -> None:
        while True:
            with self._watch:
                while self._deadlines and self._deadlines[0].future.done():
                    heapq.heappop(self._deadlines)
                if self._closed and not self._deadlines:
                    return
                if not self._deadlines:
                    self._watch.wait()
                    continue
                first = self._deadlines[0]
                left = first.deadline - time.monotonic()
                if left > 0:
                    self._watch.wait(left)
                    continue
                heapq.heappop(self._deadlines)
                expired = first
                if expired.thread is not None and expired.thread in self._live:
                    self._live.discard(expired.thread)
                    self._retired.add(expired.thread)
            error = TaskTimeoutError(
                f"item {expired.start} did not finish within timeout={expired.timeout} s on the "
                f"thread backend; its thread was abandoned (threads cannot be killed)",
                index=expired.start,
                timeout=expired.timeout,
            )
            if settle(expired.future, error=error):
                self._grow()

    def shutdown(self, wait: bool = True) -> None:
        with self._watch:
            self._closed = True
            threads = list(self._live)
            self._watch.notify()
        self._queue.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


class ThreadBackend(Backend):
    name = "thread"

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._pool = ThreadPool(workers)

    def submit(self, prepared: Call, items: Sequence[object], start: int) -> Future[ChunkResult]:
        future: Future[ChunkResult] = Future()
        fn, retry = prepared.fn, prepared.retry

        def run() -> ChunkResult:
            return run_chunk(fn, items, start, retry)

        self._pool.submit(_Work(0.0, future, run, start, prepared.timeout))
        return future

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)
