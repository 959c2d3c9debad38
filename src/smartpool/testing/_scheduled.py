"""``scheduled()``: smartpool runs deterministically, completing items in a given order and
failing the given items with the real errors, so that code built on smartpool can test its
handling of crashes, timeouts and out-of-order results without real crashes or waits.

Under ``scheduled()`` calls that leave ``backend`` (and ``chunksize``) to smartpool run on the
"scheduled" backend, registered here through the backend registry like any other. It runs each
item in the calling thread, only when the caller needs a result: when the caller waits for one,
the chunk that is next in the completion order runs and completes, and only that one. So the
caller sees exactly one new result at a time, in the order asked for, whatever the machine's
speed or load.

Knowing when the caller waits is the one thing the backend interface does not tell: a chunk's
Future is made by the run. The backend therefore watches each Future it is given (its condition,
which ``Future.result()`` waits on, and its list of waiters, which ``concurrent.futures.wait()``
joins): the same attributes on every CPython from 3.10 to 3.14, and only on Futures of calls
made under ``scheduled()``.
"""

from __future__ import annotations

import contextvars
import copy
import threading
from collections.abc import Generator, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures._base import _FirstCompletedWaiter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import smartpool
from smartpool._backends import registry
from smartpool._backends.base import Backend, BackendTraits
from smartpool._work.task import Call, ChunkResult, run_chunk, settle

#: The registered name of the deterministic backend.
NAME = "scheduled"
#: Chunks a run keeps in flight per worker on it: an order naming items beyond the first
#: ``WINDOW`` x workers is followed as far as the items in flight allow.
WINDOW = 256
_WORKER = "the calling thread, scheduled by smartpool.testing"

#: What may happen at an item: its worker crashes, it times out, or it raises this exception.
Fault: TypeAlias = Literal["crash", "timeout"] | BaseException | type[BaseException]


@dataclass(frozen=True)
class _Plan:
    order: tuple[int, ...] = ()
    faults: Mapping[int, Fault] = field(default_factory=lambda: dict[int, Fault]())

    @classmethod
    def checked(cls, order: Iterable[int] | None, faults: Mapping[int, Fault] | None) -> _Plan:
        ranks = tuple(order or ())
        for index in ranks:
            _check_index("order", index)
        if len(set(ranks)) != len(ranks):
            raise ValueError(f"order names an item twice: {list(ranks)}")
        for index, fault in (faults or {}).items():
            _check_index("faults", index)
            if not _is_fault(fault):
                raise TypeError(
                    f"faults[{index}] must be 'crash', 'timeout', an exception or an exception "
                    f"type, got {fault!r}"
                )
        return cls(ranks, dict(faults or {}))


def _is_fault(value: object) -> bool:
    return (
        value in ("crash", "timeout")
        or isinstance(value, BaseException)
        or (isinstance(value, type) and issubclass(value, BaseException))
    )


def _check_index(what: str, index: object) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise TypeError(f"{what} must name items by their index (an int >= 0), got {index!r}")


_plan: contextvars.ContextVar[_Plan | None] = contextvars.ContextVar(
    "smartpool_testing_plan", default=None
)


@contextmanager
def scheduled(
    order: Sequence[int] | None = None, faults: Mapping[int, Fault] | None = None
) -> Generator[None, None, None]:
    """Within this block (or decorated function), smartpool calls that leave ``backend`` to
    smartpool run deterministically, one item per chunk, in the calling thread:

    - results complete in ``order`` (item indices; unnamed items complete after the named
      ones, in input order): ``imap(..., ordered=False)`` yields them in that order;
    - ``faults`` fail items with the real errors: ``"crash"`` raises
      :class:`~smartpool.WorkerCrashedError` (exit code -9), ``"timeout"``
      :class:`~smartpool.TaskTimeoutError`, an exception (or exception type) is raised as the
      item's own; ``.completed`` holds what completed before, as on a real pool. Faults are not
      retried (``retries=`` would meet them again).

    Indices count from 0 in each call; ``submit()`` is a call of one item (index 0), completed
    at once. Items run only when the caller waits for a result, so nothing runs ahead of it
    (and an input that waits for the call's own results, as a crawler's may, would wait for
    ever: feed such a call a list).

    Example:
        >>> import smartpool
        >>> from smartpool.testing import scheduled
        >>> with scheduled(order=[2, 0, 1]):
        ...     list(smartpool.imap(str.upper, ["a", "b", "c"], ordered=False))
        ['C', 'A', 'B']
        >>> with scheduled(faults={1: "crash"}):
        ...     try:
        ...         smartpool.parallel_map(str.upper, ["a", "b", "c"])
        ...     except smartpool.WorkerCrashedError as error:
        ...         print(error.index, error.completed)
        1 {0: 'A'}
    """
    plan = _Plan.checked(order, faults)
    if NAME not in registry.names():
        registry.register(NAME, f"{__name__}:ScheduledBackend", TRAITS)
    token = _plan.set(plan)
    try:
        with smartpool.config(backend=NAME, chunksize=1):  # type: ignore[arg-type]
            yield
    finally:
        _plan.reset(token)


TRAITS = BackendTraits(
    runs_inline=False,
    can_kill=True,
    needs_pickling=False,
    chunk_seconds=0.002,
    window_per_worker=WINDOW,
    completes_when_waited=True,
)


@dataclass(eq=False)
class _Chunk:
    items: list[Any]
    start: int
    future: Future[ChunkResult]
    rank: tuple[int, int]


