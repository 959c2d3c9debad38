"""``smartpool.Executor``: a ``concurrent.futures.Executor`` that routes each function it is given.

Each submitted function gets a route, made on its first submit and kept: the planner's plan for
it (a decorator's hint, else a kept measurement, else its first calls run on threads and are
timed there, see ``_routing.learning``) and a :class:`~smartpool._run.calls.Lane` on the warm
pool that plan names. Lanes are shared by the routes that need the same pool, and held (leased)
until the executor is shut down and its last call has ended, so no pool stops under its work.

Only this executor's calls are tracked, waited for and cancelled: the pools are shared with
every other caller in the process, who never sees another executor's ``shutdown``.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import inspect
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from . import _config, _options
from ._api import hint_of, raw_function, resolve_options
from ._map_results import MapResults, progress_for, results_of
from ._progress.calls import MapProgress
from ._routing import call_plans, learning
from ._routing.memory import recall
from ._routing.planner import Plan
from ._run.calls import Lane, OneCall
from ._work.carried import call_batch
from ._work.setup import WorkerSetup
from ._work.task import ChunkResult, RetryPolicy

logger = logging.getLogger("smartpool")

R = TypeVar("R")

_live: weakref.WeakSet[Executor] = weakref.WeakSet()
_exiting = False


@dataclass(eq=False)
class _Route:
    """Where one function's calls go: its plan's lane; a learning route is replaced once its
    function was measured (``stale``)."""

    lane: Lane
    learning: bool
    key: weakref.ref[Any] | None = None
    stale: bool = field(default=False)

    def learned_from(self, result: ChunkResult) -> None:
        fn = None if self.key is None else self.key()
        if self.stale or fn is None or result.error is not None:
            return
        if learning.observe(fn, result.active_seconds, result.cpu_seconds) is not None:
            self.stale = True  # the next submit asks the planner again


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` that sends each function where it runs best.

    ``backend="auto"`` (the default) routes each submitted function on its own: a
    ``@cpu_bound`` or ``@io_bound`` hint decides; else a kept measurement (from an earlier
    ``parallel_map`` or ``explain``); else its first calls run on threads and are timed there,
    and its later calls go where they run best. ``backend="thread"`` or ``"process"`` sends
    every call there. ``max_workers`` caps the workers this executor's calls use; ``timeout``,
    ``retries`` and ``retry_on`` apply to each call as in ``parallel_map``. With an
    ``initializer``, ``initializer(*initargs)`` runs once in each of the executor's workers,
    which are its own (private pools, never shared with other calls); ``max_tasks_per_child``
    replaces a worker process after that many calls.

    Calls run on smartpool's warm pools, shared with the rest of the process; ``shutdown``
    waits for and cancels only this executor's calls. A crashed worker fails its call with
    :class:`WorkerCrashedError` (a ``BrokenProcessPool``) and the executor stays usable.

    Example:
        >>> import smartpool
        >>> with smartpool.Executor(backend="thread") as executor:
        ...     future = executor.submit(pow, 2, 10)
        ...     print(future.result(), list(executor.map(abs, [-1, -2])))
        1024 [1, 2]
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        backend: _options.BackendChoice = "auto",
        timeout: float | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
    ) -> None:
        if max_workers is not None:
            if isinstance(max_workers, bool) or not isinstance(cast(object, max_workers), int):
                raise TypeError(f"max_workers must be an int or None, got {max_workers!r}")
            if max_workers <= 0:
                raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
        given: dict[str, Any] = {"max_workers": max_workers, "timeout": timeout}
        given = {k: v for k, v in given.items() if v is not None}
        if backend != "auto":
            given["backend"] = backend
        if retries:
            given["retries"] = retries
        if retry_on != (Exception,):
            given["retry_on"] = retry_on
        if initializer is not None or initargs:
            given["initializer"], given["initargs"] = initializer, initargs
        if max_tasks_per_child is not None:
            given["max_tasks_per_child"] = max_tasks_per_child
        checked = _config.resolve(given)  # a bad argument fails here, before any call
        self._given = given
        #: What each worker runs first, and how long a worker process lives; workers set up by
        #: an ``initializer`` are this executor's own (private pools).
        self._setup = (
            None
            if checked.initializer is None and checked.max_tasks_per_child is None
            else WorkerSetup(checked.initializer, checked.initargs, checked.max_tasks_per_child)
        )
        self._lock = threading.RLock()
        self._routes: weakref.WeakKeyDictionary[Any, _Route] = weakref.WeakKeyDictionary()
        self._last: _Route | None = None
        self._lanes: dict[tuple[Any, ...], Lane] = {}
        #: This executor's calls not done yet (each leaves the set when it is done).
        self._running: set[Future[Any]] = set()
        self._ending = 0  # calls still running after shutdown(wait=False)
        self._shut = False
        _live.add(self)
        # An executor dropped without shutdown() lets go of its pools once its calls end.
        weakref.finalize(self, _let_go, self._lanes, self._running)

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)``; its Future stays PENDING until a worker starts it,
        so ``cancel()`` works until then.

        Raises ``RuntimeError`` after :meth:`shutdown` (or at interpreter exit), ``TypeError``
        for a coroutine function (await it, or use :func:`smartpool.asubmit`).
        """
        return self._submit(fn, args, kwargs)

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        batch: bool = False,
        progress: MapProgress | None = None,
    ) -> OneCall:
        """Send one call of ``fn``, or with ``batch`` one call per tuple of ``args[0]``; a map's
        ``progress`` counts it."""
        with self._lock:
            if self._shut or _exiting:
                after = "interpreter shutdown" if _exiting else "shutdown"
                raise RuntimeError(f"cannot schedule new futures after {after}")
            route = self._route(fn)
            lane = route.lane
            target = fn if lane.in_process else raw_function(fn)
            if batch:
                future = lane.submit(call_batch, (target, args[0]), kwargs, None, self._running)
            else:
                hook = route.learned_from if route.learning else None
                future = lane.submit(target, args, kwargs, hook, self._running)
        if progress is not None:
            if batch:
                future.items = len(args[0])
            progress.watch(future, lane.plan)
        return future

    def map(  # buffersize: the 3.14 argument, on every Python
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: _options.ProgressChoice | None = None,
    ) -> MapResults[R]:
        """``map(fn, *iterables)`` with the calls run in parallel, results in input order.

        ``timeout`` is a total deadline counted from this call (``TimeoutError`` from
        ``__next__``). With ``buffersize=None`` every call is submitted now, even if no result
        is ever read; ``buffersize=n`` keeps at most ``n`` results unread (the rest is submitted
        as results are taken). ``chunksize`` groups calls to send them together. Closing the
        iterator cancels the calls not started.

        ``progress`` shows how far the map got, as ``parallel_map``'s does (None: as a
        ``config()`` scope, ``configure()`` or ``SMARTPOOL_PROGRESS`` say; off by default):
        calls are counted as they complete, a failed call as one failed item.
        """
        if buffersize is not None and (
            isinstance(buffersize, bool)
            or not isinstance(cast(object, buffersize), int)
            or buffersize < 1
        ):
            raise ValueError(f"buffersize must be None or an int > 0, got {buffersize!r}")
        if (
            isinstance(chunksize, bool)
            or not isinstance(cast(object, chunksize), int)
            or chunksize < 1
        ):
            raise ValueError(f"chunksize must be an int >= 1, got {chunksize!r}")
        end = None if timeout is None else time.monotonic() + timeout
        counter = progress_for(fn, progress, iterables)
        calls: Iterator[tuple[Any, ...]] = zip(*iterables, strict=False)  # as map() does
        chunked = chunksize > 1
        if chunked:
            rows = calls
            calls = (
                (batch,) for batch in iter(lambda: tuple(itertools.islice(rows, chunksize)), ())
            )
        first = calls if buffersize is None else itertools.islice(calls, buffersize)
        futures = deque(self._submit(fn, args, {}, chunked, counter) for args in first)
        rest = None if buffersize is None else calls
        if counter is not None and rest is None:
            counter.all_sent()
        results = results_of(futures, rest, weakref.ref(self), fn, end, chunked, counter)
        return MapResults(futures, results, counter)

    def explain(self, fn: Callable[..., Any]) -> Plan:
        """The plan this executor follows for ``fn`` now: backend, workers, and why.

        Example:
            >>> import smartpool
            >>> @smartpool.cpu_bound
            ... def crunch(n):
            ...     return sum(range(n))
            >>> smartpool.Executor().explain(crunch).reasons[0]
            'hinted CPU-bound: processes use the ... cores'
        """
        plan, _, _ = self._plan(fn)
        return plan

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``cancel_futures``, cancel this executor's calls not started;
        with ``wait``, return once its calls have ended. Other callers' work is not touched.

        Calling it again does nothing more; the ``with`` statement calls it.
        """
        with self._lock:
            if self._shut and not self._lanes:
                return
            self._shut = True
            running = self._running.copy()
        if cancel_futures:
            # Workers on warm pools may have been woken for calls without having had the GIL
            # to start them yet: let them (one switch), then cancel what has not started.
            time.sleep(0)
            for future in running:
                future.cancel()
        if wait:
            concurrent.futures.wait(running)
            self._release()
            return
        # The lanes are released when the last call still running has ended.
        left = [future for future in running if not future.done()]
        with self._lock:
            self._ending += len(left)
        for future in left:
            future.add_done_callback(self._ended)
        if not left:
            self._release()

    # -- routes -----------------------------------------------------------------------------

    def _route(self, fn: Callable[..., Any]) -> _Route:
        """Under the lock: ``fn``'s route, made (and kept) on its first submit."""
        key = getattr(fn, "__func__", fn)
        last = self._last  # the function submitted last: calls often come in runs
        if last is not None and last.key is not None and last.key() is key and not last.stale:
            return last
        try:
            route = self._routes.get(key)
        except TypeError:  # not weak-referenceable: planned on every submit
            key, route = None, None
        if route is not None and not route.stale:
            self._last = route
            return route
        plan, options, learns = self._plan(fn)
        retry = RetryPolicy(options.retries, options.retry_on)
        # A learning function's calls report their CPU time; the others' need not measure it.
        lane_key = (plan.backend, plan.max_workers, options.timeout, retry, learns)
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = Lane(
                plan, options.timeout, retry, learns, setup=self._setup
            )
        route = _Route(lane, learns, None if key is None else weakref.ref(key))
        if key is not None:
            self._routes[key] = route
            self._last = route
        logger.debug("executor: %s goes to %s", getattr(fn, "__qualname__", fn), plan)
        return route

    def _plan(self, fn: Callable[..., Any]) -> tuple[Plan, _options.Options, bool]:
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(raw_function(fn)):
            name = getattr(fn, "__qualname__", repr(fn))
            raise TypeError(
                f"{name} is a coroutine function: an executor runs plain functions. Await it "
                "in your event loop instead, or submit a plain function (smartpool.asubmit "
                "awaits a plain function's call without blocking the loop)"
            )
        options = resolve_options(fn, self._given)
        hint = hint_of(fn)
        learns = learning.needs_learning(fn, options.backend, hint)
        measurement = recall(fn) if options.backend == "auto" and hint is None else None
        plan = call_plans.plan_call(
            fn, options, hint=hint, measurement=measurement, learning=learns
        )
        return plan, options, learns

    def _ended(self, _: Future[Any]) -> None:
        with self._lock:
            self._ending -= 1
            if self._ending:
                return
        self._release()

    def _release(self) -> None:
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
            self._routes.clear()
            self._last = None
        for lane in lanes:
            lane.release()

    def _wait_at_exit(self) -> None:
        concurrent.futures.wait(self._running.copy())


def _let_go(lanes: dict[tuple[Any, ...], Lane], running: set[Future[Any]]) -> None:
    """Release ``lanes`` once the calls in ``running`` have ended (now if none runs)."""
    left = [future for future in running.copy() if not future.done()]
    count = [len(left)]
    lock = threading.Lock()

    def one_ended(_: object = None) -> None:
        with lock:
            count[0] -= 1
            if count[0] > 0:
                return
        held = list(lanes.values())
        lanes.clear()
        for lane in held:
            lane.release()

    if not left:
        count[0] = 1
        one_ended()
    for future in left:
        future.add_done_callback(one_ended)


def _at_exit() -> None:
    """At interpreter exit: no new calls; wait for the calls already made (as the stdlib
    executors do), before the pools themselves shut down."""
    global _exiting
    _exiting = True
    for executor in list(_live):
        executor._wait_at_exit()


# Before the interpreter joins its threads and runs the atexit hooks, as the stdlib executors
# do: a hook that submits after this gets RuntimeError rather than a call that never ends.
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_at_exit)
else:  # pragma: no cover - every CPython since 3.9 has it
    atexit.register(_at_exit)
