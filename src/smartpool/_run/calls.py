"""Single calls, one chunk each, on one leased pool: the way ``Executor.submit`` reaches a backend.

A :class:`~smartpool._run.run.Run` is one call of ``parallel_map`` over many items. An executor
receives calls one at a time, of any function, as fast as the caller can make them, and a Run
per call would cost several times the call itself. A :class:`Lane` keeps what a run makes once
(its plan, the lease on a warm pool, the prepared call) and sends each call as a chunk of one
item, ``(fn, args, kwargs, context)``, completing a :class:`OneCall` future: one Future per call,
the caller's own, PENDING until a worker takes it, exactly as a run's chunk is.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, cast

from .._backends import registry
from .._backends.base import Backend
from .._errors import SerializationError
from .._routing.planner import Plan
from .._transport.remote import add_note
from .._work.carried import call_in_process, call_on_thread, capture_vars
from .._work.setup import WorkerSetup
from .._work.task import Call, ChunkResult, RetryPolicy

#: Told the time and CPU time of a call that ran (how calls are learned from).
ResultHook = Callable[[ChunkResult], None]


class OneCall(Future[Any]):
    """The Future of one call, completed by a backend as a chunk of one item.

    A backend settles a chunk's Future with a :class:`ChunkResult`; this one keeps the item's
    value instead, or its error (with a note naming the backend and the worker), and first tells
    ``on_result``, if given, how long the call took.
    """

    #: Set by the lane that made it (no ``__init__`` of its own: a call is a few microseconds).
    _backend: Backend
    _on_result: ResultHook | None = None
    #: The calls its owner still tracks: it leaves the set once done (set, failed or cancelled).
    _tracker: set[Future[Any]] | None = None
    #: For the progress of ``Executor.map`` (``_progress.calls``): the items the call runs,
    #: its attempts run again (``retries=``), and whether its progress counted it.
    items: int = 1
    retried: int = 0
    counted: bool = False

    def _untrack(self) -> None:
        tracker = self._tracker
        if tracker is not None:
            tracker.discard(self)  # one atomic set operation: no lock needed

    def set_exception(self, exception: BaseException | None) -> None:
        super().set_exception(exception)
        self._untrack()

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._untrack()
        return True

    def stop(self) -> None:
        """Cancel the call even if it runs: a worker process running it is killed (and
        replaced); a thread running it is abandoned. The Future ends cancelled, or failed with
        ``CancelledError`` if it was running."""
        if not self.cancel():
            self._backend.cancel([cast("Future[ChunkResult]", self)])

    def set_result(self, result: Any) -> None:
        if not isinstance(result, ChunkResult):  # a value set by hand
            super().set_result(result)
            self._untrack()
            return
        if self._on_result is not None:
            try:
                self._on_result(result)
            finally:
                self._on_result = None
        if result.retried:
            self.retried = result.retried
        if result.error is not None:
            add_note(result.error, f"smartpool: failed on the {self._backend.name} backend "
                     f"({result.worker})")  # fmt: skip
            super().set_exception(result.error)
        else:
            super().set_result(result.values[0])
        self._untrack()


class Lane:
    """Calls sent to one pool following one plan; made once, used for many submits."""

    def __init__(
        self,
        plan: Plan,
        timeout: float | None,
        retry: RetryPolicy,
        measure_cpu: bool = True,
        *,
        setup: WorkerSetup | None = None,
    ) -> None:
        """``measure_cpu``: whether its calls report the CPU time they used (for learning);
        ``setup``: what each worker runs first (an initializer makes the pool private)."""
        self.plan = plan
        self._setup = setup
        self.in_process = registry.traits(plan.backend).needs_pickling
        fn = call_in_process if self.in_process else call_on_thread
        self._call = Call(fn, retry, timeout, portable=fn, measure_cpu=measure_cpu)
        self._take_lease()

    def _take_lease(self) -> None:
        lease = registry.lease(self.plan.backend, self.plan.max_workers, setup=self._setup)
        try:
            self._prepared = lease.backend.prepare(self._call)
        except BaseException:
            lease.release()
            raise
        self._lease, self.backend = lease, lease.backend

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        on_result: ResultHook | None = None,
        tracker: set[Future[Any]] | None = None,
    ) -> OneCall:
        """Send ``fn(*args, **kwargs)``; its Future runs once a worker takes it.

        On threads the call runs in a copy of the caller's context; in a worker process, with
        the caller's context variables that can travel (see ``_work.carried``). What cannot be
        pickled fails the Future, not the submit, as with ``ProcessPoolExecutor``. The Future is
        in ``tracker`` until it is done.
        """
        if self._lease.stale:  # smartpool.shutdown() stopped the pools: take a new one
            self._lease.release()
            self._take_lease()
        future = OneCall()
        future._backend = self.backend
        if on_result is not None:
            future._on_result = on_result
        if tracker is not None:
            tracker.add(future)
            future._tracker = tracker
        context: object = capture_vars() if self.in_process else contextvars.copy_context()
        chunk = cast("Future[ChunkResult]", future)
        try:
            self.backend.submit(self._prepared, ((fn, args, kwargs, context),), 0, chunk)
        except SerializationError as exc:
            future.set_exception(exc)
        except BaseException:
            future._untrack()  # never submitted: nothing to wait for
            raise
        return future

    def release(self) -> None:
        """Let go of the pool (once): call when no call of this lane is running any more."""
        self._lease.release()
