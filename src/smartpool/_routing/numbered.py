"""The probe's input, shared by the caller and the probe's sender (see ``beside``): every item
keeps its input index, whichever of the two takes it, and what the caller gives back comes
first at its next take."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

from .._work.feed import ItemSource
from .._work.task import ChunkResult


class Sent(NamedTuple):
    """Items sent elsewhere: the input index of the first, how many, and their chunk's Future."""

    start: int
    size: int
    future: Future[ChunkResult]


class Numbered:
    """The probe's input, taken by the caller (``take``) and by the sender (``send_next``): every
    item keeps its input index. What the caller gives back comes first at its next ``take``; the
    sender takes only new items, and only those ready at once."""

    def __init__(
        self, source: ItemSource, take_now: Callable[[int], Sequence[Any] | None] | None = None
    ) -> None:
        self._source, self._take_now = source, take_now
        self._lock = threading.Lock()
        self._taken: int = 0  # items taken from the source and not given back to it
        self._front: list[Any] = []  # given back by the caller, from index ``_front_start``
        self._front_start: int = 0
        #: The input index of the first item of the caller's last ``take``, and of the item after
        #: its last.
        self.start: int = 0
        self._end: int = 0

    def take(self, n: int) -> Sequence[Any]:
        with self._lock:
            items: Sequence[Any]
            if self._front:
                items, self._front = self._front[:n], self._front[n:]
                self.start = self._front_start
                self._front_start += len(items)
                if len(items) < n and self._front_start == self._taken:
                    # The items given back were the input's last taken (none was sent since):
                    # the take goes on into the input, so that a GIL sample after a timing cut
                    # short gets the items it asked for, not the one left over.
                    more = self._source.take(n - len(items))
                    self._taken += len(more)
                    self._front_start += len(more)
                    items = [*items, *more]
            else:
                items = self._source.take(n)
                self.start = self._taken
                self._taken += len(items)
            self._end = self.start + len(items)
            return items

    def give_back(self, rest: Sequence[Any]) -> None:
        """Put back the unrun end of the caller's last ``take``."""
        if rest:
            with self._lock:
                self._front[:0] = list(rest)
                self._front_start = self._end - len(rest)

    def more_than(self, n: int) -> bool:
        """Whether more than ``n`` items are left to take, counting only those ready now."""
        assert self._take_now is not None
        return len(self.look_ahead(n + 1)) == n + 1

    def look_ahead(self, n: int) -> Sequence[Any]:
        """Up to ``n`` of the next items, left in place: without ``take_now``, as ``take`` finds
        them; with it, only those ready now (the input may be fed by the results the probe holds
        back: waiting for it would only delay the plan)."""
        if self._take_now is None:
            items = self.take(n)
            self.give_back(items)
            return items
        with self._lock:
            items = list(self._front[:n])
            if len(items) < n:  # (a sample: the order does not matter)
                more = self._take_now(n - len(items))
                if more:
                    self._source.give_back(more)  # (looked at, not taken)
                    items.extend(more)
            return items

    def send_next(
        self, n: int, send: Callable[[Sequence[Any], int], Future[ChunkResult]]
    ) -> list[Sent] | None:
        """Take up to ``n`` new items that are ready and ``send`` each; what was sent, or None if
        no item is ready now (an empty list: the input has ended). An item that cannot be sent
        goes back to the input and the error is raised."""
        assert self._take_now is not None
        with self._lock:  # the caller takes nothing meanwhile: what goes back stays in order
            items = self._take_now(n)
            if not items:
                return None if items is None else []
            start = self._taken
            sent: list[Sent] = []
            self._taken += len(items)
            try:
                for offset, item in enumerate(items):
                    sent.append(Sent(start + offset, 1, send((item,), start + offset)))
            except BaseException:
                unsent = items[len(sent) :]
                self._source.give_back(unsent)
                self._taken -= len(unsent)
                raise
            return sent

    def close(self, failed: bool = False) -> int:
        """Give what the caller gave back to the input; returns how many items were taken. (They
        are the last taken: the sender stops before the caller takes more than one item, and the
        one the caller gives back while the sender may take, after the first, it takes again,
        unless an item failed: then the run ends there, and they are dropped.)"""
        with self._lock:
            if self._front and failed and self._front_start + len(self._front) != self._taken:
                self._front = []
            if self._front:
                assert self._front_start + len(self._front) == self._taken, "given back out of turn"
                self._source.give_back(self._front)
                self._taken -= len(self._front)
                self._front = []
            return self._taken
