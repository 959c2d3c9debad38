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

import atexit
import hashlib
import importlib
import pickle
import threading
import uuid
from collections.abc import Collection, Sequence
from concurrent.futures import CancelledError, Future, wait
from dataclasses import dataclass, field
from typing import Any

from .. import _cluster, _config
from .._errors import SerializationError, SmartpoolError, WorkerCrashedError
from .._process.pool import ProcessPool, Task
from .._transport.remote import add_note, dump_exception, load_exception
from .._transport.serialize import dump_function, dump_items, dumps, loads
from .._work.task import NO_RETRY, Call, ChunkResult, RetryPolicy, settle
from .base import Backend

#: A pickled function at least this large is scattered to the cluster once per call.
SCATTER_BYTES = 64 * 1024
#: How often a task on a worker looks whether the caller cancelled it (to kill its child).
CANCEL_POLL_SECONDS = 0.1
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


class DaskBackend(Backend):
    """Chunks as tasks on the attached cluster's ``client`` (see ``smartpool.using``)."""

    name = "dask"

    def __init__(self, workers: int, client: Any) -> None:
        super().__init__(workers)
        self._client = client
        self._lock = threading.Lock()
        self._tasks: dict[Future[ChunkResult], Any] = {}  # ours -> dask's, while in flight
        self._checked: set[int] = set()

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {"client": _cluster.require_client()}

    def prepare(self, call: Call) -> _Prepared:
        fn_bytes = dump_function(call.portable)  # type: ignore[arg-type]  # raises before any work
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
        return _Prepared(call, fn_key, fn, retry_bytes, _config.start_method(), name)

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
        items_bytes = dump_items(items, start, large=large)
        shared = prepared.scattered(self._client, large) if large else []
        key = f"smartpool-{prepared.name}-{start}-{uuid.uuid4().hex}"
        task: Any = self._client.submit(
            run_on_worker,
            key,
            prepared.fn_key,
            prepared.fn,
            items_bytes,
            start,
            len(items),
            prepared.retry_bytes,
            prepared.call.timeout,
            prepared.start_method,
            shared,
            key=key,
            pure=False,
        )
        with self._lock:
            self._tasks[future] = task
        n_items = len(items)

        def finish(done: Any) -> None:
            self._finish(future, done, start, n_items)

        task.add_done_callback(finish)
        return future

    def _finish(self, future: Future[ChunkResult], task: Any, start: int, n_items: int) -> None:
        """On dask's callback thread: complete ``future`` from the finished ``task``."""
        with self._lock:
            self._tasks.pop(future, None)
        if future.done():  # cancelled
            return
        result: ChunkResult | None = None
        error: BaseException | None = None
        try:
            if task.status == "finished":
                result, error = _unpack(task.result(), start)
            elif task.status == "cancelled":
                error = CancelledError()
            else:
                error = _task_failure(task.exception(), start, n_items)
        except BaseException as exc:  # the client closed under us, say
            error = exc
        if future.set_running_or_notify_cancel():
            settle(future, result, error)

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        """Queued tasks never start; a running one's child process is killed by its task."""
        with self._lock:
            tasks = [self._tasks.pop(f) for f in futures if f in self._tasks]
        if tasks:
            try:
                self._client.cancel(tasks)
            except Exception:  # the client is closed: nothing runs for it any more
                pass
        super().cancel(futures)

    def warm_workers(self) -> int:
        return self.workers  # the cluster runs already

    def shutdown(self, wait: bool = True) -> None:
        """Cancel this backend's tasks (the cluster belongs to whoever attached it)."""
        with self._lock:
            futures = list(self._tasks)
        self.cancel(futures)


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


# -- on the dask worker ------------------------------------------------------------------------

_pools: dict[str, ProcessPool] = {}
_pools_lock = threading.Lock()


def load_problem(fn_bytes: bytes) -> str | None:
    """On a worker: why the pickled function does not load there, or None if it does."""
    try:
        pickle.loads(fn_bytes)
    except ModuleNotFoundError as exc:
        return f"module {exc.name!r} is not importable there ({exc})"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _pool(start_method: str, workers: int) -> ProcessPool:
    """This dask worker's smartpool pool (one child per worker thread), made on first use."""
    with _pools_lock:
        pool = _pools.get(start_method)
        if pool is None or pool.closed:
            if not _pools:
                atexit.register(_close_pools)
            pool = _pools[start_method] = ProcessPool(workers, start_method)
        return pool


def _close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=False)


def run_on_worker(
    key: str,
    fn_key: int,
    fn_bytes: bytes,
    items_bytes: bytes,
    start: int,
    n_items: int,
    retry_bytes: bytes,
    timeout: float | None,
    start_method: str,
    shared: list[bytes],
) -> tuple[str, list[Any], bytes, float, str, float, int, float]:
    """The dask task: run a chunk in a child process of this worker; the outcome as plain data.

    Returns ``(kind, values, error, seconds, worker, cpu_seconds, retried, queued_seconds)``:
    kind "done" (the error, if any, is the item's, pickled by smartpool) or "lost" (the child
    crashed or overran: the error is smartpool's :class:`WorkerCrashedError` or
    :class:`TaskTimeoutError`).
    """
    distributed: Any = importlib.import_module("distributed")
    worker: Any = distributed.get_worker()
    pool = _pool(start_method, max(1, int(worker.state.nthreads)))
    if shared:  # the items' large buffers came scattered: the child gets them in the stream
        items_bytes = dump_items(loads(items_bytes, shared), start)
    retry: RetryPolicy = loads(retry_bytes) if retry_bytes else NO_RETRY
    future: Future[ChunkResult] = Future()
    pool.submit(
        Task(future, fn_key, fn_bytes, items_bytes, start, n_items, retry, retry_bytes, timeout)
    )
    where = f"dask worker {worker.address}"
    while not wait([future], timeout=CANCEL_POLL_SECONDS).done:
        state = worker.state.tasks.get(key)
        if state is None or state.state in ("cancelled", "released", "forgotten"):
            pool.cancel([future])  # the caller cancelled: stop the child
            return ("lost", [], dump_exception(CancelledError()), 0.0, where, 0.0, 0, 0.0)
    try:
        result = future.result()
    except BaseException as exc:  # the child crashed or overran (or the pool failed)
        return ("lost", [], dump_exception(exc), 0.0, where, 0.0, 0, 0.0)
    error = b"" if result.error is None else dump_exception(result.error)
    where = f"{where}, {result.worker}"
    return (
        "done",
        result.values,
        error,
        result.seconds,
        where,
        result.cpu_seconds,
        result.retried,
        result.queued_seconds,
    )
