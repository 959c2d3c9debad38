"""asyncio: ``await amap(...)``, ``async for r in aimap(...)``, ``await asubmit(...)``.

The event loop never waits on smartpool: a map's run (its probe and any work it runs inline
included) is driven by a thread of its own, which hands results to the loop; a submitted call
goes through an :class:`~smartpool.Executor` of its own, submitted from a thread. Cancelling
the task that awaits cancels the work: items not started never start, and worker processes
running its items are killed and replaced (threads, which cannot be killed, are abandoned).

``fn`` runs in a copy of the awaiting task's ``contextvars`` context on threads, and with its
context variables that can travel in worker processes (see ``_work.carried``).
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import Unpack

from . import _api
from ._executor import Executor
from ._options import MapOptions
from ._run.run import Run

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")
R = TypeVar("R")

#: Chunks of results an ``aimap`` keeps ready for a consumer that has not asked for them yet.
AHEAD_CHUNKS = 2


async def amap(
    fn: Callable[[T], R], iterable: Iterable[T], /, **options: Unpack[MapOptions]
) -> list[R]:
    """``parallel_map(fn, iterable, **options)`` for asyncio: the loop goes on meanwhile.

    Example:
        >>> import asyncio, smartpool
        >>> asyncio.run(smartpool.amap(abs, [-1, -2, 3]))
        [1, 2, 3]
    """
    _check_plain(fn)
    _api.resolve_options(fn, options)  # a bad option fails here, in the caller
    stream = _Stream(fn, iterable, dict(options), contextvars.copy_context(), ahead=None)
    results: list[R] = []
    async for values in stream:
        results.extend(values)
    return results


def aimap(
    fn: Callable[[T], R], iterable: Iterable[T], /, **options: Unpack[MapOptions]
) -> AsyncIterator[R]:
    """``imap(fn, iterable, **options)`` for asyncio: ``async for result in aimap(...)``.

    Input is read as results are taken (a few chunks ahead), so an endless generator streams.
    Leaving the loop early (``break``, an exception, ``aclose()``) cancels the work in flight.

    Example:
        >>> import asyncio, smartpool
        >>> async def main():
        ...     return [r async for r in smartpool.aimap(str.upper, "abc", backend="thread")]
        >>> asyncio.run(main())
        ['A', 'B', 'C']
    """
    _check_plain(fn)
    _api.resolve_options(fn, options)
    stream = _Stream(fn, iterable, dict(options), contextvars.copy_context(), ahead=AHEAD_CHUNKS)
    return _items(stream)


async def _items(stream: _Stream) -> AsyncIterator[Any]:
    async with stream:
        async for values in stream:
            for value in values:
                yield value


async def asubmit(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """Run ``fn(*args, **kwargs)`` once where smartpool routes ``fn``, and await its result.

    Calls are routed per function as by :class:`Executor` (a hint, a kept measurement, or the
    timing of its first calls). Cancelling the awaiting task cancels the call, and kills the
    worker process running it.

    Example:
        >>> import asyncio, smartpool
        >>> asyncio.run(smartpool.asubmit(pow, 2, 10))
        1024
    """
    import asyncio  # loaded on first use: most programs never need it

    _check_plain(fn)
    # The submit runs off the loop: the first call on a pool starts its worker (a process
    # start is tens of milliseconds), and the arguments are pickled there.
    call = _Submitted(fn, args, kwargs)
    try:
        future = await asyncio.to_thread(call.submit)
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        call.stop()
        raise


class _Submitted:
    """One ``asubmit`` call made on a thread, stoppable from the loop at any moment: before the
    submit ends (it is stopped as soon as it is made, whether or not the loop is still there to
    hear of it: ``asyncio.run`` cancels the thread's task when it ends) or after."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._lock = threading.Lock()
        self._future: Future[Any] | None = None
        self._stopped = False

    def submit(self) -> Future[Any]:
        executor = Executor()  # routes are planned per call; what was learned of fn is kept
        try:
            future = executor.submit(self._fn, *self._args, **self._kwargs)
        finally:
            executor.shutdown(wait=False)  # its pools are let go of when the call ends
        with self._lock:
            self._future = future
            stopped = self._stopped
        if stopped:
            _stop(future)
        return future

    def stop(self) -> None:
        """Cancel the call, killing the worker process running it (now, or once it is made)."""
        with self._lock:
            self._stopped = True
            future = self._future
        if future is not None:
            _stop(future)


def _stop(future: Future[Any]) -> None:
    stop = getattr(future, "stop", None)
    if stop is not None:
        stop()
    else:
        future.cancel()


def _check_plain(fn: Callable[..., Any]) -> None:
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(_api.raw_function(fn)):
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(
            f"{name} is a coroutine function: smartpool runs plain functions on threads or "
            "processes. Await the coroutines themselves (asyncio.gather), or pass the plain "
            "function that does the work"
        )


class _Stream:
    """A map's run driven by a thread of its own, its chunks of results handed to the loop.

    With ``ahead``, the thread waits while that many chunks are ready and unread (so the run
    reads its input only as fast as results are taken); None: it never waits.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        iterable: Iterable[Any],
        options: dict[str, Any],
        context: contextvars.Context,
        ahead: int | None,
    ) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._ready: deque[list[Any] | BaseException | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._room = None if ahead is None else threading.Semaphore(ahead)
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._stopped = False
        self._started = False
        self._args = (fn, iterable, options, context)

    def __aiter__(self) -> _Stream:
        return self

    async def __aenter__(self) -> _Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    async def __anext__(self) -> list[Any]:
        if not self._started:
            self._started = True
            threading.Thread(target=self._drive, name="smartpool-aio", daemon=True).start()
        while not self._ready:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            except BaseException:  # cancelled (asyncio.CancelledError), or the loop is closing
                self.stop()
                raise
            finally:
                self._waiter = None
        got = self._ready.popleft()
        if got is None:
            raise StopAsyncIteration
        if isinstance(got, BaseException):
            raise got
        if self._room is not None:
            self._room.release()
        return got

    def stop(self) -> None:
        """Cancel the run (from the loop): nothing more starts, its worker processes are
        killed, and the driving thread ends."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            run = self._run
        if run is not None:
            run.cancel()
        if self._room is not None:
            self._room.release()  # a driver waiting for room wakes up and sees the stop

    # -- on the driving thread ----------------------------------------------------------------

    def _drive(self) -> None:
        fn, iterable, options, context = self._args
        try:
            run, _ = _api.start(fn, iterable, options, context=context)
            with self._lock:
                self._run = run
                stopped = self._stopped
            if stopped:
                run.close()
                return
            for values in run.results():
                if self._room is not None:
                    self._room.acquire()
                if self._stopped:
                    run.close()
                    return
                self._hand(values)
            self._hand(None)
        except BaseException as exc:
            self._hand(exc)

    def _hand(self, got: list[Any] | BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._receive, got)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _receive(self, got: list[Any] | BaseException | None) -> None:
        self._ready.append(got)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
