"""The dask backend: each chunk is one task on a Dask cluster, run in a child process there.

One chunk is one dask task with a unique key and ``pure=False`` (identical chunks are never
served a cached result). The task does not run the items on the dask worker's own thread: it
hands the chunk to a smartpool process pool kept in that worker (:func:`run_on_worker`), so
that a timeout really stops the item (its child is killed; dask cannot stop a running task), an
item that kills its process is a :class:`~smartpool.WorkerCrashedError` while the dask worker
lives on, retries happen per item with smartpool's backoff, and GIL-bound work does not starve
the worker's event loop. Errors travel inside the task's result through smartpool's own
remote-error path (type, args, frames, notes), never through dask's.

The function is pickled once per call; one pickled by reference is loaded on a worker before
any chunk is sent, so that a module missing there is a :class:`~smartpool.SerializationError`
naming it. A large pickled function is scattered once per call rather than sent with each task,
and so is each large out-of-band buffer (NumPy arrays) of items in a list or tuple: many items that
share one array ship it once.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import threading
import uuid
from collections.abc import Collection, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

from .. import _cluster, _config
from .._cluster_sync import carried, machine_identity
from .._errors import SerializationError, SmartpoolError, TaskTimeoutError, WorkerCrashedError
from .._transport.remote import add_note, load_exception
from .._transport.serialize import dump_function, dump_items, dumps
from .._work.task import NO_RETRY, Call, ChunkResult, RetryPolicy, settle
from .base import Backend
from .dask_worker import load_problem, run_on_threads, run_on_worker

#: A pickled function at least this large is scattered to the cluster once per call.
SCATTER_BYTES = 64 * 1024
#: The caller's own deadline for a task with ``timeout=`` gives the worker this long beyond the
#: items' budget to report the overrun itself (its child may take a while to start).
DEADLINE_GRACE_SECONDS = 5.0
#: Functions known to load on this cluster's workers, per backend (bounded).
MAX_CHECKED = 256


@dataclass(frozen=True)
class _Prepared:
    call: Call
    fn_key: int
    #: The pickled function, or the dask Future of its scattered copy.
    fn: Any
    retry_bytes: bytes
    start_method: str
    name: str
    #: The pickled function carries a cluster-wide primitive (it needs a dask worker's thread).
    carries: bool
    #: Large buffers of the call's items scattered so far: (id, size) -> (owner, dask Future).
    shared: dict[tuple[int, int], tuple[object, Any]] = field(default_factory=dict[Any, Any])
    lock: threading.Lock = field(default_factory=threading.Lock)

    def scattered(self, client: Any, large: Sequence[pickle.PickleBuffer]) -> list[Any]:
        """The dask Futures of ``large``, each scattered once per call (``hash=False``)."""
        found: list[Any] = []
        with self.lock:
            for buffer in large:
                view = buffer.raw()
                key = (id(view.obj), view.nbytes)
                known = self.shared.get(key)
                if known is None or known[0] is not view.obj:
                    known = self.shared[key] = (view.obj, client.scatter(bytes(view), hash=False))
                found.append(known[1])
        return found


@dataclass
class _InFlight:
    """One chunk's task, while it runs: our Future, dask's, and its items' time budget."""

    future: Future[ChunkResult]
    task: Any
    start: int
    n_items: int
    timeout: float | None
    #: Seconds from the task's start after which the caller stops waiting (with a timeout).
    budget: float | None


