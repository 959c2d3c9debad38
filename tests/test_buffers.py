"""Large buffers reach worker processes through shared memory: right values, no leftovers."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import smartpool
from smartpool._process import buffers
from smartpool._process.mappings import Mappings
from smartpool._process.spares import spares

from .subprocesses import ENV
from .test_faults_crash import alive


def leftovers() -> set[str]:
    """This process's buffer files, but for those kept for reuse (see the tests of reuse)."""
    prefix = buffers.file_prefix(os.getpid())
    kept = {os.path.basename(path) for path in spares.paths()}
    return {name for name in os.listdir(buffers.DIRECTORY) if name.startswith(prefix)} - kept


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
    data = smartpool._transport.serialize.dumps(array, large)
    assert len(large) == 1 and len(data) < 1000  # the data left the stream
    paths = buffers.export(large)
    mappings = Mappings()
    try:
        views = mappings.attach(paths)
        restored = pickle.loads(data, buffers=views)
        assert np.array_equal(restored, array)
        del restored
        assert mappings.let_go(views)
    finally:
        buffers.discard(paths)
    assert not any(os.path.exists(p) for p in paths)


def pick(args: tuple[np.ndarray, int, int, smartpool.Event]) -> float:
    """Item 0 stays in flight until the last item has run: every chunk overlaps another."""
    array, index, count, last_ran = args
    if index == 0:
        assert last_ran.wait(60), "the last item never ran"
    elif index == count - 1:
        last_ran.set()
    return float(array[index])


def test_an_array_shared_by_many_items_is_written_once_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Broadcasting one big array to every item (``[(data, i) for i in ...]``) copies it into
    shared memory once, not once per chunk; the file is gone after the call."""
    written: list[int] = []
    real = buffers.export

    def spy(large: list[object]) -> tuple[str, ...]:
        written.append(len(large))
        return real(large)  # type: ignore[arg-type]

    monkeypatch.setattr(buffers, "export", spy)
    shared = np.arange(300_000, dtype=np.float64)  # 2.4 MB: shared memory, not the pipe
    count, last_ran = 4, smartpool.Event()  # 2 x max_workers: all four chunks in flight at once
    items = [(shared, i, count, last_ran) for i in range(count)]
    before = leftovers()
    results = smartpool.parallel_map(pick, items, backend="process", max_workers=2, chunksize=1)
    assert results == [float(i) for i in range(count)]
    assert sum(written) == 1
    assert leftovers() == before


def test_a_generator_refilling_one_buffer_sends_each_item_as_it_was() -> None:
    """A generator may reuse one array for every item it yields: each chunk carries the
    contents of its own items, not a file written for an earlier one."""

    def refill() -> Iterator[np.ndarray]:
        buffer = np.zeros(300_000)
        for i in range(6):
            buffer[:] = i
            yield buffer

    results = smartpool.parallel_map(first, refill(), backend="process", chunksize=1)
    assert results == [float(i) for i in range(6)]


KILLED_CALLER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import numpy as np
    import smartpool

    directory = Path(sys.argv[1])

    def work(array):
        Path(directory, f"running-{os.getppid()}").touch()
        time.sleep(1000)  # the long-running work its caller is killed in the middle of
        return float(array[0])

    smartpool.parallel_map(work, [np.ones(300_000)], backend="process")
    """
)


