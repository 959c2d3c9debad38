"""Running one chunk of items: the code every backend executes, inline, on a thread or in a worker.

A chunk stops at its first failing item (after retries): the caller raises that failure anyway, and
stopping early means no item after it runs for nothing. The result carries the values computed so
far, the error and its index, the compute time (for adaptive chunk sizing), the thread's CPU time
and its time queued for a core (to tell computing from waiting on a busy machine), and where it
ran.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from operator import length_hint
from typing import Any

from .._transport.remote import add_note, drop_first_frame
from . import context
from . import deadline as deadlines
from .feed import Tail
from .reporting import REPORTING_CODE, Reporting
from .schedstat import own_stats, queued_seconds
from .setup import WorkerSetup

#: Under a time budget, a chunk's first ``CHECK_FIRST`` items run with a clock check after each;
#: if they took at least ``CHECKED_ITEM_SECONDS`` each on average, so do the rest (the check
#: then costs under 1 %). The rest of shorter items goes to the deadline watcher, which stops
#: the chunk at no cost per item; but every deadline armed wakes it later, to act or to find it
#: disarmed, and it takes the GIL from the running chunk each time: beside one busy program, the
#: serial backend's thread was switched out ~120 times a second of pure-Python items that way,
#: against ~30 for a plain loop.
CHECK_FIRST = 8
CHECKED_ITEM_SECONDS = 20e-6


@dataclass(frozen=True)
class RetryPolicy:
    """How often to re-run a failing item, on which errors, with what backoff between attempts."""

    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: float = 0.05
    max_backoff: float = 2.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * (2 ** (attempt - 1))))

    def covers_lost_worker(self, error: BaseException) -> bool:
        """Whether a chunk whose worker crashed or timed out (``error``) is run again.

        Only when ``retry_on`` names the error's type or a base of it other than the catch-alls
        ``Exception``/``BaseException``: re-running a whole chunk after a crash repeats the side
        effects of the items before the culprit, so it must be asked for, e.g. with
        ``retry_on=(WorkerCrashedError,)``, ``(TaskTimeoutError,)`` or ``(TimeoutError,)``.
        """
        return self.retries > 0 and any(
            isinstance(error, kind) and kind not in (Exception, BaseException)
            for kind in self.retry_on
        )

    def failed_after(self, attempts: int) -> str:
        """The note added to the error of an item that failed ``attempts`` times."""
        return f"smartpool: failed after {attempts} attempts (retries={self.retries})"


NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Call:
    """What every chunk of one call runs, as a backend sees it."""

    fn: Callable[[Any], Any]
    retry: RetryPolicy = NO_RETRY
    timeout: float | None = None
    #: What to pickle for a worker process (a decorated function pickles by reference).
    portable: object = None
    #: True when the items come from a list or tuple made before the call: one object holds the
    #: same contents for all the items that refer to it (its large buffers can be sent once).
    stored_items: bool = False
    #: Receives the steps the function reports (``smartpool.report_progress``); None: nobody
    #: listens, and workers send none.
    report: Callable[[int], None] | None = None
    #: BLAS/OpenMP threads each worker process gives its libraries, and each worker thread
    #: its OpenMP runtimes around a chunk; None: leave them alone.
    inner_threads: int | None = None

    def reporting_to(self, report: Callable[[int], None]) -> Call:
        """This call with the function's step reports going to ``report``."""
        return replace(self, fn=Reporting(self.fn, report), report=report)

    #: What each worker runs first (``initializer=``) and how long a process lives; a backend
    #: setting, passed when the run leases a pool (None: plain shared pools).
    setup: WorkerSetup | None = None
    #: Whether a chunk's thread CPU time and time queued for a core are measured (four system
    #: calls a chunk, ~3 us): off where nobody reads ``ChunkResult.cpu_seconds``.
    measure_cpu: bool = True


@dataclass
class ChunkResult:
    """Outcome of one chunk starting at input index ``start``."""

    start: int
    values: list[Any]
    error: BaseException | None
    seconds: float
    #: Where it ran ("process 123, thread 'name'"), for error notes: set with ``error``.
    worker: str
    #: CPU time of the thread that ran the chunk: with ``seconds``, tells computing from waiting.
    cpu_seconds: float = 0.0
    #: Attempts that failed and were run again (``retries=``), over all the chunk's items.
    retried: int = 0
    #: Part of ``seconds`` the thread spent runnable but queued for a core (a busy machine):
    #: neither computing nor waiting. 0.0 where not measured (see ``schedstat``).
    queued_seconds: float = 0.0

    @property
    def active_seconds(self) -> float:
        """``seconds`` less the time queued for a core: what the chunk took with a core free."""
        return max(self.cpu_seconds, self.seconds - self.queued_seconds)

    @property
    def error_index(self) -> int:
        """Index (in the whole input) of the item that raised ``error``."""
        return self.start + len(self.values)


def settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> bool:
    """Complete ``future`` unless it is already done (timed out, cancelled); True if it was set."""
    try:  # (no done() first: that would take the Future's lock twice per call)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except Exception:  # InvalidStateError: another thread settled it first
        return False
    return True


_described = threading.local()
#: Bumped in a forked child, so that a description kept before the fork is made anew.
_forks = [0]
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


