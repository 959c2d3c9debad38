"""The input of a call, handed out a chunk at a time (:class:`Feed`).

A sequence (list, tuple, range) is sliced, and :class:`Tail` stands for its end without a copy;
any other iterable is read lazily, only as far as chunks are taken (on a thread of its own when
the run reads ahead), so that endless generators, and inputs fed by the run's own results, work.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any, Protocol

from .limits import start_thread


def length_of(iterable: Iterable[Any]) -> int | None:
    """The number of items if the input knows it without being consumed, else None."""
    if isinstance(iterable, Sized) and not isinstance(iterable, Iterator):
        try:
            return len(iterable)
        except TypeError:
            return None
    return None


#: Towards the end of an input, a chunk takes at most 1/(TAPER x workers) of the items not yet
#: handed out (guided self-scheduling): whatever the items turn out to cost, the work committed
#: at any moment is a shrinking share of what is left, and the last chunks are small.
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


class ItemSource(Protocol):
    """What the probe takes items from: a :class:`Feed`, or a view of one."""

    def take(self, n: int) -> Sequence[Any]: ...
    def give_back(self, rest: Sequence[Any]) -> None: ...


class Feed:
    """The input, handed out a chunk at a time; a chunk that was not fully run can be given back.

    A sequence (list, tuple, range) is sliced, which costs far less per item than iterating;
    anything else is read lazily, only as far as chunks are taken, so endless generators work.
    An input that raises ends there: the items read before it are handed out, and the error is
    kept in :attr:`failed` for the caller to raise once their results are delivered.
    """

    #: Items read ahead are handed out as a partial chunk when the input paused this long.
    GRACE_SECONDS = 0.002

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
        self._reader: _Reader | None = None
        self._ended = False  # an iterator read to its end
        #: What the input raised, if it did; no item is read after it.
        self.failed: BaseException | None = None

    def read_ahead(self, wake: Callable[[], None]) -> None:
        """From now on, read an iterator input on a thread of its own (a sequence needs none).

        The caller can then hand out results while the input waits for its next item (a
        crawler whose input is fed by its results, a queue): ``take(n, wait=False)`` gives what
        has been read so far, and ``wake`` is called whenever an item arrives or the input ends.
        """
        if self._iterator is not None and self._reader is None:
            self._reader = _Reader(self._iterator, wake)

    @property
    def reading(self) -> bool:
        """Whether the input is read ahead on a thread of its own."""
        return self._reader is not None

    def ready(self) -> bool:
        """Whether ``take`` would return at once (items read, or the input ended)."""
        reader = self._reader
        return reader is None or bool(self._returned) or reader.ready()

    def polled(self) -> bool:
        """Whether items read ahead may arrive without a wake-up (a chunk is being read, or
        part of one is there): a waiter then looks again every ``GRACE_SECONDS``."""
        return self._reader is not None and self._reader.polled()

    def stop(self) -> None:
        """Stop reading ahead; a read in progress ends when the input yields or ends."""
        if self._reader is not None:
            self._reader.stop()

    @property
    def read(self) -> int:
        """How many items have been taken (and not given back)."""
        return self._position if self._sequence is not None else self._read

    def take(self, n: int) -> Sequence[Any]:
        """Up to ``n`` next items (fewer at the end; empty when there are none left)."""
        chunk = self._take(n, wait=True)
        assert chunk is not None
        return chunk

    def take_ready(self, n: int, patience: float = 0.0) -> Sequence[Any] | None:
        """Like ``take``, but while reading ahead, only the items read within ``patience``
        seconds: None if none came."""
        return self._take(n, wait=False, patience=patience)

    @property
    def ended(self) -> bool:
        """Whether the input is known to have no items left."""
        if self._sequence is not None:
            return self._position >= len(self._sequence)
        if self._returned:
            return False
        return self._ended if self._reader is None else self._reader.ended()

    def _take(self, n: int, wait: bool, patience: float = 0.0) -> Sequence[Any] | None:
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
        if self._reader is not None:
            if len(chunk) < n:
                more = self._reader.take(n - len(chunk), wait=wait and not chunk, patience=patience)
                if more is None and not chunk:
                    return None
                chunk.extend(more or ())
            self.failed = self._reader.failed
        elif self.failed is None and len(chunk) < n:
            wanted = n - len(chunk)
            try:  # ``extend`` keeps the items read before an error
                chunk.extend(itertools.islice(self._iterator, wanted))
            except Exception as exc:
                self.failed = exc
            self._ended = len(chunk) < n
        self._read += len(chunk)
        return chunk

    def give_back(self, rest: Sequence[Any]) -> None:
        """Put the unrun end of the last chunk taken back in front of the input."""
        if self._sequence is not None:
            self._position -= len(rest)
        else:
            self._returned[:0] = list(rest)
            self._read -= len(rest)


class _Reader:
    """Reads an iterator on a daemon thread, as far as the caller has asked and no further.

    ``take_ready(n)`` asks for ``n`` items and returns at once: the reader reads them while the
    caller hands out results, and ``wake`` runs when the first of them arrives and when they are
    all read (or the input ends). An item is never read before it is asked for, so an input that
    yields the same object refilled (a reused buffer) is safe with ``chunksize=1``, as when it is
    read in the caller. After the first item, the rest of a chunk is read in one ``extend``
    (each item lands in the buffer as it comes, at C speed). A thread blocked in the input's
    ``next()`` cannot be interrupted: if the input never yields again, it waits there for good
    (as a daemon, it does not hold up exit).
    """

    GRACE_SECONDS = Feed.GRACE_SECONDS

    def __init__(self, iterator: Iterator[Any], wake: Callable[[], None]) -> None:
        self._iterator = iterator
        self._wake = wake
        self._cond = threading.Condition()
        self._items: deque[Any] = deque()
        self._asked = 0  # items asked for and not yet taken
        self._taken = 0  # items taken so far: with len(_items), how many were read
        self._mark = (0, 0.0)  # (items read, when that count was first seen): tells a pause
        self._ended = self._stopped = self._batch = False
        self.failed: BaseException | None = None
        reader = threading.Thread(target=self._run, name="smartpool-input", daemon=True)
        start_thread(reader, "the thread that reads the input iterator")

    def _run(self) -> None:
        iterator, cond, items = self._iterator, self._cond, self._items
        while True:
            with cond:
                while len(items) >= self._asked and not self._stopped:
                    cond.wait()
                if self._stopped:
                    return
                wanted = self._asked - len(items)
            try:
                items.append(next(iterator))  # the first may be long in coming: say so at once
                self._announce()
                if wanted > 1:
                    with cond:
                        before = self._taken + len(items)
                        self._batch = True  # items now come without notice: waiters poll
                    try:
                        items.extend(itertools.islice(iterator, wanted - 1))
                    finally:
                        with cond:
                            self._batch = False
                            short = self._taken + len(items) - before < wanted - 1
                    if short:
                        raise StopIteration
                    self._announce()
            except StopIteration:
                self._end(None)
                return
            except BaseException as exc:  # the caller raises it once the items before it ran
                self._end(exc)
                return

    def _announce(self) -> None:
        with self._cond:
            self._cond.notify_all()
        self._wake()

    def _end(self, error: BaseException | None) -> None:
        with self._cond:
            self._ended, self.failed = True, error
            self._cond.notify_all()
        self._wake()

    def _has_chunk(self) -> bool:
        """Under the lock: the items asked for are read, or the input ended, or it paused (no
        new item since the count was last looked at, ``GRACE_SECONDS`` ago)."""
        items = self._items
        if self._ended or self._stopped or (items and len(items) >= self._asked):
            return True
        if not items:
            return False
        read, now = self._taken + len(items), time.monotonic()
        if read != self._mark[0]:
            self._mark = (read, now)
            return False
        return now - self._mark[1] >= self.GRACE_SECONDS

    def ready(self) -> bool:
        with self._cond:
            return self._has_chunk()

    def polled(self) -> bool:
        """Whether items may arrive without a wake-up: some are read, or a batch is under way."""
        return bool(self._items) or self._batch

    def ended(self) -> bool:
        with self._cond:
            return self._ended and not self._items

    def take(self, n: int, wait: bool, patience: float = 0.0) -> list[Any] | None:
        """Up to ``n`` items. With ``wait``, wait for them all, or the end, or a pause of
        ``GRACE_SECONDS`` in the input after the first; without, wait up to ``patience`` for
        that, and return None if it did not come (the items stay asked for)."""
        cond, items = self._cond, self._items
        with cond:
            if n > self._asked:
                self._asked = n
                cond.notify_all()
            deadline = None if wait else time.monotonic() + patience
            while not self._has_chunk():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                grace = self.GRACE_SECONDS if items or self._batch else None
                cond.wait(grace if left is None else min(left, grace or left))
            if not items:
                return []  # ended (or stopped)
            k = min(n, len(items))
            chunk = [items.popleft() for _ in range(k)]
            self._asked = max(0, self._asked - k)
            self._taken += k
            return chunk

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