@pytest.mark.timeout(60)
def test_a_caller_killed_by_sigkill_leaves_no_shared_memory_behind(tmp_path: Path) -> None:
    """SIGKILL gives the caller no chance to remove its files; the fork server, which sees the
    caller go without saying goodbye, removes them (and its workers) instead."""
    script = tmp_path / "script.py"
    script.write_text(KILLED_CALLER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=ENV)
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("running-*")):  # polling for the file, not for time
            assert proc.poll() is None and time.monotonic() < deadline, "the item never ran"
            time.sleep(0.005)

        def files() -> list[str]:
            return [n for n in os.listdir(buffers.DIRECTORY) if buffers.is_buffer_file(n, proc.pid)]

        assert files()
        # A file of another program that starts as the caller's names do: not the server's.
        foreign = Path(buffers.DIRECTORY, f"{buffers.file_prefix(proc.pid)}0")
        foreign.write_bytes(b"not smartpool's")
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while files():
            assert time.monotonic() < deadline, "the killed caller's files are still there"
            time.sleep(0.005)
        server = int(next(tmp_path.glob("running-*")).name.split("-")[1])
        deadline = time.monotonic() + 30
        while alive(server):
            assert time.monotonic() < deadline, f"fork server {server} survived its caller"
            time.sleep(0.005)
        assert foreign.read_bytes() == b"not smartpool's"
    finally:
        Path(buffers.DIRECTORY, f"{buffers.file_prefix(proc.pid)}0").unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class _FullDevice:
    """A buffer whose bytes never fit: writing it fails once its file is made."""

    def raw(self) -> memoryview:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_full_shared_memory_falls_back_to_the_pipe_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A container's /dev/shm is often 64 MB. When a buffer does not fit, the chunk still goes,
    through the pipe, and the warning says how to give the workers more shared memory."""
    real = buffers._write

    def full(path: str, buffer: object) -> None:
        real(path, _FullDevice())  # type: ignore[arg-type]  # made, then the device is full

    monkeypatch.setattr(buffers, "_write", full)
    spares.drop()  # every file must be made anew
    arrays = [np.arange(300_000, dtype=np.float64) * i for i in range(3)]
    before = leftovers()
    with pytest.warns(RuntimeWarning, match="shm-size"):
        results = smartpool.parallel_map(total, arrays, backend="process", chunksize=1)
    assert results == [float(a.sum()) for a in arrays]
    assert leftovers() == before


def test_a_failed_parallel_export_leaves_no_file_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buffers written by several threads: when one fails, the files of the others are removed
    only once every writer is done, so none is made after the cleanup."""
    import pickle
    import threading

    spares.drop()
    real, real_discard = buffers._write, buffers.discard
    other_started, failed, discarded = threading.Event(), threading.Event(), threading.Event()
    made: list[str] = []

    def write(path: str, buffer: pickle.PickleBuffer) -> None:
        if buffer.raw().nbytes == 9 << 20:
            assert other_started.wait(60)  # both run at once: the other one is not cancelled
            failed.set()
            raise OSError(errno.EIO, "Input/output error")
        other_started.set()
        assert failed.wait(60)
        discarded.wait(1.0)  # a cleanup that did not wait for this writer would be done now
        real(path, buffer)
        made.append(path)

    def discard(paths: list[str]) -> None:
        discarded.set()
        real_discard(paths)

    monkeypatch.setattr(buffers, "_write", write)
    monkeypatch.setattr(buffers, "discard", discard)
    before = leftovers()
    large = [pickle.PickleBuffer(bytearray(9 << 20)), pickle.PickleBuffer(bytearray(8 << 20))]
    with pytest.raises(OSError, match="Input/output error"):
        buffers.export(large)
    assert made and not any(os.path.exists(path) for path in made)
    assert leftovers() == before


