"""``assert_picklable``: everything a call sends to a worker process can travel there and back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import smartpool


def _echo(item: object) -> object:
    return item


def assert_picklable(fn: Callable[..., Any], *items: Any) -> None:
    """Check that ``fn`` and ``items`` can be sent to a worker process, as the process backend
    sends them (plain pickle, cloudpickle for what needs it), and that the items arrive there
    (their classes import in a worker) and come back.

    Raises AssertionError naming the object that cannot travel and where it sits: "the function
    'f' ...: closure variable 'lock' -> _thread.lock object", "item 2 (Row) ...". ``fn`` does not
    run; the items take a round trip through a worker process.

    Example:
        >>> import threading
        >>> from smartpool.testing import assert_picklable
        >>> assert_picklable(abs, -1, 2)
        >>> lock = threading.Lock()
        >>> def guarded(x):
        ...     with lock:
        ...         return x
        >>> assert_picklable(guarded, 1)
        Traceback (most recent call last):
        ...
        AssertionError: guarded cannot be sent to a worker process: the function 'guarded' ...
    """
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    try:
        # No items: the function is pickled for the pool (as every call does) but never runs.
        smartpool.parallel_map(fn, [], backend="process")
    except smartpool.SerializationError as exc:
        raise AssertionError(f"{name} cannot be sent to a worker process: {exc}") from exc
    if not items:
        return
    try:
        back = smartpool.parallel_map(_echo, list(items), backend="process", chunksize=1)
    except Exception as exc:
        raise AssertionError(
            f"the items for {name} cannot travel to a worker process and back: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    assert len(back) == len(items)  # the round trip lost nothing
