"""A worker keeps its mappings of large-buffer files from one chunk to the next only while they
show what the caller writes: never one the function wrote into, never one still in use."""

from __future__ import annotations

import os
import pickle
import weakref
from collections.abc import Iterator

import numpy as np
import pytest

import smartpool
from smartpool._process import buffers
from smartpool._process.mappings import Mappings

from .test_faults_crash import start_method  # noqa: F401  (a fixture)

SIZE = 300_000  # float64: 2.4 MB, shared memory rather than the pipe


@pytest.fixture
def kept_file() -> Iterator[str]:
    """One large-buffer file, as the caller makes it, removed after the test."""
    (path,) = buffers.export([pickle.PickleBuffer(np.full(SIZE, 1.0))])
    yield path
    buffers.discard([path])


def write_over(path: str, value: float) -> None:
    """What the caller does to a kept file for its next call."""
    buffers._write_over(path, pickle.PickleBuffer(np.full(SIZE, value)))


def as_array(view: memoryview) -> np.ndarray:
    return np.frombuffer(view, dtype=np.float64)


def test_a_mapping_only_read_is_kept_and_shows_what_the_caller_writes_next(kept_file: str) -> None:
    mappings = Mappings()
    assert mappings.enabled()  # Linux with /proc: the checks can be made
    views = mappings.attach([kept_file])
    first = weakref.ref(views[0].obj)  # a reference would count as a use
    assert float(as_array(views[0]).sum()) == SIZE * 1.0
    assert mappings.let_go(views)
    write_over(kept_file, 2.0)
    views = mappings.attach([kept_file])
    assert views[0].obj is first()  # the same mapping, pages in place
    assert float(as_array(views[0]).sum()) == SIZE * 2.0
    assert mappings.let_go(views)


def test_a_mapping_the_function_wrote_into_is_not_kept(kept_file: str) -> None:
    """Copy-on-write: the written pages are the worker's own copies, which would hide the
    caller's next contents; the mapping is closed, and the next chunk maps the file afresh."""
    mappings = Mappings()
    views = mappings.attach([kept_file])
    first = weakref.ref(views[0].obj)  # a reference would count as a use
    array = as_array(views[0])
    array[SIZE // 2] = -1.0  # one page written
    del array
    assert mappings.let_go(views)  # nothing uses it any more: the file may be reused...
    write_over(kept_file, 3.0)
    views = mappings.attach([kept_file])
    assert first() is None  # ...but not this mapping of it: it was closed and let go of
    assert float(as_array(views[0])[SIZE // 2]) == 3.0
    assert mappings.let_go(views)


def test_a_mapping_still_in_use_is_neither_kept_nor_its_file_reused(kept_file: str) -> None:
    mappings = Mappings()
    views = mappings.attach([kept_file])
    kept_by_function = as_array(views[0])
    assert not mappings.let_go(views)
    views = mappings.attach([kept_file])
    assert views[0].obj is not kept_by_function.base.obj  # type: ignore[union-attr]
    assert mappings.let_go(views)
    assert float(kept_by_function[0]) == 1.0


def test_mappings_of_removed_files_are_closed(kept_file: str) -> None:
    mappings = Mappings()
    views = mappings.attach([kept_file])
    mapping = weakref.ref(views[0].obj)
    assert mappings.let_go(views)
    assert mapping() is not None
    os.unlink(kept_file)
    mappings.sweep()
    assert mapping() is None  # closed, and let go of


def double_in_place(array: np.ndarray) -> float:
    array *= 2  # the worker's copy-on-write pages: never the caller's array, never a later one
    return float(array[0])


@pytest.mark.usefixtures("start_method")
def test_a_worker_that_wrote_into_its_array_sees_the_next_calls_contents() -> None:
    """The file is written over by the next call; the worker's own copies of the pages it
    wrote must not hide the new contents."""
    for value in (1.0, 5.0, 7.0):
        arrays = [np.full(SIZE, value) for _ in range(2)]
        results = smartpool.parallel_map(
            double_in_place, arrays, backend="process", max_workers=1, chunksize=1
        )
        assert results == [2 * value, 2 * value]
        assert all(float(a[0]) == value for a in arrays)


def first(array: np.ndarray) -> float:
    return float(array[0])


@pytest.mark.usefixtures("start_method")
def test_a_worker_reading_the_same_files_call_after_call_sees_each_calls_contents() -> None:
    for value in (1.0, 2.0, 3.0, 4.0):
        arrays = [np.full(SIZE, value + i) for i in range(4)]
        results = smartpool.parallel_map(first, arrays, backend="process", max_workers=2)
        assert results == [value + i for i in range(4)]