class DaskBackend(Backend):
    """Chunks as tasks on the attached cluster's ``client`` (see ``smartpool.using``).

    Every task reports its start on a topic of this backend's own (``Worker.log_event``): its
    Future then becomes RUNNING, as a process pool's does when a worker takes a chunk, so a
    Future cancelled before that really never runs (its task is cancelled on the cluster), and
    with ``timeout=`` the caller's own deadline runs from then.
    """

    name = "dask"
    #: The task that runs a chunk on a dask worker.
    _task = staticmethod(run_on_worker)

    def __init__(self, workers: int, client: Any) -> None:
        super().__init__(workers)
        self._client = client
        self._lock = threading.Lock()
        self._flying: dict[str, _InFlight] = {}  # by task key
        self._keys: dict[Future[ChunkResult], str] = {}
        #: Tasks whose start was reported before ``submit`` listed them (a busy caller).
        self._started_early: set[str] = set()
        self._checked: set[int] = set()
        self._topic: str | None = None
        self._origin = machine_identity()  # a worker elsewhere refuses this machine's primitives

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {"client": _cluster.require_client()}

    def prepare(self, call: Call) -> _Prepared:
        before = carried()
        fn_bytes = dump_function(call.portable)  # type: ignore[arg-type]  # raises before any work
        carries = carried() != before
        fn_key = int.from_bytes(hashlib.blake2b(fn_bytes, digest_size=7).digest(), "big")
        name = getattr(call.portable, "__qualname__", None) or type(call.portable).__name__
        if fn_key not in self._checked:
            self._check_loads(fn_bytes, name)
            if len(self._checked) >= MAX_CHECKED:
                self._checked.clear()
            self._checked.add(fn_key)
        retry_bytes = b"" if call.retry == NO_RETRY else dumps(call.retry)
        fn: Any = fn_bytes
        if len(fn_bytes) >= SCATTER_BYTES:
            fn = self._client.scatter(fn_bytes, hash=False)
        start_method = _config.start_method()
        return _Prepared(call, fn_key, fn, retry_bytes, start_method, name, carries)

    def _check_loads(self, fn_bytes: bytes, name: str) -> None:
        """Load the function on one worker: a module missing there fails the call now."""
        key = f"smartpool-check-{name}-{uuid.uuid4().hex}"
        problem: str | None = self._client.submit(load_problem, fn_bytes, key=key).result()
        if problem is not None:
            raise SerializationError(
                f"the function {name!r} cannot be loaded on the Dask workers: {problem}. A "
                "function pickled by reference (defined in a module) must be importable on "
                "every worker: install its module there, or ship it with client.upload_file()"
            )

    def submit(
        self,
        prepared: _Prepared,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        future = Future() if future is None else future
        # Large buffers of items made before the call (a list, a tuple) may be shared by many
        # items: each is scattered once, and tasks carry only its Future.
        large: list[pickle.PickleBuffer] | None = [] if prepared.call.stored_items else None
        before = carried()
        items_bytes = dump_items(items, start, large=large)
        # A cluster-wide primitive needs the worker's connection to the scheduler: a chunk that
        # carries one runs on the dask worker's thread (a child process has no such connection).
        run = run_on_threads if prepared.carries or carried() != before else self._task
        shared = prepared.scattered(self._client, large) if large else []
        key = f"smartpool-{prepared.name}-{start}-{uuid.uuid4().hex}"
        timeout = prepared.call.timeout
        budget = None if timeout is None else _budget(prepared.call.retry, timeout, len(items))
        topic = self._started_topic()
        task: Any = self._client.submit(
            run,
            key,
            prepared.fn_key,
            prepared.fn,
            items_bytes,
            start,
            len(items),
            prepared.retry_bytes,
            timeout,
            prepared.start_method,
            shared,
            topic,
            self._origin,
            key=key,
            pure=False,
        )
        with self._lock:
            self._flying[key] = _InFlight(future, task, start, len(items), timeout, budget)
            self._keys[future] = key
            early = key in self._started_early
            self._started_early.discard(key)
        if early:  # it started before it was listed here: as _started would have done
            self._started((0.0, key))

        def finish(_: object) -> None:
            self._finish(key)

        task.add_done_callback(finish)
        future.add_done_callback(self._dropped)  # cancelled before it started: cancel the task
        return future

    def _take(self, key: str) -> _InFlight | None:
        """Under no lock: the task ``key`` leaves the flight list (None if it left already)."""
        with self._lock:
            flying = self._flying.pop(key, None)
            if flying is not None:
                self._keys.pop(flying.future, None)
        return flying

    def _finish(self, key: str) -> None:
        """On dask's callback thread: complete our Future from the finished task."""
        flying = self._take(key)
        if flying is None:  # cancelled, or past the caller's deadline
            return
        task, start = flying.task, flying.start
        result: ChunkResult | None = None
        error: BaseException | None = None
        try:
            if task.status == "finished":
                result, error = _unpack(task.result(), start)
            elif task.status == "cancelled":
                error = CancelledError()
            elif task.status == "lost":  # its result was on a worker that died before we read it
                items = f"item {start}" if flying.n_items == 1 else f"items {start}.."
                error = WorkerCrashedError(
                    f"the dask worker that had {items} died holding its result, before it was "
                    "read; the cluster does not compute it again (allowed-failures 0 on "
                    "clusters smartpool starts)",
                    index=start,
                )
            else:
                error = _task_failure(task.exception(), start, flying.n_items)
        except BaseException as exc:  # the client closed under us, say
            error = exc
        if self._running(flying.future):
            settle(flying.future, result, error)

    def _running(self, future: Future[ChunkResult]) -> bool:
        """Mark ``future`` RUNNING if it is not yet; False if it was cancelled (or done)."""
        with self._lock:
            if future.running():
                return True
            try:
                return future.set_running_or_notify_cancel()
            except RuntimeError:  # already done
                return False

    def _dropped(self, future: Future[ChunkResult]) -> None:
        if future.cancelled():
            self.cancel([future])

    def _started_topic(self) -> str:
        """The topic this backend's tasks report their start on (subscribed once)."""
        with self._lock:
            if self._topic is None:
                self._topic = f"smartpool-started-{uuid.uuid4().hex}"
                self._client.subscribe_topic(self._topic, self._started)
            return self._topic

    def _started(self, event: tuple[float, Any]) -> None:
        """On the client's event loop: a task started on a worker. Its Future runs now (or, if
        it was cancelled, the task is); with a timeout, the caller's deadline is armed."""
        key = str(event[1])
        with self._lock:
            flying = self._flying.get(key)
            if flying is None:
                if len(self._started_early) > 4096:  # starts of tasks that had ended already
                    self._started_early.clear()
                self._started_early.add(key)
                return
        if not self._running(flying.future):
            self._off_loop(self.cancel, [flying.future])
        elif flying.budget is not None:
            self._client.loop.add_callback(self._arm, flying.budget, key)

    def _arm(self, budget: float, key: str) -> None:
        """On the client's event loop: the caller's deadline for a timed task that started."""
        asyncio.get_running_loop().call_later(budget, self._expire, key)

    def _expire(self, key: str) -> None:
        """The caller's deadline of a timed task passed and the worker has not reported (it is
        stuck, or lost): the chunk fails with :class:`TaskTimeoutError` and the task is
        cancelled (which kills its child, if the worker ever looks again)."""
        flying = self._take(key)
        if flying is None:  # it ended in time
            return
        error = TaskTimeoutError(
            f"item {flying.start} ran longer than timeout={flying.timeout} s, and its dask "
            f"worker did not report back within {flying.budget:.3g} s of the item's start: the "
            "caller stopped waiting (the worker is stuck or lost) and cancelled the task",
            index=flying.start,
            timeout=flying.timeout,
        )
        settle(flying.future, error=error)
        self._off_loop(self._cancel_tasks, [flying.task])

    @staticmethod
    def _off_loop(action: Any, arg: list[Any]) -> None:
        """Run ``action(arg)`` on a thread of its own: the client's calls wait on its event loop,
        which must not be the thread that waits."""
        threading.Thread(target=action, args=(arg,), daemon=True).start()

    def _cancel_tasks(self, tasks: list[Any]) -> None:
        try:
            self._client.cancel(tasks)
        except Exception:  # the client is closed: nothing runs for it any more
            pass

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        """Queued tasks never start; a running one's child process is killed by its task."""
        with self._lock:
            keys = [self._keys.get(f) for f in futures]
        taken = [self._take(key) for key in keys if key is not None]
        tasks = [flying.task for flying in taken if flying is not None]
        if tasks:
            self._cancel_tasks(tasks)
        super().cancel(futures)

    def warm_workers(self) -> int:
        return self.workers  # the cluster runs already

    def shutdown(self, wait: bool = True) -> None:
        """Cancel this backend's tasks and stop listening to their starts (the cluster belongs
        to whoever attached it)."""
        with self._lock:
            futures = list(self._keys)
            topic, self._topic = self._topic, None
        self.cancel(futures)
        if topic is not None:
            try:
                self._client.unsubscribe_topic(topic)
            except Exception:  # the client is closed already
                pass


class DaskThreadBackend(DaskBackend):
    """I/O-bound work on the cluster: each chunk's task runs its items on a thread of the dask
    worker's process, out of the worker's thread pool, so that many chunks wait at once (the
    planner's choice for work that waits or releases the GIL; GIL-bound work goes to child
    processes, where it cannot starve the worker's event loop). Nothing here can be killed: a
    timeout ends the caller's wait and abandons the item, as on the thread backend."""

    name = "dask-thread"
    _task = staticmethod(run_on_threads)


def _budget(retry: RetryPolicy, timeout: float, n_items: int) -> float:
    """How long a task of ``n_items`` items with ``timeout=`` may run, every retry and backoff
    included, before the caller stops waiting for the worker to report (plus a grace)."""
    backoff = sum(retry.delay(attempt) for attempt in range(1, retry.retries + 1))
    return n_items * ((retry.retries + 1) * timeout + backoff) + DEADLINE_GRACE_SECONDS


def _unpack(
    payload: tuple[Any, ...], start: int
) -> tuple[ChunkResult | None, BaseException | None]:
    kind, values, error_bytes, seconds, worker, cpu_seconds, retried, queued = payload
    if kind == "lost":  # the child died or overran: the chunk fails, as on the process backend
        lost = load_exception(error_bytes)
        add_note(lost, f"smartpool: on the dask backend ({worker})")
        return None, lost
    error = load_exception(error_bytes) if error_bytes else None
    return ChunkResult(start, values, error, seconds, worker, cpu_seconds, retried, queued), None


def _task_failure(exc: BaseException | None, start: int, n_items: int) -> BaseException:
    """What a failed dask task means to the caller: a dead dask worker is a crash."""
    items = f"item {start}" if n_items == 1 else f"items {start}..{start + n_items - 1}"
    if type(exc).__name__ == "KilledWorker":
        # dask blames every task running or queued on the dead worker (distributed#5234).
        return WorkerCrashedError(
            f"the dask worker that had {items} (running or queued there) died ({exc}); the "
            "cluster does not rerun it (allowed-failures 0 on clusters smartpool starts)",
            index=start,
        )
    failure = exc if exc is not None else SmartpoolError(f"the dask task running {items} failed")
    add_note(failure, f"smartpool: the dask task running {items} failed on the cluster")
    return failure
