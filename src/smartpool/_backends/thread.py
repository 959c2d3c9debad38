"""The thread backend: a pool of daemon threads that can abandon a task it no longer waits for.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit, so one stuck task would hang
the interpreter, and it cannot give up on a task. Here each task may carry a deadline; a watchdog
thread fails the task's Future with :class:`~smartpool.TaskTimeoutError` at the deadline, retires
the thread running it (it exits once the call returns) and starts a replacement. A cancelled run's
running tasks are abandoned the same way.

Idle threads, queued work and threads blocked in a nested call on this same pool are counted
under one lock, so a task is never left queued while every thread waits on something else.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field

from .._errors import TaskTimeoutError
from .._work import blas, context
from .._work.limits import start_error
from .._work.setup import WorkerSetup, WorkerSlot
from .._work.task import Call, ChunkResult, describe_worker, run_chunk, settle
from .base import Backend

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
    """Up to ``workers`` daemon threads taking work from one queue, started on demand.

    Every piece of work put on the queue is matched with a thread that will take it: an idle
    thread (claimed at once), or a thread still to come back or to start. So a task is never
    left queued while every thread waits on something else.

    The matching takes no lock on its common paths (a submit that finds a thread idle or the
    pool full, a thread that goes back to the queue): idle threads and unclaimed work are
    tokens in two deques, whose ``append`` and ``popleft`` are atomic (also without the GIL). A
    lock per call, taken by the submitter and every finishing thread in turn, cost more than
    the rest of a trivial call. Starting, retiring and nesting threads take the lock.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        # One token per thread waiting on the queue with no work claimed for it, and one per
        # piece of work on the queue that no thread was claimed for. Never both at rest: each
        # side, after adding its own, cancels the pairs it finds (see _match).
        self._idle: deque[None] = deque()
        self._unclaimed: deque[None] = deque()
        self._live: set[threading.Thread] = set()
        self._retired: set[threading.Thread] = set()
        self._nesting: set[threading.Thread] = set()
        self._running: dict[Future[ChunkResult], _Work] = {}
        self._deadlines: list[_Work] = []
        self._watch = threading.Condition(self._lock)
        self._watchdog: threading.Thread | None = None
        self._closed = False

    @property
    def live_threads(self) -> int:
        with self._lock:
            return len(self._live)

    def submit(self, work: _Work) -> None:
        if self._closed:
            raise RuntimeError("cannot submit to a thread pool that was shut down")
        self._queue.put(work)
        me = threading.current_thread()
        nested = me in self._live  # a task of ours waits on a nested call: it needs a stand-in
        if nested:
            # Counted before any thread is claimed for the work: a thread claimed from idle may
            # take older work first, and must not then leave as a stand-in no longer needed
            # while this one waits (every thread would then wait on the queue's last items).
            with self._lock:
                self._nesting.add(me)
        if self._idle:  # (looked at first: in a burst none is, and an exception costs more)
            try:
                self._idle.popleft()  # an idle thread claimed: it takes the work
                return
            except IndexError:  # claimed by another submit meanwhile
                pass
        self._unclaimed.append(None)
        self._match()
        if not nested and len(self._live) >= self.workers + len(self._nesting):
            return  # the pool is full: a thread coming back takes the work
        with self._lock:
            thread = self._new_thread()
        if thread is not None:
            self._start(thread)

    def _match(self) -> None:
        """Cancel idle-thread and unclaimed-work tokens in pairs: a thread that went idle while
        work came in unclaimed takes that work from the queue. Each side calls this after adding
        its own token, so whoever acts last leaves no pair behind."""
        while self._idle and self._unclaimed:
            try:
                self._idle.popleft()
            except IndexError:
                return
            try:
                self._unclaimed.popleft()
            except IndexError:  # a thread came back for it meanwhile: this one stays idle
                self._idle.append(None)

    def _limit(self) -> int:
        """``workers``, plus one stand-in for each of our threads that waits on a nested call.

        A task that calls ``parallel_map`` on this same pool blocks its thread until the inner
        chunks finish; without a stand-in, a full pool would wait on itself forever.
        """
        return self.workers + len(self._nesting)

    def _new_thread(self) -> threading.Thread | None:
        """Under the lock: a thread to start if work is unclaimed and the limit allows one."""
        if self._closed or not self._unclaimed or len(self._live) >= self._limit():
            return None
        thread = threading.Thread(
            target=self._worker, name=f"smartpool-thread-{next(_ids)}", daemon=True
        )
        self._live.add(thread)
        return thread

    def _start(self, thread: threading.Thread) -> None:
        """Start ``thread``; if the system refuses (out of threads), forget it, and when no
        thread is left to take the queued work, fail that work with a clear error rather than
        leave it waiting. The next submit tries again."""
        try:
            thread.start()
        except RuntimeError as exc:
            error = start_error(exc, "a worker thread", self.workers)
            with self._lock:
                self._live.discard(thread)  # (the work it was for stays unclaimed)
                stranded = not self._live and not self._closed
            while stranded:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None and work.future.set_running_or_notify_cancel():
                    settle(work.future, error=error)
            if stranded:
                self._unclaimed.clear()

    def _wait_for_work(self) -> None:
        """This thread goes back to the queue, for unclaimed work or as idle."""
        if self._unclaimed:
            try:
                self._unclaimed.popleft()
                return
            except IndexError:  # claimed by another thread meanwhile
                pass
        self._idle.append(None)
        self._match()

    def _worker(self) -> None:
        me = threading.current_thread()
        context.mark_worker_thread()
        self._wait_for_work()
        while True:
            work = self._queue.get()
            if work is None:  # shut down
                return
            if self._closed:
                if not work.future.cancel():
                    settle(work.future, error=CancelledError())
                continue
            work.thread = me
            self._running[work.future] = work
            if work.future.set_running_or_notify_cancel() and (
                work.timeout is None or self._tracked(work)
            ):
                try:
                    settle(work.future, work.run())
                except BaseException as exc:  # pragma: no cover - run_chunk captures errors
                    settle(work.future, error=exc)
            self._running.pop(work.future, None)
            if self._nesting or self._retired or len(self._live) > self.workers:
                with self._lock:
                    self._nesting.discard(me)
                    if me in self._retired:  # abandoned: a replacement took our place
                        self._retired.discard(me)
                        return
                    if len(self._live) > self.workers + len(self._nesting):  # a stand-in no
                        self._live.discard(me)  # longer needed (see _limit)
                        return
            self._wait_for_work()
            del work  # its items and result are the caller's: hold none while waiting

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        """Queued work never starts; running work is abandoned, its thread replaced."""
        wanted = set(futures)
        with self._lock:
            running = [w for f, w in self._running.copy().items() if f in wanted]
            for work in running:
                self._retire(work)
            thread = self._new_thread()
        for future in wanted:
            if not future.cancel():  # running: abandoned
                settle(future, error=CancelledError())
        if thread is not None:
            self._start(thread)

    def _retire(self, work: _Work) -> None:
        """Under the lock: the thread running ``work`` no longer counts; it exits when done."""
        if work.thread is not None and work.thread in self._live:
            self._live.discard(work.thread)
            self._retired.add(work.thread)

    def _tracked(self, work: _Work) -> bool:
        """Watch ``work``'s deadline if it has one; False (and ``work`` failed) if the watchdog
        thread could not start."""
        if work.timeout is None:
            return True
        try:
            self._track(work)
        except RuntimeError as exc:
            settle(work.future, error=start_error(exc, "a watchdog thread", self.workers))
            return False
        return True

    def _track(self, work: _Work) -> None:
        assert work.timeout is not None
        work.deadline = time.monotonic() + work.timeout
        with self._watch:
            heapq.heappush(self._deadlines, work)
            if self._watchdog is None:
                watchdog = threading.Thread(
                    target=self._watch_deadlines, name="smartpool-thread-watchdog", daemon=True
                )
                watchdog.start()  # out of threads: RuntimeError, and the next task tries again
                self._watchdog = watchdog
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
                self._retire(expired)
            error = TaskTimeoutError(
                f"item {expired.start} did not finish within timeout={expired.timeout} s on the "
                f"thread backend; its thread was abandoned (threads cannot be killed)",
                index=expired.start,
                timeout=expired.timeout,
            )
            if settle(expired.future, error=error):
                with self._lock:
                    thread = self._new_thread()
                if thread is not None:
                    self._start(thread)

    def shutdown(self, wait: bool = True) -> None:
        """Stop: queued work is cancelled, idle threads exit, busy ones when their task ends.

        ``wait`` waits for the idle threads only: a task cannot be stopped, and one stuck for
        good must not hang the caller (or the interpreter's exit; the threads are daemons).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # (Workers add and remove their running work without the lock: a copy, at once.)
            busy = {work.thread for work in self._running.copy().values()}
            threads = [t for t in self._live if t not in busy]
            everyone = len(self._live) + len(self._retired)
            self._watch.notify()
        for _ in range(everyone):
            self._queue.put(None)
        if wait:
            for thread in threads:
                # One being started by a submit that raced with us gets None and exits.
                if thread is not threading.current_thread() and thread.is_alive():
                    thread.join()


class _Chunk:
    """One chunk's call, as the pool's work runs it: a single object rather than a closure (a
    submitted call is a few microseconds, and a closure's cells add objects for the garbage
    collector to walk while thousands of calls wait in the queue)."""

    __slots__ = ("items", "prepared", "setup", "slots", "start")

    def __init__(
        self,
        prepared: Call,
        items: Sequence[object],
        start: int,
        setup: WorkerSetup | None,
        slots: threading.local,
    ) -> None:
        self.prepared, self.items, self.start = prepared, items, start
        self.setup, self.slots = setup, slots

    def __call__(self) -> ChunkResult:
        if self.setup is None:
            return self._compute()
        slot: WorkerSlot | None = getattr(self.slots, "slot", None)
        if slot is None:
            slot = self.slots.slot = WorkerSlot(self.setup)
        with slot.running() as failed:
            if failed is not None:
                return ChunkResult(self.start, [], failed, 0.0, describe_worker())
            return self._compute()

    def _compute(self) -> ChunkResult:
        prepared = self.prepared
        fn, retry, cpu = prepared.fn, prepared.retry, prepared.measure_cpu
        if prepared.inner_threads is None:
            return run_chunk(fn, self.items, self.start, retry, measure_cpu=cpu)
        with blas.in_this_thread(prepared.inner_threads):  # OpenMP's limit is per thread
            return run_chunk(fn, self.items, self.start, retry, measure_cpu=cpu)


class ThreadBackend(Backend):
    """Chunks on a :class:`ThreadPool`; with a ``setup``, each thread runs its initializer
    before its first chunk and has its own ``worker_state()``."""

    name = "thread"

    def __init__(self, workers: int, setup: WorkerSetup | None = None) -> None:
        super().__init__(workers)
        self._pool = ThreadPool(workers)
        self._setup = setup
        self._slots = threading.local()  # each pool thread's WorkerSlot

    def submit(
        self,
        prepared: Call,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        future = Future() if future is None else future
        run = _Chunk(prepared, items, start, self._setup, self._slots)
        self._pool.submit(_Work(0.0, future, run, start, prepared.timeout))
        return future

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        self._pool.cancel(futures)

    def warm_workers(self) -> int:
        return self._pool.live_threads

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)