class _Schedule:
    """One call's chunks, held until the caller waits, then completed in the planned order."""

    def __init__(self, call: Call, plan: _Plan) -> None:
        self.call, self.plan = call, plan
        self._ranks = {index: position for position, index in enumerate(plan.order)}
        self._lock = threading.Lock()
        self._held: list[_Chunk] = []
        self._served: object = None  # the last waiter a chunk was completed for

    def rank(self, start: int, size: int) -> tuple[int, int]:
        """(0, position) for an item named in the order, (1, index) after them; a chunk of
        several items completes with its last."""
        return max(
            (0, self._ranks[i]) if i in self._ranks else (1, i)
            for i in range(start, start + max(size, 1))
        )

    def hold(self, chunk: _Chunk) -> None:
        future = chunk.future
        lock = getattr(future._condition, "_lock", None) or threading.RLock()
        future._condition = _Paced(self, future, lock)
        future._waiters = _PacedWaiters(self, future, future._waiters)
        with self._lock:
            self._held.append(chunk)

    def release_until(self, future: Future[ChunkResult]) -> None:
        """(The caller waits for ``future``.) Complete chunks in order until it is done."""
        while not future.done():
            chunk = self._take()
            if chunk is None:
                return
            self.complete(chunk)

    def waiter_added(self, future: Future[ChunkResult], waiter: object) -> None:
        """(``concurrent.futures.wait`` on several chunks.) Complete one chunk for the waiter:
        the next in order, when its Future is the one the waiter was just added to."""
        first = isinstance(waiter, _FirstCompletedWaiter)
        chunk: _Chunk | None
        with self._lock:
            self._held = [c for c in self._held if not c.future.done()]  # cancelled ones
            if first and (self._served is waiter or not self._held):
                return
            if first:
                chunk = min(self._held, key=lambda c: c.rank)
            else:  # it waits for all or each: complete this one, the only one sure to tell it
                chunk = next((c for c in self._held if c.future is future), None)
            if chunk is None or chunk.future is not future:
                return
            self._held.remove(chunk)
            self._served = waiter
        self.complete(chunk)

    def _take(self) -> _Chunk | None:
        with self._lock:
            if not self._held:
                return None
            chunk = min(self._held, key=lambda c: c.rank)
            self._held.remove(chunk)
            return chunk

    def complete(self, chunk: _Chunk) -> None:
        """Run the chunk's items here, now, and complete its Future (unless it was cancelled)."""
        if not chunk.future.set_running_or_notify_cancel():
            return
        outcome = self._run(chunk)
        if isinstance(outcome, ChunkResult):
            settle(chunk.future, outcome)
        else:
            settle(chunk.future, error=outcome)

    def _run(self, chunk: _Chunk) -> ChunkResult | BaseException:
        values: list[Any] = []
        retried = 0
        for offset, item in enumerate(chunk.items):
            index = chunk.start + offset
            fault = self.plan.faults.get(index)
            if fault is None:
                result = run_chunk(self.call.fn, [item], index, self.call.retry)
                retried += result.retried
                if result.error is not None:
                    error: BaseException = result.error
                    return ChunkResult(chunk.start, values, error, 0.0, _WORKER, 0.0, retried)
                values.extend(result.values)
            elif fault == "crash":
                return smartpool.WorkerCrashedError(
                    f"worker process died while running item {index}: killed by SIGKILL "
                    "(a crash scheduled by smartpool.testing.scheduled)",
                    index=chunk.start,
                    exitcode=-9,
                )
            elif fault == "timeout":
                return smartpool.TaskTimeoutError(
                    f"item {index} did not finish within timeout={self.call.timeout} s "
                    "(a timeout scheduled by smartpool.testing.scheduled)",
                    index=index,
                    timeout=self.call.timeout,
                )
            else:
                raised = fault() if isinstance(fault, type) else copy.copy(fault)
                return ChunkResult(chunk.start, values, raised, 0.0, _WORKER, 0.0, retried)
        return ChunkResult(chunk.start, values, None, 0.0, _WORKER, 0.0, retried)


class _Paced(threading.Condition):
    """A chunk Future's condition: a caller about to wait on it first lets chunks complete."""

    def __init__(self, schedule: _Schedule, future: Future[ChunkResult], lock: Any) -> None:
        super().__init__(lock)
        self._schedule, self._future = schedule, future

    def wait(self, timeout: float | None = None) -> bool:
        self._schedule.release_until(self._future)
        if self._future.done():
            return True
        return super().wait(timeout)


class _PacedWaiters(list[Any]):
    """A chunk Future's waiters: a waiter joining lets the next chunk in order complete."""

    def __init__(
        self, schedule: _Schedule, future: Future[ChunkResult], waiters: Iterable[object]
    ) -> None:
        super().__init__(waiters)
        self._schedule, self._future = schedule, future

    def append(self, waiter: object) -> None:
        super().append(waiter)
        self._schedule.waiter_added(self._future, waiter)


class ScheduledBackend(Backend):
    """The backend behind :func:`scheduled` (registered as "scheduled" on first use)."""

    name = NAME

    def prepare(self, call: Call) -> object:
        return _Schedule(call, _plan.get() or _Plan())

    def submit(
        self,
        prepared: Any,
        items: Sequence[Any],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        schedule: _Schedule = prepared
        future = Future() if future is None else future
        chunk = _Chunk(list(items), start, future, schedule.rank(start, len(items)))
        if type(future) is Future:
            schedule.hold(chunk)
        else:  # a Future someone else waits through (submit()'s): nothing to pace, complete it
            schedule.complete(chunk)
        return future

    def shutdown(self, wait: bool = True) -> None:
        return None
