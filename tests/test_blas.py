"""``inner_threads=``: BLAS/OpenMP threads per worker, observed with threadpoolctl inside the
workers; the caller's limits restored after a run on threads; a warning without threadpoolctl."""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Iterator

import numpy
import pytest
import threadpoolctl

import smartpool
from smartpool._work import blas

from .helpers import blas_library_threads, blas_threads, openmp_threads


@pytest.fixture(autouse=True)
def _numpy_blas_loaded() -> Iterator[None]:
    numpy.ones(2) @ numpy.ones(2)
    yield


def _caller_threads() -> list[int]:
    return sorted({int(i["num_threads"]) for i in threadpoolctl.threadpool_info()})


def _blas_threads() -> list[int]:
    """The BLAS libraries' thread counts (process-wide)."""
    infos = threadpoolctl.threadpool_info()
    return sorted({int(i["num_threads"]) for i in infos if i["user_api"] == "blas"})


@pytest.mark.parametrize("workers", [1, 2])
def test_each_worker_process_gets_its_share_of_the_cpus(workers: int) -> None:
    expected = max(1, smartpool.cpu_count() // workers)
    seen = smartpool.parallel_map(
        blas_threads, range(2 * workers), backend="process", max_workers=workers, chunksize=1
    )
    assert all(threads == [expected] for threads in seen), seen


def test_a_number_of_inner_threads_is_kept_and_max_cpus_counts() -> None:
    seen = smartpool.parallel_map(
        blas_threads, range(2), backend="process", max_workers=1, inner_threads=3
    )
    assert seen == [[3], [3]]
    seen = smartpool.parallel_map(
        blas_threads, range(2), backend="process", max_workers=1, max_cpus=1
    )
    assert seen == [[1], [1]]


def test_a_fresh_worker_reads_the_limit_before_numpy_loads() -> None:
    """A spawned worker has no NumPy until the chunk's function imports it: the environment
    variables set before the chunk is unpickled limit it."""
    previous = smartpool.current_config().start_method
    smartpool.configure(start_method="spawn")
    try:
        seen = smartpool.parallel_map(
            blas_threads, range(2), backend="process", max_workers=1, inner_threads=1
        )
    finally:
        smartpool.configure(start_method=previous)
    assert seen == [[1], [1]]


def test_a_run_on_threads_limits_the_caller_and_restores_it_after() -> None:
    gc.collect()  # runs other tests left open (an imap dropped unread) end now, not midway
    before = _caller_threads()
    # The BLAS's limit is process-wide; an OpenMP runtime's is per thread (the next test).
    seen = smartpool.parallel_map(blas_library_threads, range(4), backend="thread", max_workers=2)
    assert all(threads == [max(1, smartpool.cpu_count() // 2)] for threads in seen), seen
    assert _caller_threads() == before
    with pytest.raises(ZeroDivisionError):
        smartpool.parallel_map(lambda x: 1 // x, [1, 0], backend="thread", inner_threads=1)
    assert _caller_threads() == before


def test_none_leaves_the_libraries_alone() -> None:
    before = _caller_threads()
    seen = smartpool.parallel_map(
        blas_threads, range(2), backend="thread", max_workers=2, inner_threads=None
    )
    assert seen == [before, before]


def test_without_threadpoolctl_a_warning_once_when_numpy_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blas, "_threadpoolctl", lambda: None)
    monkeypatch.setattr(blas, "available", lambda: False)
    monkeypatch.setattr(blas, "_warned", False)
    with pytest.warns(RuntimeWarning, match=r"smartpool\[blas\]"):
        smartpool.parallel_map(abs, range(4), backend="thread", max_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smartpool.parallel_map(abs, range(4), backend="thread", max_workers=2)
        smartpool.parallel_map(abs, range(4), backend="thread", inner_threads=None)


def test_bad_inner_threads_are_refused() -> None:
    with pytest.raises(ValueError, match="inner_threads must be at least 1"):
        smartpool.parallel_map(abs, [1], inner_threads=0)
    with pytest.raises(TypeError, match="inner_threads must be an int, 'auto' or None"):
        smartpool.parallel_map(abs, [1], inner_threads="many")  # type: ignore[arg-type]


@pytest.mark.parametrize("last_out", ["first", "second"])
def test_overlapping_runs_on_threads_restore_the_limits_from_before_the_first(
    last_out: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if no other run on threads were open (an imap left open elsewhere holds a limit).
    monkeypatch.setattr(blas._ProcessLimit, "_holders", 0)
    monkeypatch.setattr(blas._ProcessLimit, "_before", {})
    with threadpoolctl.threadpool_limits(limits=3):  # the caller's own setting
        first, second = blas.limited(1), blas.limited(1)
        first.__enter__()
        second.__enter__()
        assert _blas_threads() == [1]
        ending = [first, second] if last_out == "second" else [second, first]
        ending[0].__exit__(None, None, None)
        assert _blas_threads() == [1]  # the other run still holds its limit
        ending[1].__exit__(None, None, None)
        assert _blas_threads() == [3]


def test_a_run_on_threads_limits_openmp_in_each_worker_thread_and_puts_it_back() -> None:
    """OpenMP's thread count is a setting of each thread: the pool's threads set it around
    each chunk of a limited run, and put it back for the next run."""
    import sklearn  # noqa: F401  (loads its OpenMP runtime, libgomp)

    assert openmp_threads(None), "no OpenMP runtime loaded: nothing here would be tested"
    baseline: list[list[int]] = []
    fresh = threading.Thread(target=lambda: baseline.append(openmp_threads(None)))
    fresh.start()
    fresh.join()
    limit = baseline[0][0] + 1  # differs from what any thread has by default
    run = {"backend": "thread", "max_workers": 2, "chunksize": 1}
    seen = smartpool.parallel_map(openmp_threads, range(8), inner_threads=limit, **run)
    assert seen == [[limit]] * 8
    seen = smartpool.parallel_map(openmp_threads, range(8), inner_threads=None, **run)
    assert seen == baseline * 8  # the same threads, put back
    seen = smartpool.parallel_map(openmp_threads, range(8), **run)  # "auto"
    assert seen == [[max(1, smartpool.cpu_count() // 2)]] * 8


@pytest.mark.parametrize("how", ["every result taken", "closed", "dropped"])
def test_an_imap_on_threads_lets_go_of_the_blas_limit(how: str) -> None:
    gc.collect()  # runs other tests left open end now, not midway
    before = _blas_threads()
    limit = 1 if before != [1] else 2
    results = smartpool.imap(
        blas_library_threads, range(6), backend="thread", max_workers=2, inner_threads=limit
    )
    assert next(results) == [limit]
    assert _blas_threads() == [limit]  # held while the run works
    if how == "every result taken":
        assert [next(results) for _ in range(5)] == [[limit]] * 5  # no StopIteration asked for
    elif how == "closed":
        results.close()
    else:
        del results
    assert _blas_threads() == before


def test_a_single_call_on_a_thread_leaves_the_blas_limit_alone() -> None:
    """One ``submit`` ends on a worker thread, where OpenBLAS ignores a count put back: it
    limits only the OpenMP runtimes of the thread running it."""
    gc.collect()
    before = _blas_threads()
    futures = [smartpool.submit(smartpool.io_bound(blas_library_threads), i) for i in range(3)]
    assert [future.result() for future in futures] == [before] * 3
    assert _blas_threads() == before


def test_while_the_probe_may_send_items_beside_the_caller_keeps_its_share_of_blas() -> None:
    """With worker processes running, items may run on them beside the probe's own: the
    caller's BLAS then has its share of the cores, as each worker has, not all of them (the
    caller and the workers would take twice the cores). Without worker processes nothing is
    sent and the caller's BLAS is left alone. Put back after the probe either way."""
    import os

    caller = os.getpid()
    before = _blas_threads()
    cores = smartpool.cpu_count()

    def in_caller(x: int) -> list[int] | None:
        return blas_library_threads(x) if os.getpid() == caller else None

    # The first item always runs in the caller, timed by the probe (the items after it may run
    # there too, after the probe, planned serial: with the caller's own limits).
    smartpool.shutdown()  # no worker process: nothing can be sent beside
    smartpool.forget()
    assert smartpool.parallel_map(in_caller, range(3))[0] == before
    assert smartpool.parallel_map(abs, range(-4, 0), backend="process") == [4, 3, 2, 1]
    smartpool.forget()
    share = [max(1, cores // cores)] if cores >= 2 else before
    assert smartpool.parallel_map(in_caller, range(3))[0] == share
    assert _blas_threads() == before
