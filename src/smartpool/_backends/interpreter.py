"""The interpreter backend: chunks run in subinterpreters of this process (Python 3.14+).

Each worker is a thread of the caller's process that owns one interpreter made with
:mod:`concurrent.interpreters`; every interpreter has its own GIL, so pure-Python CPU work runs
in parallel without starting processes. The function, items and results cross between
interpreters pickled, as they would to a worker process (no shared memory: large buffers are
copied), and each interpreter imports the modules they need for itself. Extension modules that
do not support subinterpreters (NumPy, among others) cannot be imported there: such a call fails
with an ImportError naming the module, and automatic routing checks for this before it picks
this backend (see :meth:`InterpreterBackend.runs_function`).

Like the thread backend, a running chunk cannot be stopped: a timed-out or cancelled chunk's
interpreter is abandoned (its thread exits, and closes it, once the call returns) and another
takes its place.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

from .. import _options
from .._errors import RemoteError, TaskTimeoutError
from .._transport.serialize import dump_function, dump_items, dumps
from .._work.limits import start_error
from .._work.setup import WorkerSetup, dump_setup
from .._work.task import NO_RETRY, Call, ChunkResult, describe_worker, settle
from . import interpreter_entry
from .base import Backend
from .interpreter_steps import Steps

#: Whether this Python has :mod:`concurrent.interpreters` (3.14+; the registry says why not).
AVAILABLE = sys.version_info >= (3, 14)

_keys = itertools.count(1)
_ids = itertools.count(1)


def _interpreters() -> Any:
    """:mod:`concurrent.interpreters` (untyped here: typeshed may not know it yet)."""
    import importlib

    return importlib.import_module("concurrent.interpreters")


# -- in the caller ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    call: Call
    #: The caller's import path and module-level shared objects, for the interpreters.
    init: bytes
    fn_key: int
    fn_bytes: bytes
    retry_bytes: bytes
    #: The pool's pickled ``WorkerSetup`` (b"": none), run once in each interpreter.
    setup: bytes = b""


@dataclass(eq=False)
class _Work:
    future: Future[ChunkResult]
    prepared: _Prepared
    items: bytes
    start: int
    count: int
    timer: threading.Timer | None = field(default=None, repr=False)


class _Slot:
    """One worker thread's interpreter, made on first use. ``lock`` is held while it runs a
    chunk, so that :func:`_close_idle_interpreters` only closes interpreters nobody uses."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.interp: Any = None

    def close(self) -> None:
        """Under ``lock``: close the interpreter (the next chunk makes a new one)."""
        interp, self.interp = self.interp, None
        if interp is not None:
            with contextlib.suppress(Exception):
                interp.close()


_slots: weakref.WeakSet[_Slot] = weakref.WeakSet()


def _close_idle_interpreters() -> None:
    """Before this process forks: close every interpreter not running a chunk.

    A child forked while subinterpreters exist crashes (SIGSEGV) in CPython 3.14 while it
    deletes them; with them closed, the fork is safe. Idle pools re-make their interpreters on
    their next chunk. One running a chunk cannot be closed: fork then (start_method="fork")
    only once the interpreter backend's calls have returned.
    """
    for slot in list(_slots):
        if slot.lock.acquire(blocking=False):
            try:
                slot.close()
            finally:
                slot.lock.release()


if AVAILABLE:
    os.register_at_fork(before=_close_idle_interpreters)


