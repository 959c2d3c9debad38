"""Large buffers reach worker processes through shared memory: right values, no leftovers."""

from __future__ import annotations

import os

import numpy as np
import pytest

import smartpool
from smartpool._process import buffers


def leftovers() -> set[str]:
    prefix = f"smartpool-{os.getpid()}-"
    return {name for name in os.listdir(buffers._DIRECTORY) if name.startswith(prefix)}


def total(array: np.ndarray) -> float:
    return float(array.sum())


def scale_in_place(array: np.ndarray) -> float:
    array *= 2  # a worker's copy-on-write mapping: the caller's array must not change
    return float(array[0])


def crash_on_big(array: np.ndarray) -> float:
    os._exit(3)


def test_large_arrays_arrive_intact() -> None:
    arrays = [np.arange(300_000, dtype=np.float64) * i for i in range(6)]  # 2.4 MB each
    before = leftovers()
    results = smartpool.parallel_map(total, arrays, backend="process", chunksize=2)
    assert results == [float(a.sum()) for a in arrays]
    assert leftovers() == before


def test_workers_may_write_without_touching_the_callers_array() -> None:
    array = np.ones(400_000)
    assert smartpool.parallel_map(scale_in_place, [array], backend="process") == [2.0]
    assert float(array[0]) == 1.0


def test_arrays_updated_in_place_between_calls_are_sent_anew() -> None:
    """No reuse of an earlier copy by identity: an array changed in place between two calls
    reaches the workers with its new contents (joblib's memmapping reuses the old file within
    one ``Parallel`` context and returns stale results here; see docs/benchmarks.md)."""
    arrays = [np.zeros(300_000) for _ in range(4)]  # 2.4 MB each: shared memory, not the pipe
    assert smartpool.parallel_map(first, arrays, backend="process") == [0.0] * 4
    for array in arrays:
        array[0] = 42.0
    assert smartpool.parallel_map(first, arrays, backend="process") == [42.0] * 4


def first(array: np.ndarray) -> float:
    return float(array[0])


def test_small_arrays_stay_in_the_stream() -> None:
    small = [np.arange(10) for _ in range(3)]
    assert smartpool.parallel_map(total, small, backend="process") == [45.0] * 3


def test_a_worker_crash_leaves_no_shared_memory_behind() -> None:
    before = leftovers()
    with pytest.raises(smartpool.WorkerCrashedError):
        smartpool.parallel_map(crash_on_big, [np.ones(300_000)], backend="process")
    assert leftovers() == before


def test_export_and_attach_round_trip() -> None:
    import pickle

    array = np.linspace(0, 1, 200_000)
    large: list[pickle.PickleBuffer] = []
    data = smartpool._serialize.dumps(array, large)
    assert len(large) == 1 and len(data) < 1000  # the data left the stream
    paths = buffers.export(large)
    try:
        restored = pickle.loads(data, buffers=buffers.attach(paths))
        assert np.array_equal(restored, array)
    finally:
        buffers.discard(paths)
    assert not any(os.path.exists(p) for p in paths)
