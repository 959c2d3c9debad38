"""The public entry points: :func:`parallel_map`, :func:`imap` and :func:`submit`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from . import _backends, _engine
from ._errors import SmartpoolError
from ._planner import Hint, Options, Plan, make_plan
from ._task import ChunkResult

T = TypeVar("T")
R = TypeVar("R")

_DEFAULTS = Options()


def parallel_map(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    /,
    *,
    backend: str = "auto",
    max_workers: int | None = None,
    chunksize: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
) -> list[R]:
    """Apply ``fn`` to every item, in parallel where it pays, and return the results as a list.

    Results are in input order (``ordered=False``: in completion order). ``backend`` is "auto"
    (smartpool decides), "serial", "thread" or "process". An exception raised by ``fn`` is
    re-raised here as its own type, with the worker's frames and a note naming the item.

    Example:
        >>> import smartpool
        >>> smartpool.parallel_map(abs, [-1, 2, -3], backend="thread")
        [1, 2, 3]
    """
    chunks = _start(
        fn,
        iterable,
        backend=backend,
        max_workers=max_workers,
        chunksize=chunksize,
        ordered=ordered,
        timeout=timeout,
        retries=retries,
        retry_on=retry_on,
    )
    results: list[R] = []
    try:
        for values in chunks:
            results.extend(values)
    except SmartpoolError as error:
        completed = getattr(error, "completed", None)
        if isinstance(completed, dict) and ordered:
            completed.update(enumerate(results))
        raise
    return results


def imap(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    /,
    *,
    backend: str = "auto",
    max_workers: int | None = None,
    chunksize: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
) -> Iterator[R]:
    """Like :func:`parallel_map`, but a lazy iterator: input is consumed as results are taken.

    At most about ``2 x max_workers`` chunks are in flight, so an endless generator streams.
    Bad arguments and functions that cannot be sent to a worker fail here, not on first ``next``.

    Example:
        >>> import itertools, smartpool
        >>> squares = smartpool.imap(lambda x: x * x, itertools.count(), backend="thread")
        >>> [next(squares) for _ in range(4)]
        [0, 1, 4, 9]
    """
    chunks = _start(
        fn,
        iterable,
        backend=backend,
        max_workers=max_workers,
        chunksize=chunksize,
        ordered=ordered,
        timeout=timeout,
        retries=retries,
        retry_on=retry_on,
    )
    return _flatten(chunks)


def _flatten(chunks: Iterator[list[R]]) -> Iterator[R]:
    for values in chunks:
        yield from values


def _start(fn: Callable[[T], R], iterable: Iterable[T], /, **given: Any) -> Iterator[list[R]]:
    retry_on = given["retry_on"]
    given["retry_on"] = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    options = resolve_options(fn, **given)
    n_items = _engine.length_of(iterable)
    plan = make_plan(fn, options, hint=hint_of(fn), n_items=n_items)
    call = _engine.make_call(raw_function(fn), options, portable=fn)
    return _engine.start(call, iterable, plan, ordered=options.ordered, n_items=n_items)


def submit(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
    """Run ``fn(*args, **kwargs)`` once on the backend smartpool picks; return its Future.

    Example:
        >>> import smartpool
        >>> smartpool.submit(pow, 2, 10).result()
        1024
    """
    options = resolve_options(fn)
    plan = make_plan(fn, options, hint=hint_of(fn), n_items=None)
    call = _engine.make_call(StarCall(raw_function(fn)), options, portable=StarCall(fn))
    backend = _backends.get_backend(plan.backend, plan.max_workers)
    chunk_future = backend.submit(backend.prepare(call), [(args, kwargs)], 0)
    future: Future[R] = Future()
    future.set_running_or_notify_cancel()

    def finish(done: Future[ChunkResult]) -> None:
        try:
            result = done.result()
        except BaseException as exc:
            future.set_exception(exc)
            return
        if result.error is not None:
            future.set_exception(_engine.with_note(result, plan.backend))
        else:
            future.set_result(result.values[0])

    chunk_future.add_done_callback(finish)
    return future


class StarCall:
    """Adapts ``fn(*args, **kwargs)`` to the one-argument shape chunks are made of."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, packed: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        args, kwargs = packed
        return self.fn(*args, **kwargs)


def explain_plan(
    fn: Callable[..., Any], iterable: Iterable[Any] | None = None, **opts: Any
) -> Plan:
    """The plan a call would use, without running it."""
    options = resolve_options(fn, **opts)
    n_items = None if iterable is None else _engine.length_of(iterable)
    return make_plan(fn, options, hint=hint_of(fn), n_items=n_items)


def resolve_options(fn: Callable[..., Any], **given: Any) -> Options:
    """Call-site options over the decorator's defaults over smartpool's defaults."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}: {fn!r}")
    base: Options | None = getattr(fn, "_smartpool_options", None)
    if base is None:
        return Options(**given)
    changed = {k: v for k, v in given.items() if getattr(_DEFAULTS, k) != v}
    return base.merged(**changed)


def hint_of(fn: Callable[..., Any]) -> Hint | None:
    hint: Hint | None = getattr(fn, "_smartpool_hint", None)
    return hint


def raw_function(fn: Callable[..., R]) -> Callable[..., R]:
    """The undecorated function, called directly where nothing needs pickling."""
    wrapped: Callable[..., R] | None = getattr(fn, "_smartpool_wrapped", None)
    return wrapped if wrapped is not None else fn