class InterpreterPool:
    """Up to ``workers`` threads, each running chunks in an interpreter of its own, started when
    work waits for them. A thread whose chunk was abandoned (timed out, cancelled) no longer
    counts; another starts in its place."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._live: set[threading.Thread] = set()
        self._idle = 0
        self._retired: set[threading.Thread] = set()
        self._running: dict[Future[ChunkResult], tuple[_Work, threading.Thread]] = {}
        self._closed = False
        self._steps: Steps | None = None

    def steps(self) -> Steps:
        """The queue that carries reported steps back from the interpreters (made once)."""
        with self._lock:
            if self._steps is None:
                self._steps = Steps(_interpreters().create_queue())
            return self._steps

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._live)

    def submit(self, work: _Work) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to an interpreter pool that was shut down")
            if self._idle:
                self._idle -= 1
                thread = None
            else:
                thread = self._new_thread()
        self._queue.put(work)
        if thread is not None:
            thread.start()

    def _new_thread(self) -> threading.Thread | None:
        """Under the lock: a thread to start, if the pool is below its size."""
        if self._closed or len(self._live) >= self.workers:
            return None
        thread = threading.Thread(
            target=self._worker, name=f"smartpool-interpreter-{next(_ids)}", daemon=True
        )
        self._live.add(thread)
        return thread

    def _worker(self) -> None:
        me = threading.current_thread()
        slot = _Slot()
        _slots.add(slot)
        try:
            while True:
                work = self._queue.get()
                if work is None or not self._run(slot, work, me):
                    return
        finally:
            with self._lock:
                self._live.discard(me)
                self._retired.discard(me)
            with slot.lock:
                slot.close()
            _slots.discard(slot)

    def _strand(self, error: BaseException) -> None:
        """This thread could not start: if no other is left, fail the queued work with
        ``error`` rather than leave it waiting (the next submit tries again)."""
        with self._lock:
            self._live.discard(threading.current_thread())
            stranded = not self._live
        while stranded:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return
            if work is not None and work.future.set_running_or_notify_cancel():
                settle(work.future, error=error)

    def _run(self, slot: _Slot, work: _Work, me: threading.Thread) -> bool:
        """Run one chunk in ``slot``'s interpreter (made now if it has none, or was closed for a
        fork); False when this thread must exit (shut down, abandoned, or no interpreter)."""
        if self._closed:
            if not work.future.cancel():
                settle(work.future, error=CancelledError())
            return True
        if work.future.set_running_or_notify_cancel():
            with self._lock:
                self._running[work.future] = (work, me)
            timeout = work.prepared.call.timeout
            if timeout is not None:
                work.timer = threading.Timer(timeout, self._expire, (work,))
                work.timer.daemon = True
                work.timer.start()
            result: ChunkResult | None = None
            error: BaseException | None = None
            with slot.lock:  # held while the interpreter runs: a fork then leaves it alone
                try:
                    if slot.interp is None:
                        slot.interp = _interpreters().create()
                except Exception as exc:  # out of memory, say: fail this and what is queued
                    error = start_error(exc, "a subinterpreter", self.workers)
                else:
                    result = self._call(slot.interp, work)
            # Settled outside the slot's lock: the Future's callbacks may fork.
            if work.timer is not None:
                work.timer.cancel()
            if result is None:
                assert error is not None
                settle(work.future, error=error)
                self._strand(error)
                return False
            settle(work.future, result)
        with self._lock:
            self._running.pop(work.future, None)
            if me in self._retired or me not in self._live:
                return False
            self._idle += 1
        return True

    def _call(self, interp: Any, work: _Work) -> ChunkResult:
        from .._process import protocol

        p = work.prepared
        args = (p.init, p.fn_key, p.fn_bytes, work.start, p.retry_bytes, work.items, p.setup)
        report = p.call.report
        try:
            if report is None:
                reply = interp.call(interpreter_entry.run_here, *args)
            else:
                steps = self.steps()
                with steps.reporting(work.future, report) as key:
                    reply = interp.call(interpreter_entry.run_here, *args, steps.queue, key)
        except Exception as exc:  # the entry itself failed there (ExecutionFailed)
            return ChunkResult(work.start, [], _remote(exc), 0.0, describe_worker())
        last = work.start + work.count - 1
        decoded = protocol.decode_reply(reply)
        assert not isinstance(decoded, int)  # step counts travel only from worker processes
        return protocol.result_of(decoded, work.start, lambda: f"items {work.start}..{last}")

    def _abandon(self, futures: Collection[Future[ChunkResult]]) -> None:
        """Retire the threads running ``futures`` and start replacements for them."""
        with self._lock:
            for future in futures:
                entry = self._running.get(future)
                if entry is not None and entry[1] in self._live:
                    self._live.discard(entry[1])
                    self._retired.add(entry[1])
            threads = [t for t in (self._new_thread() for _ in futures) if t is not None]
        for thread in threads:
            thread.start()

    def _expire(self, work: _Work) -> None:
        timeout = work.prepared.call.timeout
        error = TaskTimeoutError(
            f"item {work.start} did not finish within timeout={timeout} s on the interpreter "
            "backend; its interpreter was abandoned (a running call cannot be stopped)",
            index=work.start,
            timeout=timeout,
        )
        if settle(work.future, error=error):
            self._abandon([work.future])

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        """Queued work never starts; running work is abandoned, its interpreter replaced."""
        running = [f for f in futures if not f.cancel()]
        for future in running:
            settle(future, error=CancelledError())
        self._abandon(running)

    def shutdown(self, wait: bool = True) -> None:
        """Stop: queued work is cancelled, idle threads close their interpreters and exit, busy
        ones when their chunk ends. ``wait`` waits for the idle ones only, as on threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy = {thread for _, thread in self._running.values()}
            idle = [t for t in self._live if t not in busy]
            everyone = len(self._live) + len(self._retired)
        for _ in range(everyone):
            self._queue.put(None)
        if self._steps is not None:
            self._steps.close()
        if wait:
            for thread in idle:
                if thread is not threading.current_thread():
                    thread.join()