def describe_worker() -> str:
    """Where this code runs, for error notes: "process 123, thread 'name'" (kept per thread
    and renewed after a fork or a rename: a single call's chunk would spend a tenth of its
    time formatting it, or asking the system for the process id)."""
    kept: tuple[int, threading.Thread, str, str] | None = getattr(_described, "kept", None)
    if kept is not None and kept[0] == _forks[0]:
        thread = kept[1]
        if thread.name == kept[2]:
            return kept[3]
    thread = threading.current_thread()
    pid, name = os.getpid(), thread.name
    described = f"process {pid}, thread {name!r}"
    _described.kept = (_forks[0], thread, name, described)
    return described


def run_chunk(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    start: int,
    retry: RetryPolicy = NO_RETRY,
    budget: float | None = None,
    after: list[Any] | None = None,
    measure_cpu: bool = True,
) -> ChunkResult:
    """Apply ``fn`` to each item in order; stop at the first failure that retries do not fix.

    With a ``budget`` (seconds), stop early once it is spent, leaving the rest of the items
    unconsumed (an iterator is read only as far as items run): inline execution can then notice
    that items became far costlier than planned without first running a whole oversized chunk.

    ``after`` holds the results of the items just before ``start``: the values are appended to
    it and the result covers those items too. Joining two long result lists afterwards would
    copy one of them into fresh memory, which costs as much as a few percent of a tiny job.
    """
    stats = own_stats() if measure_cpu else None
    began_queued = queued_seconds(stats) if measure_cpu else 0.0
    began, began_cpu = time.perf_counter(), time.thread_time() if measure_cpu else 0.0
    values: list[Any] = [] if after is None else after
    start -= len(values)
    error: BaseException | None = None
    retried = 0
    if retry.retries == 0 and budget is None:
        try:
            values.extend(map(fn, items))  # keeps the values computed before a failure
        except BaseException as exc:
            if _may_be_ctrl_c(exc):
                raise
            _drop_own_frames(exc)
            error = exc
    elif retry.retries == 0:
        error = _run_within(fn, items, values, began + (budget or 0.0))
    else:
        deadline = None if budget is None else began + budget
        for item in items:
            ok, outcome, attempts = _call_with_retries(fn, item, retry)
            retried += attempts - 1
            if not ok:
                error = outcome
                break
            values.append(outcome)
            if deadline is not None and time.perf_counter() >= deadline:
                break
    seconds = time.perf_counter() - began
    cpu_seconds = time.thread_time() - began_cpu if measure_cpu else 0.0
    queued = 0.0 if stats is None else max(0.0, queued_seconds(stats) - began_queued)
    # (Where it ran is told only with an error: describing it is a tenth of a trivial call.)
    worker = "" if error is None else describe_worker()
    return ChunkResult(start, values, error, seconds, worker, cpu_seconds, retried, queued)


def _run_within(
    fn: Callable[[Any], Any], items: Iterable[Any], values: list[Any], deadline: float
) -> BaseException | None:
    """``values.extend(map(fn, items))``, stopped after the item in hand once ``deadline`` has
    passed: by a clock check after each item when the first ones are long enough for it to
    cost nothing measurable, else by the deadline watcher, which costs nothing per item."""
    if isinstance(items, Tail):  # the end of a list: iterate it in place, stop at its end
        iterator, end = iter(items), len(items.sequence)
    else:
        sequence = items if isinstance(items, (list, tuple, range)) else list(items)
        iterator, end = iter(sequence), len(sequence)
    append, clock = values.append, time.perf_counter
    token = None
    try:  # (the loop is here: a frame of its own would show in the item's traceback)
        began = clock()
        for checked, item in enumerate(iterator, 1):
            append(fn(item))
            now = clock()
            if now >= deadline:
                break
            if (
                checked == CHECK_FIRST
                and now - began < CHECK_FIRST * CHECKED_ITEM_SECONDS
                and length_hint(iterator)  # (a deadline armed for nothing wakes the watcher)
            ):
                token = deadlines.watcher.arm(iterator, end, deadline)
                values.extend(map(fn, iterator))
                break
    except BaseException as exc:
        if _may_be_ctrl_c(exc):
            raise
        _drop_own_frames(exc)
        return exc
    finally:
        if token is not None:
            deadlines.watcher.disarm(token)
    return None


def _call_with_retries(
    fn: Callable[[Any], Any], item: Any, retry: RetryPolicy
) -> tuple[bool, Any, int]:
    """(succeeded, value or error, attempts made)."""
    attempt = 1
    while True:
        try:
            return True, fn(item), attempt
        except BaseException as exc:
            if _may_be_ctrl_c(exc):
                raise
            if (
                attempt <= retry.retries
                and isinstance(exc, retry.retry_on)
                and not isinstance(exc, KeyboardInterrupt)  # a request to stop, never retried
            ):
                time.sleep(retry.delay(attempt))
                attempt += 1
                continue
            _drop_own_frames(exc)
            if attempt > 1:
                add_note(exc, retry.failed_after(attempt))
            return False, exc, attempt


def _drop_own_frames(exc: BaseException) -> None:
    """Start the traceback at the user's function: past the chunk's loop here, and past the
    wrapper that routes ``report_progress`` when the call shows progress."""
    drop_first_frame(exc)
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None and tb.tb_frame.f_code is REPORTING_CODE:
        exc.__traceback__ = tb.tb_next


def _may_be_ctrl_c(exc: BaseException) -> bool:
    """Whether ``exc`` may be the user's Ctrl-C, which stops the whole call rather than an item.

    A KeyboardInterrupt the function raised itself (on a pool thread or in a worker process,
    where no Ctrl-C can land) is the item's error like any other, so it reaches the caller as
    itself, with the item's note, on every backend.
    """
    return isinstance(exc, KeyboardInterrupt) and context.may_be_ctrl_c()
