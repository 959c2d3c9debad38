"""The messages between the caller and a worker process, encoded and decoded on both sides.

Messages on the worker's socket (length-prefixed, see ``channel``):

* caller -> worker, once: ``init`` = pickle of ``{"sys_path": [...], "cwd": "...",
  "sync_state": ..., "setup": b"...", "authkey": b"..."}`` (``sync_state`` only once
  ``smartpool._sync`` is imported: the module-level shared objects the worker must attach to
  rather than create anew; ``setup`` only for a pool with an ``initializer=``: its WorkerSetup,
  pickled by the transport; ``authkey``, the caller's multiprocessing key, only once
  multiprocessing is loaded, so that the worker can use the caller's ``Manager`` proxies as a
  multiprocessing child can), then one byte
  saying where faulthandler reports go, with the report file attached (see ``crash_reports``)
* caller -> worker, per chunk: pickle of
  ``(fn_key, fn_bytes, start, retry_bytes, items_bytes, buffer_paths, report, inner_threads)``,
  where ``fn_bytes`` is empty when the worker already has that function (workers keep the last
  ``FUNCTION_CACHE_SIZE`` by key) and ``retry_bytes`` (the call's RetryPolicy, by value) is empty
  when there are no retries; ``report`` asks for the steps the function reports, and
  ``inner_threads`` (0: leave them alone) sets the BLAS/OpenMP threads of the worker's libraries.
* worker -> caller, while a chunk runs that asked for them, any number of: pickle of an int, the
  steps the function reported (``smartpool.report_progress``) since the last such message.
* worker -> caller, per chunk: pickle of
  ``(seconds, cpu_seconds, worker, values_bytes, error_bytes, retried, let_go, queued)``,
  where ``retried`` counts failed attempts that were run again, ``let_go`` says that nothing in
  the worker uses the chunk's shared-memory files any more (they may be reused) and ``queued``
  is the part of ``seconds`` the worker's thread spent queued for a core (a busy machine).

One message each way per chunk (steps aside): every write wakes the other side, which costs far
more than copying the bytes into one buffer.

This module only frames: the user's objects inside (functions, items, results, exceptions) are
pickled and unpickled by ``smartpool._transport`` (``serialize``, ``remote``), and arrive here
as bytes, except in ``reply_for`` and ``result_of``, which call it for a chunk's outcome.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from .._errors import NotUnpickledError, SerializationError
from .._transport.remote import dump_exception, load_exception
from .._transport.serialize import dump_items, dumps, loads
from .._work.task import ChunkResult

#: Functions a worker keeps unpickled, most recently used last; the caller sends a function's
#: bytes again only to a worker that no longer has it.
FUNCTION_CACHE_SIZE = 8


# -- init ----------------------------------------------------------------------------------------


class Init(NamedTuple):
    """What a new worker needs first: the import path and working directory, and the
    module-level shared objects (``smartpool.Lock()`` and friends) it must attach to."""

    sys_path: list[str] | None
    cwd: str | None
    sync_state: object = None
    #: The pool's WorkerSetup pickled by the transport (empty: none).
    setup: bytes = b""
    authkey: bytes | None = None


def current_init(setup: bytes = b"") -> Init:
    """The init message for a worker started now, from this process's state."""
    sync = sys.modules.get("smartpool._sync")
    process = sys.modules.get("multiprocessing.process")
    authkey = None if process is None else bytes(process.current_process().authkey)
    state = None if sync is None else sync.export_state()
    return Init(list(sys.path), os.getcwd(), state, setup, authkey)


def encode_init(init: Init) -> bytes:
    message: dict[str, object] = {"sys_path": init.sys_path, "cwd": init.cwd}
    if init.sync_state is not None:
        message["sync_state"] = init.sync_state
    if init.setup:
        message["setup"] = init.setup
    if init.authkey is not None:
        message["authkey"] = init.authkey
    return pickle.dumps(message)


def decode_init(data: bytes | bytearray) -> Init:
    """The init message; entries of the wrong type are left out (None), never trusted."""
    message: dict[str, Any] = pickle.loads(data)
    sys_path: object = message.get("sys_path")
    paths = (
        [p for p in cast("list[object]", sys_path) if isinstance(p, str)]
        if isinstance(sys_path, list)
        else None
    )
    cwd, setup = message.get("cwd"), message.get("setup")
    authkey = message.get("authkey")
    return Init(
        paths,
        cwd if isinstance(cwd, str) else None,
        message.get("sync_state"),
        setup if isinstance(setup, bytes) else b"",
        authkey if isinstance(authkey, bytes) else None,
    )


