"""Call shapes: several iterables zipped, argument tuples, results paired with their index.

Chunks are made of one-argument calls; :func:`shaped` turns the other shapes into that one, the
function wrapped in an :class:`Adapted` that runs wherever the chunk runs (inline, on a thread,
in a worker process, where it is unpickled by reference to this module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def shaped(
    fn: Callable[..., Any],
    iterable: Iterable[Any],
    iterables: tuple[Iterable[Any], ...] = (),
    with_index: bool = False,
    star: bool = False,
) -> tuple[Callable[..., Any], Iterable[Any]]:
    """``fn`` and its items reshaped to one argument per item: several iterables zipped (each
    item a tuple of arguments, ``star`` when they come so), and ``with_index`` pairing each
    result with its item's index. A decorated ``fn`` keeps its options and hint."""
    if iterables:
        every = (iterable, *iterables)
        zipped = zip(*every)  # noqa: B905  # the shortest ends it, as in map()
        iterable = list(zipped) if all(type(i) in (list, tuple, range) for i in every) else zipped
        star = True
    if star:
        fn = Adapted(fn, star=True)
    if with_index:
        indexed = enumerate(iterable)
        iterable = list(indexed) if type(iterable) in (list, tuple, range) else indexed
        fn = Adapted(fn, indexed=True)
    return fn, iterable


class Adapted:
    """``fn`` called as ``fn(*args)`` on each item (``star``), or on the item of an
    ``(index, item)`` pair, returning ``(index, result)`` (``indexed``).

    It carries the options and hint of a decorated ``fn``, and pickles by value around it.
    """

    def __init__(self, fn: Callable[..., Any], *, star: bool = False, indexed: bool = False):
        self.fn, self.star, self.indexed = fn, star, indexed
        # What ``_api`` reads of a decorated function: its default options and routing hint.
        self._smartpool_options: object = getattr(fn, "_smartpool_options", None)
        self._smartpool_hint: object = getattr(fn, "_smartpool_hint", None)
        self.__qualname__ = str(getattr(fn, "__qualname__", type(fn).__qualname__))

    def __call__(self, item: Any) -> Any:
        if self.indexed:
            index, item = item
            return index, self.fn(item)
        return self.fn(*item) if self.star else self.fn(item)

    def raw(self, unwrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Adapted:
        """The same adapter around ``unwrap(fn)``: the undecorated function, called where
        nothing needs pickling."""
        return Adapted(unwrap(self.fn), star=self.star, indexed=self.indexed)
