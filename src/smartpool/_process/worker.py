"""The loop a worker process runs: receive a chunk, run it, send the outcome back.

Messages on the worker's socket (length-prefixed, see ``channel``):

* parent -> worker, once: ``init`` = pickle of ``{"sys_path": [...]}``, then one byte saying
  where faulthandler reports go, with the report file attached (see ``crash_reports``)
* parent -> worker, per chunk: pickle of
  ``(fn_key, fn_bytes, start, retry_bytes, items_bytes, buffer_paths)``,
  where ``fn_bytes`` is empty when the worker already has that function (workers cache them by
  key) and ``retry_bytes`` (the call's RetryPolicy, by value) is empty when there are no retries.
* worker -> parent, per chunk: pickle of
  ``(seconds, cpu_seconds, worker, values_bytes, error_bytes, retried, let_go)``, where
  ``retried`` counts failed attempts that were run again and ``let_go`` says that nothing in
  the worker uses the chunk's shared-memory files any more (they may be reused).

One message each way per chunk: every write wakes the other side, which costs far more than
copying the bytes into one buffer.

A worker ignores SIGINT (the caller handles Ctrl-C and kills workers) and exits as soon as its
parent goes away, even in the middle of a task, so nothing is ever orphaned. It reseeds ``random``
(and NumPy's global generator, if imported) on start: forked workers would otherwise all
continue the random sequence of the process they were forked from.
"""

from __future__ import annotations

import os
import pickle
import select
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

from .._errors import SerializationError
from .._transport.remote import add_note, dump_exception
from .._transport.serialize import dump_items, loads
from .._work import context
from .._work.task import NO_RETRY, ChunkResult, RetryPolicy, describe_worker, run_chunk
from . import crash_reports
from .channel import Channel, keep_from_children
from .mappings import IDLE_SWEEP_SECONDS, Mappings
from .signals import ignore_sigint

#: Functions a worker keeps unpickled, most recently used last.
FUNCTION_CACHE_SIZE = 8


def main(fd: int) -> None:
    """Entry point of every worker process, whatever started it."""
    ignore_sigint()
    context.mark_worker_process()
    _forget_parent_pools()
    reseed_random()
    conn = Channel(fd)
    keep_from_children(fd)
    mappings = Mappings()  # of the caller's large-buffer files
    _exit_when_parent_dies(fd, mappings)
    status = 0
    try:
        init: dict[str, Any] = pickle.loads(conn.recv_bytes())
        crash_reports.take_over(fd)
        _apply_init(init)
        _serve(conn, mappings)
    except (EOFError, OSError):
        pass  # the parent closed our socket: shut down quietly
    except BaseException:  # a smartpool bug: say what it was; the caller reports a crash
        traceback.print_exc()
        status = 70  # EX_SOFTWARE
    finally:
        _release_shared_objects()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _release_shared_objects() -> None:
    """``os._exit`` runs no finalizers: detach from smartpool.Lock & co. by hand, so that
    blocks this worker created and nobody else uses are removed from /dev/shm."""
    shm = sys.modules.get("smartpool._sync._shm")
    if shm is not None:
        # Both the main loop and the parent watcher may get here; the second must wait for the
        # first to finish, not exit half-way through its cleanup.
        with _release_lock:
            try:
                shm.release_all()
            except Exception:  # pragma: no cover - never let cleanup turn an exit into a crash
                pass


_release_lock = threading.Lock()


def reseed_random() -> None:
    """Give this worker its own random state, from the OS entropy pool.

    CPython already reseeds ``random`` in a forked child; this also covers a worker forked from a
    fork server that was itself forked. NumPy's global generator is reseeded only if
    ``numpy.random`` is already imported (NumPy loads it lazily): importing it here would cost
    every worker start, and a fresh import seeds itself anyway.
    """
    import random  # here, not at the top: the caller imports this module too, for a constant

    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except Exception:  # pragma: no cover - a broken or stub NumPy must not stop the worker
            pass


