"""What moving a job's items and results to worker processes costs the caller: pickling, and
large buffers (NumPy arrays) through shared memory, once per call when several items share one.
Measured by :mod:`smartpool._probe` on the items it runs.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

from .._transport.serialize import dumps

#: Seconds per byte to move a large buffer through shared memory (one copy, page faults).
SHARED_MEMORY_SECONDS_PER_BYTE = 0.3e-9
#: Items pickled to tell per-item large buffers from one shared by all (see ``_pickling_cost``).
SHARING_SAMPLE = 4


def pickling_cost(items: list[Any], results: list[Any]) -> tuple[bool | None, float, float]:
    """Whether sample items and results pickle; the caller-side seconds per item to do it; and
    the seconds, once per call, for large buffers that several of the items share.

    Large buffers (NumPy arrays) are not pickled here but counted at the cost of the shared
    memory they will travel through. The function itself is checked when a process plan is
    prepared, so its pickling error surfaces only where it matters.
    """
    # CPU time: pickling computes, and time queued for a core on a busy machine is not its cost
    began = time.thread_time()
    large: list[pickle.PickleBuffer] = []
    try:
        dumps(items, large)  # the pickle memo lists a buffer shared by several items once
        per_item = _item_bytes(items, large) if large else {}
        moved = sum(b.raw().nbytes for b in large)
        shared = moved - sum(per_item.values())
        dumps(results, large)
        moved += sum(b.raw().nbytes for b in large)
    except Exception:
        return False, 0.0, 0.0
    moved -= shared
    seconds = time.thread_time() - began + moved * SHARED_MEMORY_SECONDS_PER_BYTE
    return None, seconds / max(len(items), 1), shared * SHARED_MEMORY_SECONDS_PER_BYTE


def _item_bytes(items: list[Any], large: list[pickle.PickleBuffer]) -> dict[int, int]:
    """Bytes of the large buffers in ``large`` that only one of ``items`` holds, by owner."""
    holders: dict[int, int] = {}
    sizes = {id(b.raw().obj): b.raw().nbytes for b in large}
    for item in items:
        mine: list[pickle.PickleBuffer] = []
        dumps(item, mine)
        for owner in {id(b.raw().obj) for b in mine}:
            holders[owner] = holders.get(owner, 0) + 1
    return {owner: size for owner, size in sizes.items() if holders.get(owner, 0) <= 1}
