"""The results of ``Executor.map``: in input order, a Future at a time, holding none it gave;
closing them cancels the calls not started; and the map's progress (``progress=``), counted
as its calls settle (see ``_progress.calls``).
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _config, _options
from ._progress import observers_for
from ._progress.calls import MapProgress
from ._run.calls import OneCall
from ._work.feed import length_of

if TYPE_CHECKING:
    from ._executor import Executor

R = TypeVar("R")

_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


def progress_for(
    fn: Callable[..., Any],
    progress: _options.ProgressChoice | None,
    iterables: tuple[Iterable[Any], ...],
) -> MapProgress | None:
    """What counts a map's calls for the progress its options ask for (None when off);
    a bad ``progress`` fails here, before any call."""
    # Only ``progress`` is read: the executor's own options were checked when it was made.
    given: Mapping[str, Any] = _NO_OPTIONS if progress is None else {"progress": progress}
    options = _config.resolve(given, getattr(fn, "_smartpool_given", None))
    observers = observers_for(options)
    if not observers:
        return None
    lengths = [length_of(iterable) for iterable in iterables]
    total = None if None in lengths else min(cast("list[int]", lengths), default=0)
    return MapProgress(observers, total)


class MapResults(Iterator[R]):
    """The results of :meth:`Executor.map`, in order; ``close()`` cancels the calls not started,
    even before the first result was taken (a generator closed then would run no cleanup)."""

    def __init__(
        self,
        futures: deque[OneCall],
        results: Generator[R, None, None],
        progress: MapProgress | None = None,
    ) -> None:
        self._futures, self._results, self._progress = futures, results, progress

    def __next__(self) -> R:
        return next(self._results)

    def close(self) -> None:
        self._results.close()
        for future in self._futures:
            future.cancel()
        if self._progress is not None:
            self._progress.finish()

    def __del__(self) -> None:
        # Dropped unread: nothing more will be sent, and the progress ends with the last call.
        if self._progress is not None:
            self._progress.all_sent()


def results_of(
    futures: deque[OneCall],
    rest: Iterator[tuple[Any, ...]] | None,
    executor: weakref.ref[Executor],
    fn: Callable[..., Any],
    end: float | None,
    chunked: bool,
    progress: MapProgress | None,
) -> Generator[Any, None, None]:
    """The results of ``Executor.map``: in order, a future at a time, holding none it gave."""
    try:
        while futures:
            if rest is not None:
                owner = executor()
                args = next(rest, None)
                if owner is not None and args is not None:
                    futures.append(owner._submit(fn, args, {}, chunked, progress))
                else:
                    rest = None
                    if progress is not None:
                        progress.all_sent()
            timeout = None if end is None else end - time.monotonic()
            if chunked:
                values = _result_or_cancel(futures.popleft(), timeout, progress)
                values.reverse()
                while values:
                    yield values.pop()  # popped: the iterator keeps no result it gave
            else:
                yield _result_or_cancel(futures.popleft(), timeout, progress)
    finally:
        for future in futures:
            future.cancel()
        if progress is not None:
            for future in futures:
                if future.done():  # its callback may not have run yet
                    progress.count(future)
            progress.finish()


def _result_or_cancel(
    future: OneCall, timeout: float | None, progress: MapProgress | None = None
) -> Any:
    try:
        return future.result(timeout)
    finally:
        future.cancel()
        if progress is not None and future.done():  # not after a timeout or Ctrl-C
            progress.count(future)  # before the caller sees it (the callback may come later)
        del future
