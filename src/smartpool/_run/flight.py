"""Chunks in flight: what a run keeps of each, and how it waits on, cancels and reports them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from typing import Any, NamedTuple, cast

from .._backends.base import Backend
from .._errors import SmartpoolError
from .._transport.remote import add_note
from .._work.task import ChunkResult, settle

#: Chunks a run may have pending in all (running, queued, or done and held back until an earlier
#: one is handed out, with results in input order), in windows: a long chunk at the head of the
#: order does not stop the other workers, up to this many windows of results held.
HELD_WINDOWS = 4


class Entry(NamedTuple):
    """A chunk in flight: its first index, how many items it runs, its Future, its backend."""

    start: int
    size: int
    future: Future[ChunkResult]
    backend: Backend


class StartsWith(Future[ChunkResult]):
    """A chunk's Future that starts ``outer`` (the caller's Future) when a worker takes it."""

    def __init__(self, outer: Future[Any]) -> None:
        super().__init__()
        self._outer = outer

    def set_running_or_notify_cancel(self) -> bool:
        if not super().set_running_or_notify_cancel():
            return False
        if self._outer.set_running_or_notify_cancel():
            return True
        self.set_exception(CancelledError())  # the caller cancelled between the two: skip it
        return False


def with_note(result: ChunkResult, backend: str) -> BaseException:
    """The chunk's error, annotated with the failing item, the backend and the worker."""
    error = result.error
    assert error is not None
    add_note(
        error,
        f"smartpool: item {result.error_index} failed on the {backend} backend ({result.worker})",
    )
    return error


def gather_completed(error: SmartpoolError, pending: deque[Entry]) -> None:
    """Add the results of chunks that completed meanwhile to the error's ``completed``."""
    completed: object = getattr(error, "completed", None)
    if isinstance(completed, dict):
        found = cast("dict[int, Any]", completed)
        for start, _, future, _ in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                values = future.result().values
                found.update(zip(range(start, start + len(values)), values, strict=True))


class Completions:
    """How many of a run's chunks completed: each chunk's Future counts itself when it is done
    (a callback), so that the caller learns how many still run, and waits for the next one to
    complete, without polling every chunk in flight (each poll takes that Future's lock) or
    installing a waiter on each, a few microseconds per chunk in flight that a short chunk's
    round trip on threads would pay over and over."""

    __slots__ = ("_changed", "_completed", "_watched")

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._watched = self._completed = 0

    def watch(self, future: Future[Any]) -> None:
        """Count ``future`` once it is done (at once if it is done already)."""
        with self._changed:
            self._watched += 1
        future.add_done_callback(self._one_done)

    def _one_done(self, _: Future[Any]) -> None:
        with self._changed:
            self._completed += 1
            self._changed.notify_all()

    @property
    def completed(self) -> int:
        """Chunks watched and done so far."""
        return self._completed

    @property
    def running(self) -> int:
        """Chunks watched and not done yet (running or queued). (A chunk counts as done a moment
        after its Future is: its callback runs last.)"""
        return self._watched - self._completed

    def wait_past(self, seen: int) -> None:
        """Wait until more than ``seen`` chunks completed, or until every chunk watched did."""
        with self._changed:
            while self._completed <= seen and self._completed < self._watched:
                self._changed.wait()


def has_room(pending: deque[Entry], window: int, ordered: bool, completions: Completions) -> bool:
    """Whether another chunk may be submitted: fewer than ``window`` chunks pending, or, with
    results in input order while the next one in order is not in (``head_is_late``), fewer
    than ``window`` running or queued: the chunks done behind it are held, and count no more."""
    if len(pending) < window:
        return True
    if not ordered or not head_is_late(pending, window):
        return False  # what is done can be handed out first
    return completions.running < window


def head_is_late(pending: deque[Entry], window: int) -> bool:
    """(Results in input order.) Whether the next result in order is not in while more chunks
    may be held: the run then waits for any chunk, not that one, so that a worker that finished
    another gets a new chunk (a long chunk holds up delivery, not the workers)."""
    return not pending[0].future.done() and len(pending) < HELD_WINDOWS * window


def wait_any(pending: deque[Entry], completions: Completions, paced: bool) -> None:
    """Wait until one of the chunks not done is done (through their Futures when ``paced``:
    see ``BackendTraits.completes_when_waited``)."""
    if paced:
        wait([e.future for e in pending if not e.future.done()], return_when=FIRST_COMPLETED)
    else:
        completions.wait_past(completions.completed)


def first_done(pending: deque[Entry], completions: Completions, paced: bool) -> Entry:
    """The first chunk in ``pending`` that is done, waiting for one if none is."""
    while True:
        seen = completions.completed  # read first: a chunk done after it wakes the wait below
        for entry in pending:
            if entry.future.done():
                return entry
        if paced:
            wait([e.future for e in pending], return_when=FIRST_COMPLETED)
        else:
            completions.wait_past(seen)


def cancel_chunks(entries: Iterable[Entry]) -> None:
    """Cancel the chunks not yet done, each through its backend."""
    by_backend: dict[int, tuple[Backend, list[Future[ChunkResult]]]] = {}
    for entry in entries:
        if not entry.future.done():
            by_backend.setdefault(id(entry.backend), (entry.backend, []))[1].append(entry.future)
    for backend, futures in by_backend.values():
        backend.cancel(futures)


def submit_only(
    backend: Backend,
    prepared: object,
    items: Sequence[Any],
    future: Future[Any],
    listed: Callable[[Entry], None],
    end: Callable[[], None],
) -> None:
    """Run a call's only item on ``backend`` and complete ``future`` with its value or error,
    then ``end`` the run. The chunk is ``listed`` before it is submitted (a cancel meanwhile
    finds it); ``future`` stays PENDING until a worker takes the item, and cancelling it before
    then keeps the item from running."""
    chunk = StartsWith(future)

    def finish(done: Future[ChunkResult]) -> None:
        try:
            result = done.result()
            if result.error is not None:
                settle(future, error=with_note(result, backend.name))
            else:
                settle(future, result.values[0])
        except BaseException as exc:  # cancelled, or the pool failed
            if not future.cancel():
                settle(future, error=exc)
        finally:
            end()

    def cancel_chunk(outer: Future[Any]) -> None:
        if outer.cancelled():
            chunk.cancel()

    chunk.add_done_callback(finish)
    future.add_done_callback(cancel_chunk)
    listed(Entry(0, 1, chunk, backend))
    try:
        backend.submit(prepared, items, 0, chunk)
    except BaseException:
        end()
        raise
