"""The one executor loop: feed chunks to a backend, collect Futures, yield results, rebuild errors.

Every backend goes through :func:`start`. The loop keeps at most ``2 x workers`` chunks in flight
and pulls input only when it submits, so an endless generator streams with bounded memory. Results
come out in input order (or completion order with ``ordered=False``); the first failing item in
that order raises, and everything still pending is cancelled.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from . import _backends
from ._backends._base import Backend, Call
from ._chunking import ChunkSizer
from ._errors import SmartpoolError
from ._planner import Options, Plan
from ._remote import add_note
from ._task import ChunkResult, RetryPolicy

logger = logging.getLogger("smartpool")

_Entry = tuple[int, int, "Future[ChunkResult]"]


def length_of(iterable: Iterable[Any]) -> int | None:
    """The number of items if the input knows it without being consumed, else None."""
    if isinstance(iterable, Sized) and not isinstance(iterable, Iterator):
        try:
            return len(iterable)
        except TypeError:
            return None
    return None


def make_call(fn: Callable[[Any], Any], options: Options, portable: object = None) -> Call:
    retry = RetryPolicy(options.retries, options.retry_on)
    return Call(fn, retry, options.timeout, portable if portable is not None else fn)


def start(
    call: Call, iterable: Iterable[Any], plan: Plan, *, ordered: bool, n_items: int | None
) -> Iterator[list[Any]]:
    """Prepare eagerly (so bad functions fail here), then return a lazy iterator of result lists.

    Each list holds the values of one chunk; callers flatten (``imap``) or extend (``parallel_map``),
    which is much cheaper per item than yielding values one by one through this generator.
    """
    logger.debug("plan for %s: %s", getattr(call.fn, "__qualname__", call.fn), plan)
    backend = _backends.get_backend(plan.backend, plan.max_workers)
    prepared = backend.prepare(call)
    sizer = ChunkSizer.for_run(
        chunksize=plan.chunksize,
        n_items=n_items,
        workers=plan.max_workers,
        target_seconds=plan.target_chunk_seconds,
    )
    window = 1 if plan.backend == "serial" else 2 * plan.max_workers
    return _drive(backend, prepared, iter(iterable), sizer, window, ordered)


def _drive(
    backend: Backend,
    prepared: object,
    source: Iterator[Any],
    sizer: ChunkSizer,
    window: int,
    ordered: bool,
) -> Iterator[list[Any]]:
    pending: deque[_Entry] = deque()
    next_index = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                items = list(itertools.islice(source, sizer.next_size()))
                if not items:
                    exhausted = True
                    break
                future = backend.submit(prepared, items, next_index)
                pending.append((next_index, len(items), future))
                next_index += len(items)
            if not pending:
                return
            entry = pending.popleft() if ordered else _pop_first_done(pending)
            result = _outcome(entry, pending)
            sizer.observe(len(result.values) + (result.error is not None), result.seconds)
            if result.error is not None:
                raise with_note(result, backend.name)
            yield result.values
    except KeyboardInterrupt:
        _cancel(pending)
        backend.abort()
        _backends.discard(backend)
        raise
    finally:
        _cancel(pending)


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
        completed = getattr(error, "completed", None)
        if isinstance(completed, dict):
            for start, _, future in pending:
                if future.done() and not future.cancelled() and future.exception() is None:
                    values = future.result().values
                    completed.update(zip(range(start, start + len(values)), values, strict=True))
        raise


def _pop_first_done(pending: deque[_Entry]) -> _Entry:
    done = [e for e in pending if e[2].done()]
    if not done:
        wait([e[2] for e in pending], return_when=FIRST_COMPLETED)
        done = [e for e in pending if e[2].done()]
    pending.remove(done[0])
    return done[0]


def _cancel(pending: deque[_Entry]) -> None:
    for _, _, future in pending:
        future.cancel()
    pending.clear()