def _serve(conn: Channel, mappings: Mappings) -> None:
    functions: OrderedDict[int, Callable[[Any], Any]] = OrderedDict()
    while True:
        fn_key, fn_bytes, start, retry_bytes, items_bytes, paths = pickle.loads(conn.recv_bytes())
        retry: RetryPolicy = NO_RETRY
        load_error: BaseException | None = None
        if fn_bytes:
            try:
                functions[fn_key] = loads(fn_bytes)
            except BaseException as exc:
                load_error = _annotated(exc, "the function could not be unpickled in the worker")
            while len(functions) > FUNCTION_CACHE_SIZE:
                functions.popitem(last=False)
        if load_error is None and retry_bytes:
            try:
                retry = loads(retry_bytes)
            except BaseException as exc:
                load_error = _annotated(exc, "retry_on could not be unpickled in the worker")
        items: Any = None
        views: list[memoryview] = []
        if load_error is None:
            try:
                views = mappings.attach(paths)
                items = loads(items_bytes, views)
            except BaseException as exc:
                load_error = _annotated(exc, "the items could not be unpickled in the worker")
        if load_error is None:
            functions.move_to_end(fn_key)
            result = run_chunk(functions[fn_key], items, start, retry)
        else:
            result = ChunkResult(start, [], load_error, 0.0, describe_worker())
        reply = _encode(result)
        # Everything made from the chunk's files is dropped here, unless the function kept it.
        del items, result, load_error
        conn.send_bytes(pickle.dumps((*reply, mappings.let_go(views)), pickle.HIGHEST_PROTOCOL))


def _encode(result: ChunkResult) -> tuple[float, float, str, bytes, bytes, int]:
    """The reply for a chunk, but for ``let_go``: its values and error, pickled."""
    values, error = result.values, result.error
    try:
        values_bytes = dump_items(values, result.start, what="result of item")
    except SerializationError as exc:
        # Send what can travel, and the failure at the first value that cannot.
        bad = _first_unpicklable(values)
        values, error = values[:bad], exc
        values_bytes = dump_items(values, result.start)
    error_bytes = dump_exception(error) if error is not None else b""
    return (
        result.seconds,
        result.cpu_seconds,
        result.worker,
        values_bytes,
        error_bytes,
        result.retried,
    )


def _first_unpicklable(values: list[Any]) -> int:
    from .._transport.serialize import dumps

    for index, value in enumerate(values):
        try:
            dumps(value)
        except Exception:
            return index
    return len(values)  # pragma: no cover - the list failed as a whole only


def _annotated(exc: BaseException, note: str) -> BaseException:
    add_note(exc, f"smartpool: {note}; is the module importable in a fresh interpreter?")
    return exc


def _apply_init(init: dict[str, Any]) -> None:
    sys_path: object = init.get("sys_path")
    if isinstance(sys_path, list):
        sys.path[:] = [p for p in cast("list[object]", sys_path) if isinstance(p, str)]
    sync_state = init.get("sync_state")
    if sync_state:
        from .. import _sync

        _sync.install_state(sync_state)
    cwd = init.get("cwd")
    if isinstance(cwd, str):
        try:
            os.chdir(cwd)
        except OSError:
            pass


def _forget_parent_pools() -> None:
    """A forked worker inherits copies of the caller's pools, whose threads do not exist here."""
    registry = sys.modules.get("smartpool._backends.registry")
    if registry is not None:
        registry._forget_after_fork()
    launcher = sys.modules.get("smartpool._process.launcher")
    if launcher is not None:
        launcher.forget_server()


def _exit_when_parent_dies(fd: int, mappings: Mappings) -> None:
    """Watch the socket for the parent's hang-up on a thread and exit at once, even mid-task."""
    rdhup = getattr(select, "POLLRDHUP", None)
    if rdhup is None:  # pragma: no cover - not Linux; the fork server still kills its children
        return

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, rdhup | select.POLLHUP)
        # Any event (hang-up, error, invalid fd) means the parent is gone. Meanwhile, mappings
        # of large-buffer files the parent has removed are let go of, even in an idle worker.
        while not poller.poll(int(IDLE_SWEEP_SECONDS * 1000)):
            mappings.sweep()
        _release_shared_objects()
        os._exit(1)

    threading.Thread(target=watch, name="smartpool-parent-watch", daemon=True).start()