def test_other_shared_memory_errors_fall_back_without_blaming_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a full device calls for more shared memory; other errors are named as they are."""

    def refused(path: str, buffer: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(buffers, "_write", refused)
    spares.drop()
    with pytest.warns(RuntimeWarning, match="Permission denied") as record:
        assert smartpool.parallel_map(total, [np.ones(300_000)], backend="process") == [300_000.0]
    assert not any("shm-size" in str(warning.message) for warning in record)


def test_buffer_file_names_cannot_be_guessed() -> None:
    names = {os.path.basename(buffers._new_path()) for _ in range(1000)}
    assert len(names) == 1000
    assert all(buffers.is_buffer_file(name, os.getpid()) for name in names)
    assert not buffers.is_buffer_file(f"{buffers.file_prefix(os.getpid())}0", os.getpid())


def test_a_file_already_at_a_buffer_name_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone else's file where smartpool would put a buffer (made before, under that name or
    the predictable names of old) is neither written nor removed: another name is used, with no
    warning, and the transfer still goes through shared memory."""
    spares.drop()
    taken = buffers._new_path()
    squatters = [Path(taken), Path(buffers.DIRECTORY, f"{buffers.file_prefix(os.getpid())}0")]
    for squatter in squatters:
        squatter.write_bytes(b"not smartpool's")
    names = iter([taken])
    real = buffers._new_path
    monkeypatch.setattr(buffers, "_new_path", lambda: next(names, None) or real())
    written = count_writes(monkeypatch)
    try:
        before = leftovers()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert smartpool.parallel_map(total, [np.ones(300_000)], backend="process") == [
                300_000.0
            ]
        assert written["new"] == 2  # the taken name, then a free one
        smartpool.shutdown()  # the files kept for reuse go too, but no other
        assert leftovers() == before
        assert all(squatter.read_bytes() == b"not smartpool's" for squatter in squatters)
    finally:
        for squatter in squatters:
            squatter.unlink(missing_ok=True)


# Reuse: the files of a settled chunk are written over by the next buffer of their size.

KEPT_BY_WORKER: list[np.ndarray] = []


def keep_in_worker(array: np.ndarray) -> float:
    KEPT_BY_WORKER.append(array)  # a worker-side global: the array outlives the chunk
    return float(array[0])


def first_kept(_: object) -> float:
    return float(KEPT_BY_WORKER[0][0])


def count_writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"new": 0, "over": 0}
    new, over = buffers._write, buffers._write_over

    def spy_new(path: str, buffer: object) -> None:
        counts["new"] += 1
        new(path, buffer)  # type: ignore[arg-type]

    def spy_over(path: str, buffer: object) -> bool:
        counts["over"] += 1
        return over(path, buffer)  # type: ignore[arg-type]

    monkeypatch.setattr(buffers, "_write", spy_new)
    monkeypatch.setattr(buffers, "_write_over", spy_over)
    return counts


def test_a_later_call_writes_its_arrays_over_the_files_of_an_earlier_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same sizes, new contents: no new file is made, and every worker sees the new contents."""
    spares.drop()
    counts = count_writes(monkeypatch)
    arrays = [np.full(300_000, float(i)) for i in range(4)]  # 2.4 MB each, one chunk
    assert smartpool.parallel_map(first, arrays, backend="process", chunksize=4) == [0, 1, 2, 3]
    assert counts == {"new": 4, "over": 0}
    assert len(spares.paths()) == 4
    others = [np.full(300_000, float(10 + i)) for i in range(4)]
    assert smartpool.parallel_map(first, others, backend="process", chunksize=4) == [
        10.0,
        11.0,
        12.0,
        13.0,
    ]
    assert counts == {"new": 4, "over": 4}
    for array in arrays:
        array[0] = 42.0  # the earlier arrays again, changed in place
    assert smartpool.parallel_map(first, arrays, backend="process", chunksize=4) == [42.0] * 4
    assert counts == {"new": 4, "over": 8}


def test_a_file_behind_an_array_a_worker_kept_is_never_written_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An array the function keeps (in a global of the worker) must not change when a later
    call sends other arrays of its size: its file is removed, not kept for reuse."""
    spares.drop()
    counts = count_writes(monkeypatch)
    original = np.full(300_000, 7.0)
    before = leftovers()
    assert smartpool.parallel_map(keep_in_worker, [original], backend="process", max_workers=1) == [
        7.0
    ]
    assert spares.paths() == set()
    assert leftovers() == before
    other = np.full(300_000, 99.0)
    assert smartpool.parallel_map(first, [other], backend="process", max_workers=1) == [99.0]
    assert counts == {"new": 2, "over": 0}
    assert smartpool.parallel_map(first_kept, [None], backend="process", max_workers=1) == [7.0]


