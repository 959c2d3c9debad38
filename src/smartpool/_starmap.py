"""``starmap`` and ``istarmap``: :func:`parallel_map` and :func:`imap` for argument tuples."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, overload

from typing_extensions import Unpack

from ._api import ResultIterator, _collect, start
from ._options import MapOptions
from ._work.shapes import shaped

R = TypeVar("R")


def starmap(
    fn: Callable[..., R], iterable: Iterable[Iterable[Any]], /, **options: Unpack[MapOptions]
) -> list[R]:
    """``parallel_map`` for items that are argument tuples: ``fn(*item)`` for each item.

    Example:
        >>> import smartpool
        >>> smartpool.starmap(pow, [(2, 5), (3, 2)], backend="thread")
        [32, 9]
    """
    run, ordered = start(*shaped(fn, iterable, star=True), options)
    return _collect(run.results(), ordered)


@overload
def istarmap(
    fn: Callable[..., R],
    iterable: Iterable[Iterable[Any]],
    /,
    *,
    with_index: Literal[False] = False,
    **options: Unpack[MapOptions],
) -> ResultIterator[R]: ...
@overload
def istarmap(
    fn: Callable[..., R],
    iterable: Iterable[Iterable[Any]],
    /,
    *,
    with_index: Literal[True],
    **options: Unpack[MapOptions],
) -> ResultIterator[tuple[int, R]]: ...
def istarmap(
    fn: Callable[..., Any],
    iterable: Iterable[Iterable[Any]],
    /,
    *,
    with_index: bool = False,
    **options: Any,
) -> ResultIterator[Any]:
    """:func:`imap` for items that are argument tuples: ``fn(*item)`` for each item, lazily.

    Example:
        >>> import smartpool
        >>> list(smartpool.istarmap(pow, iter([(2, 5), (3, 2)]), backend="thread"))
        [32, 9]
    """
    run, _ = start(*shaped(fn, iterable, with_index=with_index, star=True), options)
    return ResultIterator(run)
