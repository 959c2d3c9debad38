"""One call, one :class:`Run`: probe, plan, feed chunks to a leased backend, yield results.

Every entry point goes through a Run: ``parallel_map`` and ``imap`` (and the decorators' ``.map``
and ``.imap``) iterate :meth:`Run.results`; ``submit`` is :meth:`Run.submit_one`. The run is the
one place that knows the call's state. It keeps at most ``window`` chunks running or queued (a
chunk done but held back until an earlier one is handed out frees its place, up to a bound on
the chunks held) and reads input only when it submits, so an endless generator streams with
bounded memory. Results come
out in input order (or completion order with ``ordered=False``); the first failing item in that
order raises.

An automatic run first times some items in the caller (their results are kept), then plans, and
after each chunk it may ask the planner for a new plan, submitting to the new backend from then
on while chunks in flight finish where they are. Futures are the only currency between the run
and a backend, so nothing is lost or repeated.

:meth:`Run.cancel` works from any thread; a run that ends with work in flight (an error, a
closed ``imap``, Ctrl-C) cancels it the same way: chunks not started never start, running ones
are stopped where the backend can kill (worker processes are killed and replaced) and abandoned
elsewhere. The run holds a lease on every pool it used until it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import replace
from typing import Any

from .._backends import registry
from .._backends.base import BackendTraits, InlineBackend
from .._errors import SerializationError, SmartpoolError
from .._options import Options
from .._routing import planner
from .._routing.memory import recall
from .._transport.remote import add_note
from .._work import blas
from .._work.feed import Feed, length_of
from .._work.task import Call, ChunkResult
from . import steering
from .beside import Processes
from .events import Observer, Progress
from .flight import (
    Completions,
    Entry,
    cancel_chunks,
    first_done,
    gather_completed,
    has_room,
    head_is_late,
    submit_only,
    wait_any,
    with_note,
)
from .inner import InnerThreads

logger = logging.getLogger("smartpool")


class Run:
    """One call's journey: items in, chunks of results out, following (and revising) a plan.

    ``fn`` is the function as the caller passed it (its decisions are kept under it); ``call``
    is what the chunks run. A run that needs no probe plans at once, so that a function that
    cannot be sent to its backend fails at the call, before any work.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        call: Call,
        items: Iterable[Any],
        options: Options,
        *,
        hint: planner.Hint | None,
        observers: tuple[Observer, ...] = (),
        standalone: bool = False,
    ) -> None:
        """``standalone``: one call submitted on its own (``submit``), planned without a probe,
        as for an input of unknown length (its item must not run inline in the caller)."""
        self._fn, self._call, self._options, self._hint = fn, call, options, hint
        self._n_items = length_of(items)
        self._feed = Feed(items)
        self._lock = threading.Lock()
        self._wake = threading.Event()  # a result or an input item arrived (input read ahead)
        self._pending: deque[Entry] = deque()
        self._completions = Completions()  # of the chunks listed in _pending
        self._paced = False  # a chunk listed completes only when waited for (see flight)
        self._leases: list[registry.Lease] = []
        self._cancelled = self._ended = False
        self._inner = InnerThreads()
        self._progress = Progress(observers, self._n_items) if observers else None
        if self._progress is not None:
            self._call = call.reporting_to(self._progress.step)
        self._next_index = 0
        self._done: list[Any] | None = None  # the probe's results, not yet handed out
        self._replanner: steering.Replanner | None = None  # when the plan came from a measurement
        self._beside: Processes | None = None  # where the probe sent items, if it did
        self.plan: planner.Plan | None = None
        self._began, self._replans, self._outcome = time.perf_counter(), 0, "finished"
        if standalone:
            self._use(planner.make_plan(fn, options, hint=hint, n_items=None))
        elif not planner.needs_probe(options, hint, self._n_items):
            self._use(planner.make_plan(fn, options, hint=hint, n_items=self._n_items))

    # -- from any thread ----------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop the run: nothing more is submitted, chunks in flight are cancelled (killed on
        processes, abandoned on threads), and the caller's wait ends in ``CancelledError``."""
        with self._lock:
            if self._ended or self._cancelled:
                return
            self._cancelled = True
            pending = list(self._pending)
        cancel_chunks(pending)
        self._feed.stop()  # a caller waiting for input (read ahead) stops waiting

    def close(self) -> None:
        """End the run where it stands: cancel what is in flight, release its pools (once)."""
        self._end()

    # -- in the caller ------------------------------------------------------------------------

    def results(self) -> Iterator[list[Any]]:
        """Lists of results, one per chunk, in the order the caller asked for.

        Closing the iterator early (or dropping it) cancels the run.
        """
        try:
            if self._cancelled:
                raise CancelledError()
            if self._progress is not None:
                self._progress.begin()
            # An iterator is read on a thread of its own, so that results are handed out while
            # it waits (a crawler's input is fed by its results); a sequence never waits.
            self._feed.read_ahead(self._wake_up)
            if self.plan is None and not (yield from self._probe()):
                pass  # the probe ran every item (or failed)
            else:
                yield from self._chunks()
            if self._cancelled:  # the input stopped short because of it
                raise CancelledError()
            failed = self._feed.failed
            if failed is not None:  # every result before it was delivered: now the input's error
                add_note(failed, f"smartpool: raised by the input after {self._feed.read} items")
                raise failed
        except KeyboardInterrupt:
            self.cancel()  # before the finally below: the workers stop now, not after a wait
            self._outcome = "interrupted"
            raise
        except GeneratorExit:
            self._outcome = "left early"
            raise
        except BaseException as exc:
            self._outcome = "cancelled" if self._cancelled else f"failed ({type(exc).__name__})"
            raise
        finally:
            self._end()

    def submit_one(self, future: Future[Any]) -> None:
        """Run the call's only item and complete ``future`` with its value or error.

        ``future`` stays PENDING until a worker takes the item; cancelling it before then keeps
        the item from running.
        """
        assert self.plan is not None, "a run of one item is planned when made"
        submit_only(
            self._backend, self._prepared, self._feed.take(1), future, self._list, self._end
        )

    # -- the phases ---------------------------------------------------------------------------

    def _probe(self) -> Generator[list[Any], None, bool]:
        """Time the first items in the caller (keeping their results) and plan from them.

        Returns False (as the generator's value) when the probe ran every item or one failed.
        """
        fn, options, n_items = self._fn, self._options, self._n_items
        measurement = recall(fn)
        done, note = 0, None
        if measurement is None:
            beside = Processes.for_run(fn, self._call, options, self._sent, self._adopt)
            with blas.limited(None if beside is None else beside.caller_threads()):
                probe = steering.probe(fn, self._call, self._feed, options, n_items, beside)
            if self._progress is not None:
                error = None if probe.failed is None else probe.failed.error
                self._progress.chunk_done(ChunkResult(0, probe.values, error, 0.0, ""))
            if probe.sent and beside is not None:  # the caller's items join those sent
                self._beside = beside
                yield from beside.join(probe, self._pending, self._lock)  # or raise its error
                probe, note = replace(probe, values=[], exhausted=False), beside.reason(probe)
            if probe.failed is not None:
                if probe.values:
                    yield probe.values
                raise with_note(probe.failed, "serial")
            measurement, done = probe.measurement, probe.taken
            if probe.exhausted and self._feed.ended:
                if probe.values:
                    yield probe.values
                return False
            self._done = probe.values or None
        n_left = None if n_items is None else n_items - done
        plan, probed = steering.plan_measured(fn, options, n_left, measurement)
        if note is not None:
            plan = replace(plan, reasons=(*plan.reasons, note))
        self._replanner = steering.Replanner(probed, options, n_items)
        self._next_index = done
        self._use(plan)
        if self._cancelled:
            raise CancelledError()
        return True

    def _chunks(self) -> Iterator[list[Any]]:
        pending, ordered = self._pending, self._options.ordered
        exhausted = False
        if self._done is not None and (
            self._feed.reading or not self._backend_traits().runs_inline
        ):
            done, self._done = self._done, None
            yield done
        while True:
            while not exhausted and self._room():
                if self._cancelled:
                    raise CancelledError()
                submitted = self._submit_next(wait=not pending)
                if submitted is None:  # the input has nothing yet: see to the results meanwhile
                    break
                exhausted = not submitted
            if not pending:
                return
            if not exhausted and self._room() and not self._ready(pending):
                continue  # the input gave more before a result came: submit it first
            if ordered and not exhausted and head_is_late(pending, self._window):
                wait_any(pending, self._completions, self._paced)  # then a worker that
                continue  # finished a chunk gets a new one
            entry = pending[0] if ordered else first_done(pending, self._completions, self._paced)
            try:
                result = entry.future.result()
            except SmartpoolError as error:
                gather_completed(error, pending)
                raise
            with self._lock:
                pending.remove(entry)
            self._inner.ended(entry.future)
            if result.error is not None:
                if result.values:  # the items before the failing one still count
                    yield result.values
                raise with_note(result, entry.backend.name)
            self._learn(result, entry.size)
            yield result.values

    def _room(self) -> bool:
        return has_room(self._pending, self._window, self._options.ordered, self._completions)

    def _ready(self, pending: deque[Entry]) -> bool:
        """Wait until the next result is ready (True) or the input read ahead has more (False)."""
        if not self._feed.reading:
            return True
        while True:
            self._wake.clear()  # before looking: a wake-up from now on is not missed
            if self._options.ordered:
                if pending[0].future.done():
                    return True
            elif any(entry.future.done() for entry in pending):
                return True
            if self._feed.ready():
                return False
            # Some items but not a chunk yet: look again when the input may have paused.
            self._wake.wait(Feed.GRACE_SECONDS if self._feed.polled() else None)

    def _submit_next(self, wait: bool = True) -> bool | None:
        """Send the next chunk to the backend (listed in ``_pending``); False once the input is
        used up, None when ``wait`` is False and the input (read ahead) has nothing yet.

        The chunk is listed before it is submitted, so that a cancel (or Ctrl-C) arriving
        meanwhile still finds it. An inline backend runs the chunk here and stops at its time
        budget; the items it did not run go back to the input, to be planned anew.
        """
        start, backend = self._next_index, self._backend
        left = None if self._n_items is None else self._n_items - start
        size = self._sizer.next_size(left)
        items = self._feed.take(size) if wait else self._feed.take_ready(size)
        if items is None:
            return None
        done, self._done = self._done, None
        future: Future[ChunkResult] = Future()
        if not items:
            if not done:
                return False
            # Nothing left to join them to: they come out as a chunk of their own.
            future.set_result(ChunkResult(start - len(done), done, None, 0.0, backend.name))
            self._list(Entry(start - len(done), 0, future, backend))
            return True
        if self._backend_traits().runs_inline:
            if done:
                assert isinstance(backend, InlineBackend)  # else _chunks() yielded them first
                future = backend.submit_after(self._prepared, items, start, done)
            else:
                future = backend.submit(self._prepared, items, start)
            result = future.result()
            ran = result.error_index - start + (result.error is not None)
            if ran < len(items):
                self._feed.give_back(items[ran:])
            if self._progress is not None:
                self._progress.chunk_done(result, ran - (result.error is not None))
            self._next_index += ran
            # The entry's start is that of its values, which include ``done`` when joined.
            self._list(Entry(start - len(done) if done else start, ran, future, backend))
            return True
        if self._progress is not None:
            self._progress.watch(future)
        if self._feed.reading:  # the caller may wait for this result or for more input
            future.add_done_callback(self._wake_up)
        self._list(Entry(start, len(items), future, backend))
        self._next_index += len(items)
        self._inner.sent(future)
        backend.submit(self._prepared, items, start, future)
        return True

    def _list(self, entry: Entry) -> None:
        self._completions.watch(entry.future)
        with self._lock:
            self._pending.append(entry)
            if not self._cancelled and not self._ended:
                return
        cancel_chunks([entry])  # cancel() (or the end) came first and could not see it

    def _sent(self, entry: Entry) -> None:
        """A chunk the probe sent to worker processes (see ``beside``), listed as if submitted."""
        if self._progress is not None:
            self._progress.watch(entry.future)
        if self._feed.reading:
            entry.future.add_done_callback(self._wake_up)
        self._list(entry)

    def _adopt(self, lease: registry.Lease) -> bool:
        """Hold ``lease`` until the run ends (False, and let go of it, if it has ended)."""
        with self._lock:
            if not self._ended:
                self._leases.append(lease)
                return True
        lease.release()
        return False

    def _wake_up(self, _: object = None) -> None:
        self._wake.set()

    def _use(self, plan: planner.Plan) -> None:
        """Switch to ``plan``: the next chunk goes to its backend, leased and prepared here."""
        lease = registry.lease(plan.backend, plan.max_workers, setup=self._call.setup)
        self._paced = self._paced or registry.traits(plan.backend).completes_when_waited
        call = self._inner.call_for(self._call, plan)
        try:  # pickling, unless the probe's items went to that pool already
            prepared = (
                None if self._beside is None else self._beside.prepared_for(lease.backend, call)
            )
            if prepared is None:
                prepared = lease.backend.prepare(call)
        except BaseException:
            lease.release()
            raise
        with self._lock:
            self._leases.append(lease)
        self._inner.use(plan)
        logger.debug("plan for %s: %s", steering.name(self._fn), plan)
        replanned = self.plan is not None
        self._replans += replanned
        self.plan, self._backend, self._prepared = plan, lease.backend, prepared
        left = None if self._n_items is None else max(0, self._n_items - self._next_index)
        self._sizer, self._window = steering.sizing(plan, lease.backend, left)
        if self._replanner is not None:
            self._replanner.reset()
        if self._progress is not None:
            self._progress.moved(plan.backend, plan.max_workers, replanned, plan.item_seconds)

    def _backend_traits(self) -> BackendTraits:
        assert self.plan is not None
        return registry.traits(self.plan.backend)

    def _learn(self, result: ChunkResult, n: int) -> None:
        """Note that ``n`` items (the ones this chunk ran) took ``result.seconds``; re-plan if
        they cost far more or less than the plan assumed."""
        self._sizer.observe(n, result.seconds)
        if self._replanner is None:
            return
        assert self.plan is not None
        new = self._replanner.observe(self.plan, result, n, self._next_index)
        if new is not None:
            try:
                self._use(new)
            except SerializationError as exc:  # the better backend cannot take this function
                logger.debug("not re-planned to %s: %s", new.backend, exc)

    def _end(self) -> None:
        """Cancel what is still in flight and let go of every pool (once)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            pending, leases = list(self._pending), self._leases
            self._pending.clear()
            self._leases = []
        cancel_chunks(pending)
        self._feed.stop()
        for lease in leases:
            lease.release()
        self._inner.close()
        if logger.isEnabledFor(logging.DEBUG):
            steering.log_end(
                self._fn, self._outcome, self._feed.read, self._began, self.plan, self._replans
            )
        if self._progress is not None:
            self._progress.finish()
