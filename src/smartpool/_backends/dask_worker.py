"""The dask backend's side on a dask worker: the tasks that run a chunk there.

:func:`run_on_worker` (GIL-bound work): a dask worker keeps one smartpool process pool (one
child per worker thread, made on first use); a chunk's task hands its items to a child and
waits, looking every moment whether the caller cancelled it (then it kills the child, since dask
cannot stop a running task). :func:`run_on_threads` (I/O-bound work): the task leaves the dask
worker's thread pool (``secede``) and runs its items on its own thread, so that as many chunks
wait at once as the caller sends. Either way the outcome comes back as plain data, errors
pickled by smartpool (type, args, frames, notes).
"""

from __future__ import annotations

import atexit
import importlib
import io
import pickle
import threading
from concurrent.futures import CancelledError, Future, wait
from typing import Any

from .._cluster_sync import machine_identity
from .._errors import SerializationError
from .._process.pool import ProcessPool, Task
from .._transport.remote import dump_exception
from .._transport.serialize import dump_items, loads
from .._work import context
from .._work.task import NO_RETRY, ChunkResult, RetryPolicy, run_chunk

#: The outcome of a task as plain data: (kind, values, error, seconds, worker, cpu, retried).
Outcome = tuple[str, list[Any], bytes, float, str, float, int, float]

#: How often a task on a worker looks whether the caller cancelled it (to kill its child).
CANCEL_POLL_SECONDS = 0.1

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
    started_topic: str,
    origin: str,
) -> Outcome:
    """The dask task: run a chunk in a child process of this worker; the outcome as plain data.

    Returns ``(kind, values, error, seconds, worker, cpu_seconds, retried, queued_seconds)``:
    kind "done" (the error, if any, is the item's, pickled by smartpool) or "lost" (the child
    crashed or overran: the error is smartpool's :class:`WorkerCrashedError` or
    :class:`TaskTimeoutError`).
    ``origin`` is the caller's machine (:func:`machine_identity`): on another one, a function or
    items holding a primitive of the caller's shared memory fail with SerializationError. The
    task logs its start on ``started_topic``: the caller's Future runs from then (a cancel
    before that keeps the chunk from running), and so does its own deadline for a timeout (a
    stuck or lost worker never reports the overrun).
    """
    worker: Any = importlib.import_module("distributed").get_worker()
    where = f"dask worker {worker.address}"
    refused = refused_payload(origin, fn_bytes, items_bytes, shared)
    if refused is not None:
        return ("lost", [], refused, 0.0, where, 0.0, 0, 0.0)
    pool = _pool(start_method, max(1, int(worker.state.nthreads)))
    if shared:  # the items' large buffers came scattered: the child gets them in the stream
        items_bytes = dump_items(loads(items_bytes, shared), start)
    retry: RetryPolicy = loads(retry_bytes) if retry_bytes else NO_RETRY
    future: Future[ChunkResult] = Future()
    if _cancelled(worker, key):  # cancelled while it waited here (dask's cancel is not at once)
        return ("lost", [], dump_exception(CancelledError()), 0.0, where, 0.0, 0, 0.0)
    worker.log_event(started_topic, key)
    pool.submit(
        Task(future, fn_key, fn_bytes, items_bytes, start, n_items, retry, retry_bytes, timeout)
    )
    while not wait([future], timeout=CANCEL_POLL_SECONDS).done:
        if _cancelled(worker, key):
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


def _cancelled(worker: Any, key: str) -> bool:
    """Whether the caller cancelled this task (the worker has been told: it no longer holds it
    to run)."""
    state = worker.state.tasks.get(key)
    return state is None or state.state in ("cancelled", "released", "forgotten")


_functions: dict[int, Any] = {}
#: Functions kept loaded on a worker (by the key of their pickle), at most.
MAX_FUNCTIONS = 64


def run_on_threads(
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
    started_topic: str,
    origin: str,
) -> Outcome:
    """The dask task for I/O-bound work: run the chunk on this task's own thread, out of the dask
    worker's thread pool (``secede``: the worker starts the next task meanwhile). The arguments
    are :func:`run_on_worker`'s; a running item cannot be stopped here (the caller abandons it
    at its deadline, as on the thread backend)."""
    distributed: Any = importlib.import_module("distributed")
    worker: Any = distributed.get_worker()
    refused = refused_payload(origin, fn_bytes, items_bytes, shared)
    if refused is not None:
        return ("lost", [], refused, 0.0, f"dask worker {worker.address}", 0.0, 0, 0.0)
    if _cancelled(worker, key):
        where = f"dask worker {worker.address}"
        return ("lost", [], dump_exception(CancelledError()), 0.0, where, 0.0, 0, 0.0)
    worker.log_event(started_topic, key)
    distributed.secede()
    fn = _functions.get(fn_key)
    if fn is None:
        if len(_functions) >= MAX_FUNCTIONS:
            _functions.clear()
        fn = _functions[fn_key] = pickle.loads(fn_bytes)
    items = loads(items_bytes, shared)
    retry: RetryPolicy = loads(retry_bytes) if retry_bytes else NO_RETRY
    with context.running_task():  # a nested call runs inline
        result = run_chunk(fn, items, start, retry)
    error = b"" if result.error is None else dump_exception(result.error)
    where = f"dask worker {worker.address}, {result.worker}"
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


class _Refusing(pickle.Unpickler):
    """Unpickles a payload to find the caller's shared-memory primitives in it: each one found
    is a SerializationError naming it (they cannot be opened on another machine)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("smartpool._sync._base", "_rebuild"):
            return _refuse
        return super().find_class(module, name)


def _refuse(cls: type[Any], state: object) -> None:
    kind = cls.__name__
    raise SerializationError(
        f"a smartpool.{kind} made for the caller's machine was sent to a dask worker on another "
        f"machine ({machine_identity()!r}), which cannot open it: it lives in that machine's "
        f"shared memory. Make the {kind} inside the using() scope of this cluster: on a cluster "
        "that reaches other machines it is then cluster-wide (backed by dask's distributed "
        "primitives, see docs/dask.md)"
    )


def refused_payload(
    origin: str, fn_bytes: bytes, items_bytes: bytes, shared: list[bytes]
) -> bytes | None:
    """On a machine other than ``origin``: the pickled SerializationError for a payload holding
    one of the caller's shared-memory primitives, or None (also on the caller's machine)."""
    if origin == machine_identity():
        return None
    try:
        _Refusing(io.BytesIO(fn_bytes)).load()
        _Refusing(io.BytesIO(items_bytes), buffers=shared).load()
    except SerializationError as exc:
        return dump_exception(exc)
    except Exception:  # not this check's business: the run reports it as it would anyway
        return None
    return None
