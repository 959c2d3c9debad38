"""The public entry points: :func:`parallel_map`, :func:`imap` and :func:`submit`
(:func:`~smartpool.explain` is in ``_explain``).

Each builds the call's options (``_options``), makes one :class:`~smartpool._run.run.Run` and
reads its results; nothing here decides or runs anything itself.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from typing_extensions import Unpack

from . import _config
from . import _progress as progress
from ._errors import SerializationError, SmartpoolError
from ._options import MapOptions, Options
from ._routing.planner import Hint
from ._run.events import Observer
from ._run.run import Run
from ._work.carried import InContext, WithVars, capture_vars
from ._work.setup import WorkerSetup
from ._work.shapes import Adapted, shaped
from ._work.task import Call, RetryPolicy

logger = logging.getLogger("smartpool")


T = TypeVar("T")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
R = TypeVar("R")
P = ParamSpec("P")


@overload
def parallel_map(
    fn: Callable[[T], R], iterable: Iterable[T], /, **options: Unpack[MapOptions]
) -> list[R]: ...
@overload
def parallel_map(
    fn: Callable[[T, T2], R],
    iterable: Iterable[T],
    iterable2: Iterable[T2],
    /,
    **options: Unpack[MapOptions],
) -> list[R]: ...
@overload
def parallel_map(
    fn: Callable[[T, T2, T3], R],
    iterable: Iterable[T],
    iterable2: Iterable[T2],
    iterable3: Iterable[T3],
    /,
    **options: Unpack[MapOptions],
) -> list[R]: ...
@overload
def parallel_map(
    fn: Callable[..., R],
    iterable: Iterable[Any],
    iterable2: Iterable[Any],
    iterable3: Iterable[Any],
    iterable4: Iterable[Any],
    /,
    *iterables: Iterable[Any],
    **options: Unpack[MapOptions],
) -> list[R]: ...
def parallel_map(
    fn: Callable[..., R], iterable: Iterable[Any], /, *iterables: Iterable[Any], **options: Any
) -> list[R]:
    """Apply ``fn`` to every item, in parallel where it pays, and return the results as a list.

    With several iterables, ``fn`` takes one item of each, and the call stops with the shortest,
    as the builtin ``map`` does (:func:`starmap` takes the argument tuples ready-made).

    Options (:class:`MapOptions`; each one passed overrides a decorator's):

    - ``backend``: "auto" (default: measure ``fn`` on its first items and decide), "serial",
      "thread" or "process";
    - ``max_workers``: threads or processes to use (None: the planner chooses);
    - ``chunksize``: items per chunk sent to a worker (None: sized from their measured cost);
    - ``ordered``: results in input order (default) or, False, in completion order;
    - ``timeout``: seconds each item may run on threads or processes (None: no limit);
    - ``retries``, ``retry_on``: run an item that raised one of ``retry_on`` again, up to
      ``retries`` more times;
    - ``initializer``, ``initargs``: run ``initializer(*initargs)`` once in each worker before
      its first item (see :func:`worker_state`); a failure raises :class:`InitializerError`;
    - ``max_tasks_per_child``: replace a worker process after it ran that many items (no
      effect on threads).

    An exception raised by ``fn`` is re-raised here as its own type, with the worker's frames
    and a note naming the item (with ordered results, the first failing item's). smartpool's
    own errors: ``TypeError`` or ``ValueError`` for bad options (before any work),
    :class:`SerializationError` for what cannot be sent to a process,
    :class:`WorkerCrashedError`, :class:`TaskTimeoutError`, :class:`RemoteError`.

    Example:
        >>> import smartpool
        >>> smartpool.parallel_map(abs, [-1, 2, -3], backend="thread")
        [1, 2, 3]
        >>> smartpool.parallel_map(pow, [2, 3, 4], [5, 2], backend="thread")
        [32, 9]
    """
    try:
        run, ordered = start(*shaped(fn, iterable, iterables), options)
        return _collect(run.results(), ordered)
    except SerializationError as error:
        raise from_users_call(error) from error.__cause__


@overload
def imap(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    /,
    *,
    with_index: Literal[False] = False,
    **options: Unpack[MapOptions],
) -> ResultIterator[R]: ...
@overload
def imap(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    /,
    *,
    with_index: Literal[True],
    **options: Unpack[MapOptions],
) -> ResultIterator[tuple[int, R]]: ...
@overload
def imap(
    fn: Callable[[T, T2], R],
    iterable: Iterable[T],
    iterable2: Iterable[T2],
    /,
    *,
    with_index: Literal[False] = False,
    **options: Unpack[MapOptions],
) -> ResultIterator[R]: ...
@overload
def imap(
    fn: Callable[[T, T2], R],
    iterable: Iterable[T],
    iterable2: Iterable[T2],
    /,
    *,
    with_index: Literal[True],
    **options: Unpack[MapOptions],
) -> ResultIterator[tuple[int, R]]: ...
@overload
def imap(
    fn: Callable[..., R],
    iterable: Iterable[Any],
    iterable2: Iterable[Any],
    iterable3: Iterable[Any],
    /,
    *iterables: Iterable[Any],
    with_index: bool = False,
    **options: Unpack[MapOptions],
) -> ResultIterator[Any]: ...
def imap(
    fn: Callable[..., Any],
    iterable: Iterable[Any],
    /,
    *iterables: Iterable[Any],
    with_index: bool = False,
    **options: Any,
) -> ResultIterator[Any]:
    """Like :func:`parallel_map`, but a lazy iterator: input is consumed as results are taken.

    ``with_index=True`` yields ``(index, result)`` pairs, ``index`` being the item's position
    in the input: with ``ordered=False`` (results in completion order) it says which item each
    result belongs to. Several iterables are zipped as in :func:`parallel_map`.

    At most about ``2 x max_workers`` chunks are running or queued (and ``8 x max_workers``
    pending in all, done ones held behind a long one included), so an endless generator streams.
    Bad arguments and functions that cannot be sent to a worker fail here, not on first ``next``.
    Leaving the loop early (``break``, ``close()``, an exception, dropping the iterator) cancels
    the work still in flight; :meth:`ResultIterator.cancel` does so from any thread.

    Example:
        >>> import itertools, smartpool
        >>> squares = smartpool.imap(lambda x: x * x, itertools.count(), backend="thread")
        >>> [next(squares) for _ in range(4)]
        [0, 1, 4, 9]
        >>> squares.close()
        >>> pairs = smartpool.imap(str.upper, "ab", ordered=False, with_index=True)
        >>> sorted(pairs)
        [(0, 'A'), (1, 'B')]
    """
    try:
        run, _ = start(*shaped(fn, iterable, iterables, with_index), options)
    except SerializationError as error:
        raise from_users_call(error) from error.__cause__
    return ResultIterator(run)


class ResultIterator(Iterator[R], Generic[R]):
    """The results of :func:`imap`, one at a time; closing or cancelling it stops the work.

    Example:
        >>> import smartpool
        >>> results = smartpool.imap(str.upper, ["a", "b", "c"], backend="thread")
        >>> next(results)
        'A'
        >>> results.close()  # the rest is cancelled; a worker process running it is replaced
    """

    def __init__(self, run: Run) -> None:
        self._run = run
        self._items = _flatten(run.results())

    def __next__(self) -> R:
        try:
            return cast(R, next(self._items))
        except SerializationError as error:
            raise from_users_call(error) from error.__cause__
        except StopIteration:
            if self._run.cancelled:  # every ``next()`` after a cancel says so
                raise CancelledError() from None
            raise

    def close(self) -> None:
        """Stop here: work in flight is cancelled, and ``next()`` raises StopIteration."""
        self._items.close()
        self._run.close()  # a run never iterated has no generator frame to clean up after it

    def __del__(self) -> None:
        self._run.close()

    def cancel(self) -> None:
        """Cancel the work from any thread: a ``next()`` waiting for a result, and every later
        one, raises :class:`concurrent.futures.CancelledError`."""
        self._run.cancel()


def submit(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
    """Run ``fn(*args, **kwargs)`` once on the backend smartpool picks; return its Future.

    The Future stays pending until a worker starts the call, so ``cancel()`` works until then.
    Options come from a decorated ``fn`` (``@smartpool.io_bound(initializer=...)``).

    Example:
        >>> import smartpool
        >>> smartpool.submit(pow, 2, 10).result()
        1024
    """
    options = resolve_options(fn, {})
    call = make_call(StarCall(raw_function(fn)), options, portable=StarCall(fn))
    try:
        run = Run(fn, call, [(args, kwargs)], options, hint=hint_of(fn), standalone=True)
    except SerializationError as error:
        raise from_users_call(error) from error.__cause__
    future: Future[R] = Future()
    run.submit_one(future)
    return future


def start(
    fn: Callable[..., Any],
    iterable: Iterable[Any],
    given: Mapping[str, Any],
    observers: tuple[Observer, ...] = (),
    *,
    context: contextvars.Context | None = None,
) -> tuple[Run, bool]:
    """The run of ``parallel_map(fn, iterable, **given)``, and whether its results are ordered.

    ``observers`` receive the run's :class:`~smartpool._run.events.RunEvent` s; those showing
    the call's ``progress=`` option are added here. With a ``context``, ``fn`` runs in a copy
    of it on threads and inline, and with its variables that can travel in worker processes.
    """
    options = resolve_options(fn, given)
    observers = (*observers, *progress.observers_for(options))
    if context is None and _config.in_scope():
        # Nested calls in the workers see the caller's config() scope: the caller's context
        # goes with the call (a copy on threads; its variables that pickle to processes).
        context = contextvars.copy_context()
    if context is None:
        call = make_call(raw_function(fn), options, portable=fn, items=iterable)
    else:
        inline = InContext(raw_function(fn), context)
        portable = WithVars(fn, context.run(capture_vars))
        call = make_call(inline, options, portable=portable, items=iterable)
    run = Run(fn, call, iterable, options, hint=hint_of(fn), observers=observers)
    return run, options.ordered


def _collect(chunks: Iterator[list[R]], ordered: bool) -> list[R]:
    results: list[R] = []
    try:
        for values in chunks:
            # Each chunk's list is new and ours: adopt it, and copy the shorter side when joining.
            if len(values) > len(results):
                values[:0] = results
                results = values
            else:
                results.extend(values)
    except SmartpoolError as error:
        completed: object = getattr(error, "completed", None)
        if isinstance(completed, dict) and ordered:
            cast("dict[int, Any]", completed).update(enumerate(results))
        raise
    return results


def from_users_call(error: SerializationError) -> SerializationError:
    """``error`` raised afresh where the user called: its traceback ends at their line. Which
    part of smartpool found that an object cannot be pickled says nothing they can act on; the
    message says what and where, and the pickler's own error stays chained as the cause."""
    return error.with_traceback(None)


def _flatten(chunks: Iterator[list[R]]) -> Generator[R, None, None]:
    for values in chunks:
        yield from values


def make_call(
    fn: Callable[[Any], Any],
    options: Options,
    portable: object = None,
    items: Iterable[Any] | None = None,
) -> Call:
    retry = RetryPolicy(options.retries, options.retry_on)
    stored = type(items) in (list, tuple)  # not subclasses: their items could be made on access
    setup = None
    if options.initializer is not None or options.max_tasks_per_child is not None:
        setup = WorkerSetup(options.initializer, options.initargs, options.max_tasks_per_child)
    portable = portable if portable is not None else fn
    return Call(fn, retry, options.timeout, portable, stored, setup=setup)


class StarCall:
    """Adapts ``fn(*args, **kwargs)`` to the one-argument shape chunks are made of."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, packed: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        args, kwargs = packed
        return self.fn(*args, **kwargs)


def resolve_options(fn: Callable[..., Any], given: Mapping[str, Any]) -> Options:
    """The call's keywords over the configuration's layers (``_config.resolve``).

    Every keyword passed counts, even one equal to smartpool's default (``ordered=True`` for a
    function decorated with ``ordered=False``).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}: {fn!r}")
    decorated: Mapping[str, Any] | None = getattr(fn, "_smartpool_given", None)
    return _config.resolve(given, decorated)


def hint_of(fn: Callable[..., Any]) -> Hint | None:
    hint: Hint | None = getattr(fn, "_smartpool_hint", None)
    return hint


def raw_function(fn: Callable[..., R]) -> Callable[..., R]:
    """The undecorated function, called directly where nothing needs pickling."""
    if isinstance(fn, Adapted):
        return cast("Callable[..., R]", fn.raw(raw_function))
    wrapped: Callable[..., R] | None = getattr(fn, "_smartpool_wrapped", None)
    return wrapped if wrapped is not None else fn
