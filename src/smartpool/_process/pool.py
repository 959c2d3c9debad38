"""A pool of worker processes that survives crashes and enforces per-task deadlines.

Unlike ``concurrent.futures.ProcessPoolExecutor``, which marks the whole pool broken when one worker
dies, each worker here has its own socket and runs one chunk at a time, so the pool always knows who
runs what: a dead worker fails only its own chunk (with the exit code or signal), an overrunning one
is killed, and a replacement is started when there is work for it.

Chunks are handed straight to an idle worker by whoever submits them; one manager thread waits on
every worker's socket, completes Futures, and hands the next queued chunk to the worker that
just finished. A chunk whose worker crashed or overran is run again on a fresh worker when the
call's ``retry_on`` names that error (see :meth:`RetryPolicy.covers_lost_worker`). Should the
manager itself fail, every pending Future fails with the reason and the pool closes, so a caller
never waits forever; the backend then starts a new pool.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Collection
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field

from .._errors import SmartpoolError
from .._transport.remote import add_note
from .._work.limits import start_error
from .._work.task import ChunkResult, settle
from . import crash_reports, protocol
from .channel import wait
from .descriptors import close_owned, owned_pipe
from .forkserver import ensure_server
from .launcher import WorkerProcess, start_worker
from .protocol import FUNCTION_CACHE_SIZE
from .tasks import Task as Task  # what submit takes: the backend builds it
from .tasks import loss_error, settle_task

logger = logging.getLogger("smartpool")

#: How long ``cancel`` waits for the manager to kill the workers of cancelled chunks.
KILL_WAIT_SECONDS = 10.0


@dataclass
class _Worker:
    proc: WorkerProcess
    task: Task | None = None
    deadline: float | None = None
    fn_keys: deque[int] = field(default_factory=deque[int])
    #: Items this worker ran (counted against ``max_tasks``).
    items_done: int = 0


class ProcessPool:
    """Up to ``workers`` worker processes started with ``method``, replaced when they die.

    ``setup`` (a pickled WorkerSetup) goes to each worker when it starts. A worker runs at most
    ``max_tasks`` items: one that has, or whose next chunk would take it past them, is let go
    (its socket closed: it exits) and replaced when work waits.
    """

    def __init__(
        self, workers: int, method: str, setup: bytes = b"", max_tasks: int | None = None
    ) -> None:
        self.workers = workers
        self.method = method
        self.setup, self.max_tasks = setup, max_tasks
        self._lock = threading.Lock()
        self._all: list[_Worker] = []
        self._queue: deque[Task] = deque()
        try:
            self._wake_r, self._wake_w = owned_pipe()
        except OSError as exc:
            raise start_error(exc, "a process pool", workers) from exc
        self._manager: threading.Thread | None = None
        self._closed = False
        self._kills: list[threading.Event] = []  # set once the cancelled chunks' workers died
        if method == "forkserver":
            # Now, before this pool starts its manager thread: a caller that is still
            # single-threaded gets its fork server by a cheap fork instead of a new interpreter.
            try:
                ensure_server()
            except OSError:  # out of descriptors or processes: the first worker says so
                pass

    @property
    def live_workers(self) -> int:
        with self._lock:
            return len(self._all)

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, task: Task) -> None:
        failed: Exception | None = None
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a process pool that was shut down")
            worker = spent = self._idle_worker()
            if worker is not None and self._fits(worker, task.n_items):
                spent = None
            elif spent is not None:  # it would run more than max_tasks items: replace it
                self._all.remove(spent)
                worker = None
            if worker is None:
                self._queue.append(task)
                start_new = len(self._all) < self.workers
            elif task.future.set_running_or_notify_cancel():
                start_new = False
                self._assign(worker, task)
            else:
                return
            if self._manager is None:
                manager = threading.Thread(
                    target=self._manage, name="smartpool-process-manager", daemon=True
                )
                try:
                    manager.start()
                except RuntimeError as exc:  # out of threads: the next submit tries again
                    start_new = False
                    failed = start_error(exc, "the process pool's manager thread", self.workers)
                else:
                    self._manager = manager
        if spent is not None:
            self._let_go(spent)
        if failed is not None:
            self._fail_queued(failed)
        elif worker is not None:
            self._send(worker)
            if task.timeout is not None:  # the manager waits for no deadline yet: wake it
                os.write(self._wake_w, b"d")
        elif start_new:
            self._start_worker()

    def _fits(self, worker: _Worker, n_items: int) -> bool:
        """Whether ``worker`` may run ``n_items`` more items (``max_tasks``)."""
        return self.max_tasks is None or worker.items_done + n_items <= self.max_tasks

    def _let_go(self, worker: _Worker) -> None:
        """Close the socket of a worker taken out of the pool, idle: it exits, and is reaped."""
        worker.proc.close()
        worker.proc.exitcode()

    def _idle_worker(self) -> _Worker | None:
        for worker in self._all:
            if worker.task is None:
                return worker
        return None

    def _assign(self, worker: _Worker, task: Task) -> None:
        worker.task = task
        worker.deadline = None if task.timeout is None else time.monotonic() + task.timeout

    def _start_worker(self) -> None:
        try:
            proc = start_worker(self.method, self.setup)
        except Exception as exc:  # out of descriptors or processes, say: fail what waited for it
            self._fail_queued(start_error(exc, "a worker process", self.workers))
            return
        worker = _Worker(proc)
        with self._lock:
            if self._closed:
                proc.kill()
                proc.close()
                return
            self._all.append(worker)
            task = self._next_task()
            if task is not None:
                self._assign(worker, task)
        os.write(self._wake_w, b"w")
        if task is not None:
            self._send(worker)

    def _fail_queued(self, error: Exception) -> None:
        """No worker could start: fail the queued chunks with ``error`` rather than leave them
        waiting; the pool stays as it is, and the next chunk submitted tries again."""
        with self._lock:
            doomed: list[Task] = []
            while (task := self._next_task()) is not None:
                doomed.append(task)
        for task in doomed:
            settle_task(task, error=error)

    def _next_task(self) -> Task | None:
        while self._queue:
            task = self._queue.popleft()
            if task.attempts > 1:  # a retry: its Future has been running since the first attempt
                if not task.future.done():
                    return task
            elif task.future.set_running_or_notify_cancel():
                return task
        return None

    def _send(self, worker: _Worker) -> None:
        task = worker.task
        assert task is not None
        has_fn = task.fn_key not in worker.fn_keys
        if has_fn:
            worker.fn_keys.append(task.fn_key)
            while len(worker.fn_keys) > FUNCTION_CACHE_SIZE:
                worker.fn_keys.popleft()
        try:
            worker.proc.conn.send_bytes(protocol.encode_chunk(task.chunk(has_fn)))
        except OSError:
            pass  # the worker died: the manager sees its socket close and reports the crash

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        """Stop the chunks of a cancelled run: queued ones never start; the workers running the
        others are killed (by the manager thread, which owns every worker's state) and replaced
        when work waits. Each Future ends cancelled or failed with ``CancelledError`` at once;
        this returns once the workers are dead (their sockets closed), unless called from the
        manager thread itself (a Future's callback), which kills them right after."""
        wanted = set(futures)
        killed = threading.Event()
        with self._lock:
            queued = [t for t in self._queue if t.future in wanted]
            for task in queued:
                self._queue.remove(task)
            running = [w.task for w in self._all if w.task is not None and w.task.future in wanted]
            for task in running:
                task.cancelled = True
            closed = self._closed
            if running and not closed:
                self._kills.append(killed)
        for task in queued:
            task.future.cancel()  # fails for a retry (running since its first attempt)
            settle_task(task, error=CancelledError())
        for task in running:
            settle(task.future, error=CancelledError())  # its files wait until the worker is dead
        if running and not closed:
            os.write(self._wake_w, b"c")
            if threading.current_thread() is not self._manager:
                killed.wait(KILL_WAIT_SECONDS)

    # -- managing ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once shut down (or broken): submit to a new pool instead."""
        return self._closed

    def _manage(self) -> None:
        try:
            self._manage_loop()
        except BaseException as exc:  # a bug in smartpool must fail the calls, never hang them
            logger.exception("smartpool's process pool manager failed; closing the pool")
            self._break(exc)

    def _manage_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                conns = {w.proc.conn: w for w in self._all}
                # A worker's exit is seen by its sentinel too: its socket stays open while a
                # child it forked holds the other end.
                exits = {w.proc.sentinel: w for w in self._all if w.proc.sentinel is not None}
                deadlines = [w.deadline for w in self._all if w.deadline is not None]
            timeout = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
            ready = wait([*conns, *exits, self._wake_r], timeout)
            for obj in ready:
                if obj == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                if isinstance(obj, int):  # a sentinel: the next round reads its socket to the end
                    exits[obj].proc.exited()
                    continue
                worker = conns[obj]
                try:
                    data = worker.proc.conn.recv_bytes()
                except (EOFError, OSError):
                    self._lost(worker, worker.proc.exitcode(), timed_out=False)
                    continue
                reply = protocol.decode_reply(data)
                if isinstance(reply, int):  # steps reported while the chunk runs
                    self._reported(worker, reply)
                else:
                    self._finished(worker, reply)
            self._expire_deadlines()
            self._kill_cancelled()

    def _finished(self, worker: _Worker, reply: protocol.Reply) -> None:
        """A worker replied: settle its task with the result, and give it the next one (or, past
        ``max_tasks`` items, let it go and start a replacement if work waits)."""
        task = worker.task
        assert task is not None, "a worker replied without a task"
        result = protocol.result_of(reply, task.start, task.describe_items)
        following = None
        with self._lock:
            if worker not in self._all:  # cancelled and killed meanwhile
                return
            task = worker.task
            worker.task, worker.deadline = None, None
            worker.items_done += 0 if task is None else task.n_items
            retire = not self._fits(worker, self._queue[0].n_items if self._queue else 1)
            if retire:
                self._all.remove(worker)
            else:
                following = self._next_task()
                if following is not None:
                    self._assign(worker, following)
            replace = retire and bool(self._queue) and not self._closed
        if retire:
            self._let_go(worker)
        if task is not None:
            settle_task(task, result, reusable=reply.let_go)
        if following is not None:
            self._send(worker)
        if replace:
            self._start_worker()

    def _reported(self, worker: _Worker, steps: int) -> None:
        task = worker.task
        if task is not None and task.report is not None and not task.cancelled:
            task.report(steps)

    def _expire_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [w for w in self._all if w.deadline is not None and w.deadline <= now]
        for worker in late:
            self._lost(worker, worker.proc.kill(), timed_out=True)

    def _kill_cancelled(self) -> None:
        with self._lock:
            doomed = [w for w in self._all if w.task is not None and w.task.cancelled]
            kills, self._kills = self._kills, []
        for worker in doomed:
            self._lost(worker, worker.proc.kill(), timed_out=False)
        for killed in kills:
            killed.set()

    def _lost(self, worker: _Worker, exitcode: int | None, *, timed_out: bool) -> None:
        """A worker died or was killed: fail or retry its chunk, replace it if work waits."""
        task = worker.task
        error: BaseException | None = None
        if task is not None:
            error = (
                CancelledError()
                if task.cancelled
                else loss_error(task, worker.proc.pid, exitcode, timed_out)
            )
        if error is not None and not timed_out and not (task is not None and task.cancelled):
            crash_reports.add_to(error, worker.proc.report)
        with self._lock:
            if worker not in self._all:
                return
            self._all.remove(worker)
            retry = (
                task is not None
                and error is not None
                and not self._closed
                and not task.cancelled
                and task.attempts <= task.retry.retries
                and task.retry.covers_lost_worker(error)
            )
            if retry:
                assert task is not None
                task.attempts += 1
                self._queue.appendleft(task)
            replace = bool(self._queue) and not self._closed
        worker.proc.close()
        if exitcode is not None and exitcode < 0:  # killed: it could not let go of shared objects
            sweep_shared_objects()
        if task is not None and error is not None and not retry:
            if task.attempts > 1:
                add_note(error, task.retry.failed_after(task.attempts))
            settle_task(task, error=error)
        if replace:
            self._start_worker()

    # -- stopping ------------------------------------------------------------------------------

    def _break(self, cause: BaseException) -> None:
        """Fail every chunk with ``cause`` and close: the manager can no longer serve them."""
        error = SmartpoolError(
            f"smartpool's process pool failed ({type(cause).__name__}: {cause}); the call was "
            "stopped and the next call starts a new pool"
        )
        error.__cause__ = cause
        self.shutdown(wait=False, kill=True, error=error)

    def shutdown(
        self, wait: bool = True, kill: bool = False, error: Exception | None = None
    ) -> None:
        """Stop the workers; queued chunks are cancelled, or failed with ``error`` if given."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._all = self._all, []
            queued, self._queue = list(self._queue), deque()
            kills, self._kills = self._kills, []
        os.write(self._wake_w, b"x")
        if self._manager is not None and self._manager is not threading.current_thread():
            self._manager.join()
        for task in queued:
            if error is None:
                task.future.cancel()
            if not task.future.cancelled():  # a retry (already running), or failing on purpose
                settle_task(task, error=error or loss_error(task, None, None, False))
        for worker in workers:
            if worker.task is not None or kill:
                worker.proc.kill()
                if worker.task is not None:
                    lost = error or loss_error(worker.task, None, None, False)
                    settle_task(worker.task, error=lost)
            worker.proc.close()
        for killed in kills:  # the workers of cancelled chunks are dead too
            killed.set()
        if wait:
            for worker in workers:
                worker.proc.exitcode()
        close_owned(self._wake_r, self._wake_w)


def sweep_shared_objects() -> None:
    """Remove shared objects (``smartpool.Lock`` & co.) left behind by workers that died."""
    shm = sys.modules.get("smartpool._sync._shm")
    if shm is not None:
        shm.sweep_orphans()
