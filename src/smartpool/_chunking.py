"""Adaptive chunk sizes: few round trips for tiny items, fine-grained balance for slow ones.

Each chunk reports how long its items took; the next chunk is sized so that it takes about
``target_seconds``. A fixed ``chunksize=`` from the user switches adaptation off.
"""

from __future__ import annotations

import math


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
    ) -> ChunkSizer:
        """Sizer for a run of ``n_items`` (None: unknown length) spread over ``workers``."""
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
