"""Chunk sizes: how many items each chunk of a run gets (:class:`ChunkSizer`).

Adaptive chunk sizes give few round trips for tiny items and fine-grained balance for slow ones.
Each chunk reports how long its items took; the next chunk is sized so that it takes about
``target_seconds``. Towards the end of an input of known length the chunks taper (see
:meth:`ChunkSizer.next_size`), so that the last ones are short and no worker idles while
another runs a long one. A fixed ``chunksize=`` from the user switches adaptation off.
"""

from __future__ import annotations

import math

TAPER = 2
#: ...but no chunk is tapered below this share of the target duration: each chunk costs a round
#: trip, and a tail of one-item chunks of tiny items would cost more than it balances.
TAPER_FLOOR = 0.1


class ChunkSizer:
    """Chooses the size of the next chunk from the measured cost of the previous ones."""

    def __init__(
        self,
        *,
        fixed: int | None,
        first: int,
        target_seconds: float,
        cap: int,
        workers: int = 1,
    ) -> None:
        self._fixed = fixed
        self._size = max(1, min(first, cap))
        self._target = target_seconds
        self._cap = max(1, cap)
        self._workers = max(1, workers)
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
        limit: int | None = None,
    ) -> ChunkSizer:
        """Sizer for a run of ``n_items`` (None: unknown length) spread over ``workers``.

        Inline chunks stop at a time budget anyway, so over a sequence one chunk may be the whole
        input, with no per-chunk cost at all (an iterator is still read a little at a time).
        ``limit`` caps every chunk (a worker process replaced after that many items).
        """
        if inline and n_items is not None:
            return cls(fixed=chunksize or max(1, n_items), first=1, target_seconds=1.0, cap=1)
        if n_items is not None:
            # Never fewer chunks than 2 per worker, so that the last ones still balance the load.
            cap = max(1, math.ceil(n_items / (2 * workers)))
            first = max(1, min(math.ceil(n_items / (4 * workers)), 64))
        else:
            cap, first = 65536, 1
        if limit is not None:  # the backend's workers take at most that many items at a time
            cap, first = min(cap, limit), min(first, limit)
            chunksize = None if chunksize is None else min(chunksize, limit)
        sizer = cls(
            fixed=chunksize, first=first, target_seconds=target_seconds, cap=cap, workers=workers
        )
        if item_seconds is not None:
            sizer._per_item = item_seconds
            sizer._size = sizer._ideal()
        return sizer

    def next_size(self, left: int | None = None) -> int:
        """The size of the next chunk, ``left`` items (if known) not yet handed out.

        Sized for the target duration, but tapered near the end (``TAPER``): costs measured on
        earlier items may not hold for later ones (items that grow dearer, a heavy one among
        light ones), and a chunk that runs long while the other workers have nothing left
        decides when the run ends. The taper stops at ``TAPER_FLOOR`` of the target duration.
        """
        if self._fixed is not None:
            return self._fixed
        if left is None:
            return self._size
        tapered = math.ceil(left / (TAPER * self._workers))
        floor = 1
        if self._per_item is not None:
            floor = int(TAPER_FLOOR * self._target / max(self._per_item, 1e-9))
        return max(1, min(self._size, max(tapered, floor)))

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
