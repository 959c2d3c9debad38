"""Chunks: how the input is handed out (:class:`Feed`) and how big each chunk is.

Adaptive chunk sizes give few round trips for tiny items and fine-grained balance for slow ones.

Each chunk reports how long its items took; the next chunk is sized so that it takes about
``target_seconds``. A fixed ``chunksize=`` from the user switches adaptation off.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


class ChunkSizer:
    """Chooses the size of the next chunk from the measured cost of the previous ones."""

    def __init__(self, *, fixed: int | None, first: int, target_seconds: float, cap: int) -> None:
        self._fixed = fixed
        self._size = max(1, min(first, cap))
        self._target = target_seconds
        self._cap = max(1, cap)
        self._per_item: float | None = None

    @classmethod
    def for_run(
        cls,
        *,
        chunksize: int | None,
        n_items: int | None,
        workers: int,
        target_seconds: float,
        item_seconds: float | None = None,
        inline: bool = False,
    ) -> ChunkSizer:
        """Sizer for a run of ``n_items`` (None: unknown length) spread over ``workers``.

        Inline chunks stop at a time budget anyway, so over a sequence one chunk may be the whole
        input, with no per-chunk cost at all (an iterator is still read a little at a time).
        """
        if inline and n_items is not None:
            return cls(fixed=chunksize or max(1, n_items), first=1, target_seconds=1.0, cap=1)
        if n_items is not None:
            # Never fewer chunks than 2 per worker, so that the last ones still balance the load.
            cap = max(1, math.ceil(n_items / (2 * workers)))
            first = max(1, min(math.ceil(n_items / (4 * workers)), 64))
        else:
            cap, first = 65536, 1
        sizer = cls(fixed=chunksize, first=first, target_seconds=target_seconds, cap=cap)
        if item_seconds is not None:
            sizer._per_item = item_seconds
            sizer._size = sizer._ideal()
        return sizer

    def next_size(self) -> int:
        return self._fixed if self._fixed is not None else self._size

    def observe(self, n_items: int, seconds: float) -> None:
        """Record that a chunk of ``n_items`` took ``seconds`` of work."""
        if self._fixed is not None or n_items <= 0:
            return
        per_item = max(seconds, 1e-9) / n_items
        self._per_item = per_item if self._per_item is None else 0.5 * (self._per_item + per_item)
        self._size = self._ideal()

    def _ideal(self) -> int:
        assert self._per_item is not None
        return max(1, min(self._cap, int(self._target / max(self._per_item, 1e-9))))


class Tail(Sequence[Any]):
    """The end of a list, tuple or range from ``start`` on, without copying it."""

    def __init__(self, sequence: Sequence[Any], start: int) -> None:
        self.sequence = sequence
        self.start = start

    def __len__(self) -> int:
        return max(0, len(self.sequence) - self.start)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.sequence)
        iterator.__setstate__(self.start)  # type: ignore[attr-defined]
        return iterator

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            begin, end, step = index.indices(len(self))
            if step == 1 and end == len(self):  # a later tail: still no copy
                return Tail(self.sequence, self.start + begin)
            return list(self)[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.sequence[self.start + index]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))  # travels to a worker as the plain list it stands for


class Feed:
    """The input, handed out a chunk at a time; a chunk that was not fully run can be given back.

    A sequence (list, tuple, range) is sliced, which costs far less per item than iterating;
    anything else is read lazily, only as far as chunks are taken, so endless generators work.
    An input that raises ends there: the items read before it are handed out, and the error is
    kept in :attr:`failed` for the caller to raise once their results are delivered.
    """

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._sequence: Sequence[Any] | None = None
        self._iterator: Iterator[Any] | None = None
        if isinstance(iterable, (list, tuple, range)):
            self._sequence = iterable
        else:
            try:
                self._iterator = iter(iterable)
            except TypeError:
                raise TypeError(
                    f"the items must be an iterable (a list, a generator...), "
                    f"got {type(iterable).__name__}: {iterable!r:.80}"
                ) from None
        self._position = 0
        self._returned: list[Any] = []
        self._read = 0  # items taken from an iterator and not given back
        #: What the input raised, if it did; no item is read after it.
        self.failed: Exception | None = None

    @property
    def read(self) -> int:
        """How many items have been taken (and not given back)."""
        return self._position if self._sequence is not None else self._read

    def take(self, n: int) -> Sequence[Any]:
        """Up to ``n`` next items (fewer at the end; empty when there are none left)."""
        if self._sequence is not None:
            start, length = self._position, len(self._sequence)
            if n >= length - start:  # the rest of it: a view, not a copy (nothing writes chunks)
                chunk: Sequence[Any] = self._sequence if start == 0 else Tail(self._sequence, start)
            else:
                chunk = self._sequence[start : start + n]
            self._position += len(chunk)
            return chunk
        assert self._iterator is not None
        chunk = []
        if self._returned:
            chunk, self._returned = self._returned[:n], self._returned[n:]
        if self.failed is None and len(chunk) < n:
            try:  # ``extend`` keeps the items read before an error
                chunk.extend(itertools.islice(self._iterator, n - len(chunk)))
            except Exception as exc:
                self.failed = exc
        self._read += len(chunk)
        return chunk

    def give_back(self, rest: Sequence[Any]) -> None:
        """Put the unrun end of the last chunk taken back in front of the input."""
        if self._sequence is not None:
            self._position -= len(rest)
        else:
            self._returned[:0] = list(rest)
            self._read -= len(rest)
