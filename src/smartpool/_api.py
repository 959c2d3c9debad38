"""The public entry points: :func:`parallel_map`, :func:`imap` and :func:`submit`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import fields, replace
from typing import Any, TypeVar, cast

from . import _backends, _engine
from ._backends._base import Call
from ._chunking import Feed
from ._decisions import recall, remember
from ._errors import SerializationError, SmartpoolError
from ._planner import (
    BackendChoice,
    Hint,
    Options,
    Plan,
    gil_matters,
    make_plan,
    needs_probe,
    replan,
)
from ._probe import Measurement, probe_items
from ._serialize import dump_function
from ._task import ChunkResult

logger = logging.getLogger("smartpool")

#: ``explain`` runs the function on at most this many items of the iterable it is given.
EXPLAIN_MAX_ITEMS = 1000


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))


T = TypeVar("T")
R = TypeVar("R")

_DEFAULTS = Options()
_OPTION_NAMES = tuple(f.name for f in fields(Options))


def parallel_map(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    /,
    *,
    backend: BackendChoice = "auto",
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
    given = dict(
        backend=backend,
        max_workers=max_workers,
        chunksize=chunksize,
        ordered=ordered,
        timeout=timeout,
        retries=retries,
        retry_on=retry_on,
    )
    return _collect(*_start(fn, iterable, given))


def _collect(chunks: Iterator[list[R]], options: Options) -> list[R]:
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
        if isinstance(completed, dict) and options.ordered:
            cast("dict[int, Any]", completed).update(enumerate(results))
        raise
    return results


def imap(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    /,
    *,
    backend: BackendChoice = "auto",
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
    given = dict(
        backend=backend,
        max_workers=max_workers,
        chunksize=chunksize,
        ordered=ordered,
        timeout=timeout,
        retries=retries,
        retry_on=retry_on,
    )
    return _flatten(_start(fn, iterable, given)[0])


def map_with(fn: Callable[[T], R], iterable: Iterable[T], explicit: dict[str, Any]) -> list[R]:
    """``parallel_map`` with only the ``explicit`` options, each of which overrides a
    decorator's default even when it equals smartpool's own (``f.map(items, ordered=True)``)."""
    return _collect(*_start(fn, iterable, _given(explicit), explicit=set(explicit)))


def imap_with(fn: Callable[[T], R], iterable: Iterable[T], explicit: dict[str, Any]) -> Iterator[R]:
    """``imap`` with only the ``explicit`` options (see :func:`map_with`)."""
    return _flatten(_start(fn, iterable, _given(explicit), explicit=set(explicit))[0])


def _given(explicit: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(explicit) - set(_OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"unexpected option(s) {', '.join(map(repr, unknown))}; valid options are: "
            + ", ".join(_OPTION_NAMES)
        )
    return {name: explicit.get(name, getattr(_DEFAULTS, name)) for name in _OPTION_NAMES}


def _flatten(chunks: Iterator[list[R]]) -> Iterator[R]:
    for values in chunks:
        yield from values


def _start(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    given: dict[str, Any],
    explicit: set[str] | None = None,
) -> tuple[Iterator[list[R]], Options]:
    """The chunks of results of a call, and the options it runs with (the decorator's merged)."""
    retry_on = given["retry_on"]
    given["retry_on"] = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    options = resolve_options(fn, explicit=explicit, **given)
    n_items = _engine.length_of(iterable)
    hint = hint_of(fn)
    call = _engine.make_call(raw_function(fn), options, portable=fn, items=iterable)
    if not needs_probe(options, hint, n_items):
        plan = make_plan(fn, options, hint=hint, n_items=n_items)
        run = _engine.Run(call, Feed(iterable), plan, ordered=options.ordered, n_items=n_items)
        return run.chunks(), options
    return _auto_chunks(fn, call, Feed(iterable), options, n_items), options


def _auto_chunks(
    fn: Callable[..., Any],
    call: Call,
    feed: Feed,
    options: Options,
    n_items: int | None,
) -> Iterator[list[Any]]:
    """Probe the first items in the caller (keeping their results), plan, run the rest."""
    measurement = recall(fn)
    done = 0
    probe_values: list[Any] = []  # handed to the run, which yields them first
    if measurement is None:
        probe = probe_items(
            call.fn,
            feed,
            retry=call.retry,
            gil_matters=lambda m: gil_matters(m, options, n_items),
        )
        if probe.failed is not None:
            if probe.values:
                yield probe.values
            raise _engine.with_note(probe.failed, "serial")
        measurement, done = probe.measurement, len(probe.values)
        remember(fn, measurement)
        logger.debug("probe: %s on %d items: %s", _name(fn), done, measurement)
        if probe.exhausted:
            if probe.values:
                yield probe.values
            return
        probe_values = probe.values
    n_left = None if n_items is None else n_items - done
    plan, measurement = _measured_plan(fn, options, n_left, measurement)
    for reason in plan.reasons:
        if reason.startswith("WARNING: "):
            warnings.warn(reason.removeprefix("WARNING: "), RuntimeWarning, stacklevel=3)
    probed = measurement

    def revise(current: Plan, observed: Measurement, next_index: int) -> Plan | None:
        left = None if n_items is None else n_items - next_index
        return replan(current, observed, probed, options, n_left=left, done=next_index)

    run = _engine.Run(
        call,
        feed,
        plan,
        ordered=options.ordered,
        n_items=n_items,
        first_index=done,
        done=probe_values,
        replanner=revise,
    )
    yield from run.chunks()


def _measured_plan(
    fn: Callable[..., Any], options: Options, n_items: int | None, measurement: Measurement
) -> tuple[Plan, Measurement]:
    """The plan for a measured function; a process plan is only kept if the function pickles.

    Items and results were checked by the probe; the function itself is checked only here,
    when processes are actually on the table (a cloudpickle import is not free).
    """
    plan = make_plan(fn, options, hint=None, n_items=n_items, measurement=measurement)
    if plan.backend == "process" and measurement.picklable is None:
        try:
            dump_function(fn)
        except SerializationError:  # now we know: plan again without processes
            measurement = replace(measurement, picklable=False)
            remember(fn, measurement)
            plan = make_plan(fn, options, hint=None, n_items=n_items, measurement=measurement)
    return plan, measurement


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


def explain(fn: Callable[..., Any], iterable: Iterable[Any] | None = None, **options: Any) -> Plan:
    """The plan ``parallel_map(fn, iterable, **options)`` would follow, without running the job.

    For an automatic call with no kept decision, the function is probed on the first few items
    of ``iterable`` (at most 1000; pass a list, since a generator would lose them), and the
    decision is kept for the real call. Without ``iterable`` nothing runs, and the plan shows
    what is known so far.

    Example:
        >>> import smartpool
        >>> smartpool.explain(str.upper, ["a", "b"], backend="thread").backend
        'thread'
    """
    opts = resolve_options(fn, **options)
    n_items = None if iterable is None else _engine.length_of(iterable)
    hint = hint_of(fn)
    measurement = None
    if needs_probe(opts, hint, n_items):
        measurement = recall(fn)
        if measurement is None and iterable is not None:
            probe = probe_items(
                raw_function(fn),
                Feed(iterable),
                max_items=EXPLAIN_MAX_ITEMS,
                gil_matters=lambda m: gil_matters(m, opts, n_items),
            )
            if probe.failed is not None:
                raise _engine.with_note(probe.failed, "serial")
            measurement = probe.measurement
            remember(fn, measurement)
    if measurement is not None:
        plan, _ = _measured_plan(fn, opts, n_items, measurement)
    else:
        plan = make_plan(fn, opts, hint=hint, n_items=n_items)
    logger.debug("explain %s: %s", _name(fn), plan)
    return plan


def resolve_options(
    fn: Callable[..., Any], explicit: set[str] | None = None, **given: Any
) -> Options:
    """Call-site options over the decorator's defaults over smartpool's defaults.

    ``explicit`` names the options the caller actually passed; without it (``parallel_map``'s
    keyword defaults hide that), an option equal to smartpool's default keeps the decorator's.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}: {fn!r}")
    base: Options | None = getattr(fn, "_smartpool_options", None)
    if base is None:
        return Options(**given)
    if explicit is None:
        explicit = {k for k, v in given.items() if getattr(_DEFAULTS, k) != v}
    return base.merged(**{k: given[k] for k in explicit})


def hint_of(fn: Callable[..., Any]) -> Hint | None:
    hint: Hint | None = getattr(fn, "_smartpool_hint", None)
    return hint


def raw_function(fn: Callable[..., R]) -> Callable[..., R]:
    """The undecorated function, called directly where nothing needs pickling."""
    wrapped: Callable[..., R] | None = getattr(fn, "_smartpool_wrapped", None)
    return wrapped if wrapped is not None else fn