def _dump_setup(setup: WorkerSetup) -> bytes:
    """The setup pickled for the interpreters, as for worker processes (``SerializationError``
    naming the initializer or its arguments); ``max_tasks_per_child`` has no effect here, as on
    threads: an interpreter is not a process to replace."""
    return dump_setup(WorkerSetup(setup.initializer, setup.initargs), "interpreter")


def _remote(exc: Exception) -> BaseException:
    """What ``Interpreter.call`` raised: an exception of the other interpreter (ExecutionFailed,
    which carries its type's name, message and traceback as text) as a :class:`RemoteError`."""
    info = getattr(exc, "excinfo", None)
    if info is None:
        return exc
    kind = getattr(info, "type", None)
    name = getattr(kind, "__qualname__", None) or type(exc).__name__
    module = getattr(kind, "__module__", None)
    qualified = f"{module}.{name}" if module and module != "builtins" else str(name)
    error = RemoteError(
        qualified, str(getattr(info, "msg", exc)), str(getattr(info, "formatted", ""))
    )
    error.__cause__ = exc
    return error


class InterpreterBackend(Backend):
    name = "interpreter"

    def __init__(self, workers: int, setup: WorkerSetup | None = None) -> None:
        if not AVAILABLE:  # Options refuse the name first; this guards direct construction
            raise RuntimeError(_options.UNAVAILABLE_BACKENDS.get(self.name, "needs Python 3.14+"))
        super().__init__(workers)
        self._pool = InterpreterPool(workers)
        self._keys: dict[bytes, int] = {}
        # An initializer runs once in each interpreter (as in each worker process); its pickled
        # form is checked now, so that what cannot be sent fails before any work.
        self._setup = b"" if setup is None or setup.initializer is None else _dump_setup(setup)

    def prepare(self, call: Call) -> _Prepared:
        fn_bytes = dump_function(call.portable, self.name)  # type: ignore[arg-type]  # SerializationError here
        key = self._keys.get(fn_bytes)
        if key is None:
            if len(self._keys) > 256:
                self._keys.clear()
            key = self._keys[fn_bytes] = next(_keys)
        from .._process import protocol

        retry_bytes = b"" if call.retry == NO_RETRY else dumps(call.retry)
        init = protocol.encode_init(protocol.current_init())
        return _Prepared(call, init, key, fn_bytes, retry_bytes, self._setup)

    def submit(
        self,
        prepared: _Prepared,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        future = Future() if future is None else future
        if self._pool._closed:  # shut down under a run: start afresh, as the process backend
            self._pool = InterpreterPool(self.workers)
        self._pool.submit(_Work(future, prepared, dump_items(items, start), start, len(items)))
        return future

    @classmethod
    def runs_function(cls, fn: Callable[..., Any]) -> bool:
        """Whether ``fn`` (pickled as a call would send it) loads in a fresh subinterpreter:
        False for functions whose modules import extensions that refuse subinterpreters."""
        if not AVAILABLE:
            return False
        from .._process import protocol

        try:
            fn_bytes = dump_function(fn)
        except Exception:
            return False
        init = protocol.encode_init(protocol.current_init())
        interp = _interpreters().create()
        try:
            return bool(interp.call(interpreter_entry.loads_here, init, fn_bytes))
        except Exception:
            return False
        finally:
            interp.close()

    def warm_workers(self) -> int:
        return self._pool.live

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        self._pool.cancel(futures)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)
