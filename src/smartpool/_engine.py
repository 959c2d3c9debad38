"""The one executor loop: feed chunks to a backend, collect Futures, yield results, rebuild errors.

Every backend goes through :class:`Run`. It keeps at most ``2 x workers`` chunks in flight and pulls
input only when it submits, so an endless generator streams with bounded memory. Results come out
in input order (or completion order with ``ordered=False``); the first failing item in that order
raises, and everything still pending is cancelled.

An automatic run watches itself: after each chunk it may ask the planner for a new plan, and from
then on submits to the new backend while chunks already in flight finish where they are. Futures
are the only currency between the loop and a backend, so nothing is lost or repeated.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, cast

from . import _backends
from ._backends._base import Call, InlineBackend
from ._chunking import ChunkSizer, Feed
from ._errors import SerializationError, SmartpoolError
from ._planner import Options, Plan
from ._probe import Measurement
from ._remote import add_note
from ._task import ChunkResult, RetryPolicy

logger = logging.getLogger("smartpool")

#: A chunk in flight: its first index, its size, its Future and the backend it went to.
_Entry = tuple[int, int, "Future[ChunkResult]", str]
#: Asked after each chunk with what was observed since the last plan; returns a new plan or None.
Replanner = Callable[[Plan, Measurement, int], "Plan | None"]
#: Observe at least this much work before asking for a new plan.
_REPLAN_MIN_SECONDS = 0.02


def length_of(iterable: Iterable[Any]) -> int | None:
    """The number of items if the input knows it without being consumed, else None."""
    if isinstance(iterable, Sized) and not isinstance(iterable, Iterator):
        try:
            return len(iterable)
        except TypeError:
            return None
    return None


def make_call(
    fn: Callable[[Any], Any],
    options: Options,
    portable: object = None,
    items: Iterable[Any] | None = None,
) -> Call:
    retry = RetryPolicy(options.retries, options.retry_on)
    stored = type(items) in (list, tuple)  # not subclasses: their items could be made on access
    return Call(fn, retry, options.timeout, portable if portable is not None else fn, stored)


class Run:
    """One call's journey: items in, chunks of results out, following (and revising) a plan."""

    def __init__(
        self,
        call: Call,
        feed: Feed,
        plan: Plan,
        *,
        ordered: bool,
        n_items: int | None,
        first_index: int = 0,
        done: list[Any] | None = None,
        replanner: Replanner | None = None,
    ) -> None:
        """``done``: results already computed for the items before ``first_index`` (the
        probe's); they come out first, joined to the first chunk when that one runs inline."""
        self._call = call
        self._done = done
        self._feed = feed
        self._ordered = ordered
        self._n_items = n_items
        self._next_index = first_index
        self._replanner = replanner
        self._observed = [0, 0.0, 0.0]  # items, seconds, cpu seconds since the plan was made
        self._use(plan)

    def _use(self, plan: Plan) -> None:
        """Switch to ``plan``: the next chunk goes to its backend (prepared here, eagerly)."""
        backend = _backends.get_backend(plan.backend, plan.max_workers)
        prepared = backend.prepare(self._call)  # may raise SerializationError: nothing changed yet
        logger.debug("plan for %s: %s", getattr(self._call.fn, "__qualname__", "?"), plan)
        self.plan, self._backend, self._prepared = plan, backend, prepared
        left = None if self._n_items is None else max(0, self._n_items - self._next_index)
        self._sizer = ChunkSizer.for_run(
            chunksize=plan.chunksize,
            n_items=left,
            workers=plan.max_workers,
            target_seconds=plan.target_chunk_seconds,
            item_seconds=plan.item_seconds,
            inline=backend.runs_inline,
        )
        self._window = 1 if plan.backend == "serial" else 2 * plan.max_workers
        self._observed = [0, 0.0, 0.0]

    def chunks(self) -> Iterator[list[Any]]:
        """Lists of results, one per chunk, in the order the caller asked for."""
        pending: deque[_Entry] = deque()
        exhausted = False
        if self._done and not self._backend.runs_inline:
            yield self._done
            self._done = None
        try:
            while True:
                while not exhausted and len(pending) < self._window:
                    entry = self._submit_next()
                    if entry is None:
                        exhausted = True
                        break
                    pending.append(entry)
                if not pending:
                    return
                entry = pending.popleft() if self._ordered else _pop_first_done(pending)
                result = _outcome(entry, pending)
                if result.error is not None:
                    if result.values:  # the items before the failing one still count
                        yield result.values
                    raise with_note(result, entry[3])
                self._learn(result, entry[1])
                yield result.values
        except KeyboardInterrupt:
            _cancel(pending)
            self._backend.abort()
            _backends.discard(self._backend)
            raise
        finally:
            _cancel(pending)

    def _submit_next(self) -> _Entry | None:
        """Send the next chunk to the backend; None once the input is used up.

        An inline backend stops a chunk at its time budget; the items it did not run go back
        to the input, to be planned anew.
        """
        start, name = self._next_index, self._backend.name
        items = self._feed.take(self._sizer.next_size())
        done, self._done = self._done, None
        if not items:
            if done:  # nothing left to join them to
                future: Future[ChunkResult] = Future()
                future.set_result(ChunkResult(start - len(done), done, None, 0.0, name))
                return (start, 0, future, name)
            return None
        if done:
            assert isinstance(self._backend, InlineBackend)  # else chunks() yielded them first
            future = self._backend.submit_after(self._prepared, items, start, done)
        else:
            future = self._backend.submit(self._prepared, items, start)
        count = len(items)
        if self._backend.runs_inline:  # already done; it may have stopped at its time budget
            result = future.result()
            ran = result.error_index - start + (result.error is not None)
            if ran < count:
                self._feed.give_back(items[ran:])
            count = ran
        self._next_index += count
        # The entry's start is that of its values, which include ``done`` when it was joined.
        return (start - len(done) if done else start, count, future, name)

    def _learn(self, result: ChunkResult, n: int) -> None:
        """Note that ``n`` items (the ones this chunk ran) took ``result.seconds``."""
        self._sizer.observe(n, result.seconds)
        if self._replanner is None or n == 0:
            return
        observed = self._observed
        observed[0] += n
        observed[1] += result.seconds
        observed[2] += result.cpu_seconds
        if observed[1] < _REPLAN_MIN_SECONDS:
            return
        items, seconds, cpu = observed
        measurement = Measurement(
            call_seconds=seconds / items,
            cpu_fraction=min(1.0, cpu / seconds) if seconds > 0 else 1.0,
            releases_gil=None,
            picklable=None,
            transfer_seconds=0.0,
            samples=int(items),
        )
        new = self._replanner(self.plan, measurement, self._next_index)
        observed[:] = [0, 0.0, 0.0]
        if new is not None:
            try:
                self._use(new)
            except SerializationError as exc:  # the better backend cannot take this function
                logger.debug("not re-planned to %s: %s", new.backend, exc)


def with_note(result: ChunkResult, backend: str) -> BaseException:
    """The chunk's error, annotated with the failing item, the backend and the worker."""
    error = result.error
    assert error is not None
    add_note(
        error,
        f"smartpool: item {result.error_index} failed on the {backend} backend ({result.worker})",
    )
    return error


def _outcome(entry: _Entry, pending: deque[_Entry]) -> ChunkResult:
    try:
        return entry[2].result()
    except SmartpoolError as error:
        completed: object = getattr(error, "completed", None)
        if isinstance(completed, dict):
            found = cast("dict[int, Any]", completed)
            for start, _, future, _ in pending:
                if future.done() and not future.cancelled() and future.exception() is None:
                    values = future.result().values
                    found.update(zip(range(start, start + len(values)), values, strict=True))
        raise


def _pop_first_done(pending: deque[_Entry]) -> _Entry:
    done = [e for e in pending if e[2].done()]
    if not done:
        wait([e[2] for e in pending], return_when=FIRST_COMPLETED)
        done = [e for e in pending if e[2].done()]
    pending.remove(done[0])
    return done[0]


def _cancel(pending: deque[_Entry]) -> None:
    for _, _, future, _ in pending:
        future.cancel()
    pending.clear()