# -- chunk ---------------------------------------------------------------------------------------


class Chunk(NamedTuple):
    """One chunk to run, its user objects already pickled by the transport."""

    fn_key: int
    #: Empty when the worker already has the function ``fn_key``.
    fn_bytes: bytes
    start: int
    #: The call's RetryPolicy by value; empty when there are no retries.
    retry_bytes: bytes
    items_bytes: bytes
    #: Shared-memory files holding the items' large buffers (see ``buffers``).
    buffer_paths: tuple[str, ...]
    #: Send the steps the function reports to the caller (see ``step_sender``).
    report: bool = False
    #: BLAS/OpenMP threads for the worker's libraries; 0: leave them as they are.
    inner_threads: int = 0


def encode_chunk(chunk: Chunk) -> bytes:
    return pickle.dumps(tuple(chunk), protocol=pickle.HIGHEST_PROTOCOL)


def decode_chunk(data: bytes | bytearray) -> Chunk:
    return Chunk._make(pickle.loads(data))


# -- reply ---------------------------------------------------------------------------------------


class Reply(NamedTuple):
    """A chunk's outcome, its values and error pickled by the transport."""

    seconds: float
    cpu_seconds: float
    worker: str
    values_bytes: bytes
    #: Empty when the chunk raised nothing.
    error_bytes: bytes
    retried: int
    #: Nothing in the worker uses the chunk's shared-memory files any more.
    let_go: bool = False
    #: Part of ``seconds`` the worker's thread spent queued for a core.
    queued_seconds: float = 0.0


def encode_reply(reply: Reply) -> bytes:
    return pickle.dumps(tuple(reply), protocol=pickle.HIGHEST_PROTOCOL)


def decode_reply(data: bytes | bytearray) -> Reply | int:
    """A chunk's reply, or (an int) the steps its function reported while it runs."""
    message = pickle.loads(data)
    return message if type(message) is int else Reply._make(message)


def encode_steps(n: int) -> bytes:
    return pickle.dumps(n, protocol=pickle.HIGHEST_PROTOCOL)


def reply_for(result: ChunkResult) -> Reply:
    """In the worker: the reply for a chunk, but for ``let_go`` (known only once the chunk's
    objects are dropped). Values that cannot be pickled are cut at the first such, which
    becomes the chunk's error: what can travel still does."""
    values, error = result.values, result.error
    try:
        values_bytes = dump_items(values, result.start, what="result of item")
    except SerializationError as exc:
        bad = _first_unpicklable(values)
        values, error = values[:bad], exc
        values_bytes = dump_items(values, result.start)
    except BaseException as exc:  # a value's own pickling code raised SystemExit, say: the error
        values, error = list[Any](), exc
        values_bytes = dump_items(values, result.start)
    error_bytes = dump_exception(error) if error is not None else b""
    return Reply(
        result.seconds,
        result.cpu_seconds,
        result.worker,
        values_bytes,
        error_bytes,
        result.retried,
        queued_seconds=result.queued_seconds,
    )


def _first_unpicklable(values: list[Any]) -> int:
    for index, value in enumerate(values):
        try:
            dumps(value)
        except Exception:
            return index
    return len(values)  # pragma: no cover - the list failed as a whole only


def result_of(reply: Reply, start: int, items: Callable[[], str]) -> ChunkResult:
    """In the caller: the result of the chunk at ``start``, whose items ``items()`` names in an
    error ("items 4..7"); what cannot be unpickled here becomes the chunk's error.

    Unpickling runs the caller's code (``__reduce__``, ``__setstate__``, imports), which may
    fail here even though pickling worked in the worker.
    """
    seconds, cpu, worker = reply.seconds, reply.cpu_seconds, reply.worker
    queued = reply.queued_seconds
    try:
        values: list[object] = loads(reply.values_bytes)
    except BaseException as exc:  # the caller's code ran here (SystemExit included): not ours
        unloadable = _unloadable("the results of", items(), exc)
        return ChunkResult(start, [], unloadable, seconds, worker, cpu, queued_seconds=queued)
    error: BaseException | None
    try:
        error = load_exception(reply.error_bytes) if reply.error_bytes else None
    except BaseException as exc:
        error = _unloadable("the exception raised by", items(), exc)
    return ChunkResult(start, values, error, seconds, worker, cpu, reply.retried, queued)


def _unloadable(what: str, items: str, cause: BaseException) -> SerializationError:
    error = NotUnpickledError(
        f"{what} {items} could not be unpickled in the caller: {type(cause).__name__}: {cause}"
    )
    error.__cause__ = cause
    return error