def test_kept_files_are_removed_by_shutdown_and_once_unused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = buffers.file_prefix(os.getpid())

    def files() -> set[str]:
        return {name for name in os.listdir(buffers.DIRECTORY) if name.startswith(prefix)}

    before = files()
    smartpool.parallel_map(total, [np.ones(300_000)], backend="process")
    kept = {os.path.basename(path) for path in spares.paths()}
    assert kept and kept <= files()
    smartpool.shutdown()
    assert files() == before - kept
    monkeypatch.setattr("smartpool._process.spares.KEEP_SECONDS", 0.05)
    smartpool.parallel_map(total, [np.ones(300_000)], backend="process")
    assert spares.paths()
    deadline = time.monotonic() + 30
    while spares.paths() or files() != before - kept:  # the deadline watcher removes them
        assert time.monotonic() < deadline, "files kept for reuse were never removed"
        time.sleep(0.01)


def test_full_shared_memory_removes_the_kept_files_and_tries_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Files kept for reuse give way to a new buffer that would not fit beside them."""
    smartpool.parallel_map(total, [np.ones(300_000)], backend="process")
    assert spares.paths()
    real, failed = buffers._write, []

    def full_while_kept(path: str, buffer: object) -> None:
        if spares.paths():
            failed.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, buffer)  # type: ignore[arg-type]

    monkeypatch.setattr(buffers, "_write", full_while_kept)
    before = leftovers()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the pipe, no warning
        assert smartpool.parallel_map(total, [np.ones(500_000)], backend="process") == [500_000.0]
    assert failed and not any(os.path.exists(path) for path in failed)
    assert leftovers() == before


def test_the_gil_free_copy_is_compiled_unless_disabled() -> None:
    """A build that silently lost the C copy would hold the GIL for every large copy."""
    disabled = os.environ.get("SMARTPOOL_PURE_PYTHON", "") not in ("", "0")
    assert (buffers._copy_into is buffers._copy_with_gil) is disabled


@pytest.mark.parametrize("copy", ["compiled", "pure-python"])
def test_both_copies_write_a_buffer_over_a_kept_file(
    copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if copy == "pure-python":
        monkeypatch.setattr(buffers, "_copy_into", buffers._copy_with_gil)
    spares.drop()
    for value in (1.0, 2.0, 3.0):  # the second and third go over the first one's file
        arrays = [np.full(300_000, value), np.arange(300_000, dtype=np.float64) + value]
        results = smartpool.parallel_map(total, arrays, backend="process", chunksize=2)
        assert results == [float(a.sum()) for a in arrays]


def test_the_compiled_copy_refuses_mismatched_or_read_only_buffers() -> None:
    from smartpool._process._copy import copy_into  # built at install, as the lock's fast path

    with pytest.raises(ValueError, match="destination has 4 bytes, source 3"):
        copy_into(bytearray(4), b"abc")
    with pytest.raises((TypeError, BufferError)):
        copy_into(b"abcd", b"efgh")
    target = bytearray(4)
    copy_into(target, memoryview(b"wxyz"))
    assert target == b"wxyz"


def test_a_kept_file_can_be_removed_while_a_copy_into_it_still_runs() -> None:
    """Ctrl-C during a large export removes its files while a writer thread may still be
    copying into one (holding the caller's mapping of it): the removal must not fail."""
    spares.drop()
    smartpool.parallel_map(total, [np.ones(300_000)], backend="process")
    (path,) = spares.paths()
    taken = spares.take(os.stat(path).st_size)
    assert taken == path
    in_copy = memoryview(spares.mapping(taken))  # what copy_into holds while it copies
    buffers.discard([taken])
    assert not os.path.exists(taken)
    in_copy.release()
