"""The loop a worker process runs: receive a chunk, run it, send the outcome back.

It speaks the messages of ``protocol``: an init message first, then per chunk one message each
way.

A worker ignores SIGINT (the caller handles Ctrl-C and kills workers) and exits as soon as its
parent goes away, even in the middle of a task, so nothing is ever orphaned. It reseeds ``random``
(and NumPy's global generator, if imported) on start: forked workers would otherwise all
continue the random sequence of the process they were forked from.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from .._errors import NotUnpickledError
from .._transport.serialize import loads
from .._work import blas, context
from .._work.setup import WorkerSetup, WorkerSlot
from .._work.task import NO_RETRY, ChunkResult, RetryPolicy, describe_worker, run_chunk
from . import crash_reports, protocol
from .channel import Channel, keep_from_children
from .mappings import IDLE_SWEEP_SECONDS, Mappings
from .protocol import FUNCTION_CACHE_SIZE
from .signals import ignore_sigint
from .step_sender import StepSender


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
        init = protocol.decode_init(conn.recv_bytes())
        crash_reports.take_over(fd)
        _apply_init(init)
        _serve(conn, mappings, _slot_for(init.setup))
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
    import random  # here: only a starting worker needs it

    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except Exception:  # pragma: no cover - a broken or stub NumPy must not stop the worker
            pass


def _slot_for(setup_bytes: bytes) -> WorkerSlot:
    """This worker's slot: its ``worker_state()`` and the pool's initializer, if any (one that
    cannot be unpickled here fails like one that raises: every chunk reports it)."""
    if not setup_bytes:
        return WorkerSlot(None)
    try:
        setup: WorkerSetup = loads(setup_bytes)
    except BaseException as exc:
        note = "the initializer could not be unpickled in the worker"
        error = _annotated(exc, note)
        return WorkerSlot(WorkerSetup(_raiser(error)))
    return WorkerSlot(setup)


def _raiser(error: BaseException) -> Callable[[], None]:
    def initializer() -> None:
        raise error

    return initializer


def _serve(conn: Channel, mappings: Mappings, slot: WorkerSlot) -> None:
    functions: OrderedDict[int, Callable[[Any], Any]] = OrderedDict()
    while True:
        chunk = protocol.decode_chunk(conn.recv_bytes())
        fn_key, fn_bytes, start, retry_bytes, items_bytes, paths, report, inner = chunk
        blas.limit(inner)  # before unpickling: NumPy imported by the items reads it
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
            with StepSender(conn) if report else nullcontext(), slot.running() as failed:
                if failed is not None:
                    result = ChunkResult(start, [], failed, 0.0, describe_worker())
                else:
                    result = run_chunk(functions[fn_key], items, start, retry)
        else:
            result = ChunkResult(start, [], load_error, 0.0, describe_worker())
        reply = protocol.reply_for(result)
        # Everything made from the chunk's files is dropped here, unless the function kept it.
        del items, result, load_error
        conn.send_bytes(protocol.encode_reply(reply._replace(let_go=mappings.let_go(views))))


def _annotated(exc: BaseException, what: str) -> BaseException:
    error = NotUnpickledError(
        f"{what}: {type(exc).__name__}: {exc}; is the module importable in a fresh interpreter?"
    )
    error.__cause__ = exc
    return error


def _apply_init(init: protocol.Init) -> None:
    if init.sys_path is not None:
        sys.path[:] = init.sys_path
    if init.sync_state:
        from .. import _sync

        _sync.install_state(init.sync_state)
    if init.cwd is not None:
        try:
            os.chdir(init.cwd)
        except OSError:
            pass
    if init.authkey is not None:  # the caller's key: its Manager proxies work here too
        import multiprocessing.process

        multiprocessing.process.current_process().authkey = init.authkey


def _forget_parent_pools() -> None:
    """A forked worker inherits copies of the caller's pools, whose threads do not exist here."""
    registry = sys.modules.get("smartpool._backends.registry")
    if registry is not None:
        registry._forget_after_fork()
    forkserver = sys.modules.get("smartpool._process.forkserver")
    if forkserver is not None:
        forkserver.forget_server()
    descriptors = sys.modules.get("smartpool._process.descriptors")
    if descriptors is not None:
        descriptors.forget_in_child()


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
