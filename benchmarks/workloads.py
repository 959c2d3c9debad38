"""The benchmark workloads: top-level functions (picklable by reference) and their inputs.

Each map workload is one function applied to a list of items. Sizes are fixed (loop counts, byte
counts, sleep lengths), never derived from timing, so every engine does exactly the same work.
This module must stay cheap to import: the cold-start probe imports it before timing an engine.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Calibrated on the 2-core reference machine (CPython 3.11): ~57 us per 1000 iterations of spin().
CPU_PY_LOOPS = 260_000  # ~15 ms
LONG_PY_LOOPS = 1_730_000  # ~100 ms
MIXED_CPU_LOOPS = 88_000  # ~5 ms
MIXED_SLEEP_S = 0.005
IO_SLEEP_S = 0.02
SHA_BLOCK_BYTES = 4 * 1024 * 1024
SHA_ROUNDS = 5
BIG_ARRAY_LEN = 1024 * 1024  # float64: 8 MiB
SHARED_ARRAY_LEN = 4 * 1024 * 1024  # float64: 32 MiB
LOOPS_PER_MS = 17_500  # spin() iterations in ~1 ms on the reference machine
# Uneven items: each item is the loop count of its own call (see ``burn``).
HEAVY_TAIL_EVERY = 50  # 1 item in 50 is heavy...
HEAVY_LOOPS = 100 * LOOPS_PER_MS  # ...~100 ms, the others ~1 ms
VARIED_LOOPS = (LOOPS_PER_MS * 13 // 100, LOOPS_PER_MS * 130 // 100)  # ~0.13-1.3 ms, ~0.7 ms mean
DRIFT_LOOPS = (LOOPS_PER_MS // 10, 5 * LOOPS_PER_MS)  # the first ~0.1 ms, the last ~5 ms


def spin(loops: int) -> int:
    """Pure-Python CPU work that holds the GIL for its whole duration."""
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1_000_003
    return acc


def double(x: int) -> int:
    """tiny and warm_small: almost no work, so only per-item overhead is measured."""
    return x * 2


def cpu_py(seed: int) -> int:
    """cpu_py: ~15 ms of pure-Python CPU."""
    return spin(CPU_PY_LOOPS) + seed


def long_py(seed: int) -> int:
    """long_py and few_long_py: ~100 ms of pure-Python CPU."""
    return spin(LONG_PY_LOOPS) + seed


@functools.cache
def _sha_block() -> bytes:
    return bytes(range(256)) * (SHA_BLOCK_BYTES // 256)


def cpu_gil_free(seed: int) -> str:
    """cpu_gil_free: sha256 over 4 MiB, 5 times; hashlib releases the GIL on large buffers."""
    digest = hashlib.sha256(seed.to_bytes(8, "little"))
    block = _sha_block()
    for _ in range(SHA_ROUNDS):
        digest.update(block)
    return digest.hexdigest()


def io_sleep(x: int) -> int:
    """io_sleep: a 20 ms wait that uses no CPU."""
    time.sleep(IO_SLEEP_S)
    return x + 1


def mixed(x: int) -> int:
    """mixed: even items burn ~5 ms of pure-Python CPU, odd items sleep 5 ms."""
    if x % 2 == 0:
        return spin(MIXED_CPU_LOOPS) + x
    time.sleep(MIXED_SLEEP_S)
    return x


def array_sum(arr: Any) -> float:
    """big_args: trivial work on a large (8 MiB) argument, so moving the argument dominates."""
    return float(arr.sum())


@dataclass(frozen=True)
class SharedSlice:
    """big_shared's item: one large array (the same object in every item) and an index. Not a
    tuple: mpire would unpack a tuple into arguments."""

    array: Any
    index: int


def shared_pick(item: SharedSlice) -> float:
    """big_shared: ~5 ms of pure-Python CPU per item, reading one large array every item has."""
    return spin(MIXED_CPU_LOOPS) + float(item.array[item.index * 1000])


def burn(loops: int) -> int:
    """heavy_tail, varied, drifting: each item is the number of loops its call spins, so that
    the items of one map cost different amounts of pure-Python CPU."""
    return spin(loops)


def _heavy_tail(n: int) -> list[Any]:
    """~1 ms items, of which 1 in ``HEAVY_TAIL_EVERY`` (placed at random, the same places every
    time) costs ~100 ms."""
    rng = random.Random(23)
    heavy = set(rng.sample(range(n), max(1, n // HEAVY_TAIL_EVERY)))
    return [HEAVY_LOOPS if i in heavy else LOOPS_PER_MS for i in range(n)]


def _varied(n: int) -> list[Any]:
    """Items whose cost varies tenfold, uniformly at random (the same every time)."""
    rng = random.Random(23)
    return [rng.randint(*VARIED_LOOPS) for _ in range(n)]


def _drifting(n: int) -> list[Any]:
    """Items whose cost rises steadily from the first to the last."""
    low, high = DRIFT_LOOPS
    return [low + (high - low) * i // max(1, n - 1) for i in range(n)]


def _ints(n: int) -> list[Any]:
    return list(range(n))


def _arrays(n: int) -> list[Any]:
    import numpy as np

    base = np.arange(BIG_ARRAY_LEN, dtype=np.float64)
    return [base + i for i in range(n)]


def _one_shared_array(n: int) -> list[Any]:
    import numpy as np

    shared = np.arange(SHARED_ARRAY_LEN, dtype=np.float64)
    return [SharedSlice(shared, i) for i in range(n)]


def _bump_arrays(items: list[Any], repeat: int) -> None:
    """An in-place update between two maps, as a simulation step or a training loop does."""
    for array in items:
        array[0] = repeat + 1.0


def _io_sleep_expected(items: list[Any]) -> list[Any]:
    return [x + 1 for x in items]


def _mixed_expected(items: list[Any]) -> list[Any]:
    burned = spin(MIXED_CPU_LOOPS)
    return [burned + x if x % 2 == 0 else x for x in items]


@dataclass(frozen=True)
class MapWorkload:
    """One function mapped over one list of items."""

    name: str
    fn: Callable[[Any], Any]
    size: int
    quick_size: int
    make_items: Callable[[int], list[Any]]
    description: str
    # Computes the serial result without the waits; None means "run fn serially".
    expected: Callable[[list[Any]], list[Any]] | None = None
    # Changes the items in place before each timed map (untimed); the result is checked
    # against the items as they are then. None: the same items every time.
    update: Callable[[list[Any], int], None] | None = None

    def items(self, quick: bool) -> list[Any]:
        return self.make_items(self.quick_size if quick else self.size)

    def reference(self, items: list[Any]) -> list[Any]:
        if self.expected is not None:
            return self.expected(items)
        return [self.fn(item) for item in items]


MAP_WORKLOADS: dict[str, MapWorkload] = {
    w.name: w
    for w in (
        MapWorkload("tiny", double, 200_000, 20_000, _ints, "200,000 x `x*2`: per-item overhead"),
        MapWorkload("cpu_py", cpu_py, 64, 8, _ints, "64 pure-Python loops of ~15 ms: GIL-bound"),
        MapWorkload("long_py", long_py, 6, 6, _ints, "6 pure-Python loops of ~100 ms: a few long"),
        MapWorkload("few_long_py", long_py, 3, 3, _ints, "3 pure-Python loops of ~100 ms"),
        MapWorkload(
            "cpu_gil_free", cpu_gil_free, 32, 4, _ints, "32 x sha256 over 4 MiB x5: releases GIL"
        ),
        MapWorkload(
            "io_sleep", io_sleep, 400, 40, _ints, "400 x sleep(20 ms): waiting", _io_sleep_expected
        ),
        MapWorkload(
            "mixed", mixed, 128, 16, _ints, "half ~5 ms CPU, half 5 ms sleep", _mixed_expected
        ),
        MapWorkload("big_args", array_sum, 64, 8, _arrays, "64 NumPy arrays of 8 MiB, arr.sum()"),
        MapWorkload(
            "big_args_updated",
            array_sum,
            64,
            8,
            _arrays,
            "big_args, each array changed in place before every map",
            update=_bump_arrays,
        ),
        MapWorkload(
            "big_shared",
            shared_pick,
            64,
            8,
            _one_shared_array,
            "64 x ~5 ms pure-Python CPU, every item holding the same 32 MiB NumPy array",
        ),
        MapWorkload(
            "heavy_tail",
            burn,
            500,
            100,
            _heavy_tail,
            "500 pure-Python items of ~1 ms, 1 in 50 of ~100 ms instead",
        ),
        MapWorkload(
            "varied", burn, 1500, 150, _varied, "1500 pure-Python items of 0.13-1.3 ms, at random"
        ),
        MapWorkload(
            "drifting",
            burn,
            400,
            40,
            _drifting,
            "400 pure-Python items rising steadily from ~0.1 ms to ~5 ms",
        ),
    )
}

# Workloads that are not one map: start-up cost, per-call overhead on a warm pool, lock speed.
COLD = "cold"
WARM_SMALL = "warm_small"
LOCK = "lock"
WARM_SMALL_ITEMS = 8
WARM_SMALL_CALLS = 200
WARM_SMALL_QUICK_CALLS = 20
SPECIAL_WORKLOADS = (COLD, WARM_SMALL, LOCK)
ALL_WORKLOADS = (*MAP_WORKLOADS, *SPECIAL_WORKLOADS)

# The lock workload has lock kinds instead of engines.
LOCK_KINDS = ("threading.Lock", "multiprocessing.Lock", "smartpool.Lock")
