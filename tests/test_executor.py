"""smartpool.Executor: a concurrent.futures.Executor that routes each function it is given."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

import pytest

import smartpool
from smartpool._routing import learning

from . import executor_tasks as tasks
from .helpers import double

PARALLEL = ("thread", "process")


@pytest.fixture(autouse=True)
def _fresh_decisions() -> Iterator[None]:
    smartpool.forget()
    yield
    smartpool.forget()


def test_is_a_concurrent_futures_executor() -> None:
    assert issubclass(smartpool.Executor, concurrent.futures.Executor)
    assert not issubclass(smartpool.Executor, concurrent.futures.ThreadPoolExecutor)


@pytest.mark.parametrize("backend", PARALLEL)
def test_submit_and_map(backend: str) -> None:
    with smartpool.Executor(backend=backend) as executor:
        assert executor.submit(pow, 2, 10).result() == 1024
        assert executor.submit(divmod, 7, b=2).exception() is not None  # a keyword it refuses
        assert list(executor.map(pow, range(5), [2] * 7)) == [0, 1, 4, 9, 16]
        assert list(executor.map(double, range(7), chunksize=3)) == [0, 2, 4, 6, 8, 10, 12]


def test_a_cpu_bound_function_runs_in_another_process_an_io_bound_one_in_this_one() -> None:
    with smartpool.Executor() as executor:
        assert executor.submit(tasks.pid_cpu).result() != os.getpid()
        assert executor.submit(tasks.pid_io).result() == os.getpid()
        assert executor.explain(tasks.pid_cpu).backend == "process"
        assert executor.explain(tasks.pid_io).backend == "thread"


def test_an_unknown_function_is_learned_from_its_first_calls() -> None:
    def wait_a_little(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    with smartpool.Executor() as executor:
        assert executor.explain(wait_a_little).reasons[0].startswith("not measured yet")
        for _ in range(learning.LEARN_CALLS):
            assert executor.submit(wait_a_little, 0.01).result() == 0.01
        plan = executor.explain(wait_a_little)
    assert plan.reasons[0].startswith("probe: ")  # from the calls' own timings
    assert plan.backend == "thread"  # it waits: threads


def test_a_function_learned_as_cpu_bound_goes_to_processes() -> None:
    # The figures three calls would report: 50 ms each, all of it CPU.
    for _ in range(learning.LEARN_CALLS):
        learning.observe(tasks.pid, 0.05, 0.05)
    with smartpool.Executor() as executor:
        assert executor.explain(tasks.pid).backend == "process"
        assert executor.submit(tasks.pid).result() != os.getpid()


def test_the_logger_says_where_each_function_goes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="smartpool"), smartpool.Executor() as executor:
        executor.submit(tasks.pid_io).result()
    assert any("pid_io goes to thread" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("backend", PARALLEL)
def test_a_queued_future_can_be_cancelled(backend: str) -> None:
    release = threading.Event()
    with smartpool.Executor(1, backend="thread" if backend == "thread" else "process") as ex:
        busy = ex.submit(release.wait, 30) if backend == "thread" else ex.submit(time.sleep, 0.3)
        queued = ex.submit(pow, 2, 3)
        assert queued.cancel()
        release.set()
        assert busy.result() in (True, None)
    assert queued.cancelled()


def test_shutdown_cancel_futures_cancels_only_this_executors_queued_calls() -> None:
    started, release = threading.Event(), threading.Event()

    def block() -> bool:
        started.set()
        return release.wait(30)

    mine = smartpool.Executor(1, backend="thread")
    other = smartpool.Executor(1, backend="thread")  # the same warm pool of one thread
    busy = mine.submit(block)
    assert started.wait(30)
    queued = [mine.submit(pow, 2, n) for n in range(5)]
    theirs = other.submit(pow, 3, 2)
    mine.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        mine.submit(pow, 2, 2)
    release.set()
    assert busy.result() is True
    assert theirs.result() == 9  # another caller's call is untouched
    other.shutdown()
    mine.shutdown()  # again: nothing more happens


def test_shutdown_waits_for_this_executors_calls() -> None:
    with smartpool.Executor(backend="thread") as executor:
        futures = [executor.submit(time.sleep, 0.05) for _ in range(4)]
    assert all(f.done() and f.exception() is None for f in futures)


def test_map_without_reading_runs_every_call(tmp_path: os.PathLike[str]) -> None:
    paths = [os.path.join(tmp_path, f"{n}.txt") for n in range(20)]
    with smartpool.Executor(backend="thread") as executor:
        executor.map(write_file, paths)  # never read: still all written
    assert all(os.path.exists(p) for p in paths)


def write_file(path: str) -> None:
    with open(path, "w") as f:
        f.write("x")


def test_map_timeout_is_a_total_deadline() -> None:
    release = threading.Event()

    def wait_if(blocks: bool) -> bool:
        return release.wait(30) if blocks else False

    with smartpool.Executor(backend="thread") as executor:
        results = executor.map(wait_if, [False, False, True], timeout=0.2)
        began = time.monotonic()
        assert next(results) is False
        assert next(results) is False
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)
        assert time.monotonic() - began < 10
        release.set()


def test_map_buffersize_keeps_the_input_a_few_calls_ahead() -> None:
    taken: list[int] = []

    def numbers() -> Iterator[int]:
        for n in range(1000):
            taken.append(n)
            yield n

    with smartpool.Executor(backend="thread") as executor:
        results = executor.map(double, numbers(), buffersize=3)
        assert len(taken) == 3
        assert [next(results) for _ in range(4)] == [0, 2, 4, 6]
        assert len(taken) <= 3 + 4
        results.close()


def test_map_rejects_bad_arguments() -> None:
    with smartpool.Executor(backend="thread") as executor:
        with pytest.raises(ValueError, match="buffersize"):
            executor.map(double, [1], buffersize=0)
        with pytest.raises(ValueError, match="chunksize"):
            executor.map(double, [1], chunksize=0)


def test_a_crash_is_a_broken_process_pool_and_the_executor_stays_usable() -> None:
    with smartpool.Executor(backend="process") as executor:
        error = executor.submit(tasks.crash).exception(timeout=60)
        assert isinstance(error, BrokenProcessPool)
        assert isinstance(error, smartpool.WorkerCrashedError)
        assert executor.submit(pow, 2, 3).result(timeout=60) == 8


def test_a_timed_out_call_is_a_futures_timeout_error() -> None:
    release = threading.Event()
    with smartpool.Executor(backend="thread", timeout=0.1) as executor:
        error = executor.submit(release.wait, 30).exception()
        release.set()
    assert isinstance(error, smartpool.TaskTimeoutError)
    assert isinstance(error, concurrent.futures.TimeoutError)


def test_works_with_run_in_executor_wait_as_completed_and_wrap_future() -> None:
    with smartpool.Executor(backend="thread") as executor:

        async def main() -> list[int]:
            loop = asyncio.get_running_loop()
            first = await loop.run_in_executor(executor, double, 4)
            second = await asyncio.wrap_future(executor.submit(double, 5))
            return [first, second]

        assert asyncio.run(main()) == [8, 10]
        futures = [executor.submit(double, n) for n in range(4)]
        done, _ = concurrent.futures.wait(futures)
        assert done == set(futures)
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == [0, 2, 4, 6]


def test_a_coroutine_function_is_refused_with_what_to_do() -> None:
    async def fetch() -> None:
        return None

    with smartpool.Executor() as executor, pytest.raises(TypeError, match=r"coroutine.*Await it"):
        executor.submit(fetch)


def test_bad_constructor_arguments() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            smartpool.Executor(bad)
    with pytest.raises(ValueError, match="unknown backend"):
        smartpool.Executor(backend="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries"):
        smartpool.Executor(retries=-1)


def test_errors_come_back_as_themselves() -> None:
    with smartpool.Executor(backend="process") as executor:
        error = executor.submit(divmod, 1, 0).exception()
    assert isinstance(error, ZeroDivisionError)
    assert any("failed on the process backend" in note for note in error.__notes__)


@pytest.mark.parametrize("backend", PARALLEL)
def test_an_executor_outlives_smartpool_shutdown(backend: str) -> None:
    with smartpool.Executor(backend=backend) as executor:
        assert executor.submit(double, 1).result() == 2
        smartpool.shutdown()  # every pool stops; the executor takes new ones
        assert executor.submit(double, 2).result() == 4


def test_every_pool_is_let_go_of_after_shutdown_or_when_the_executor_is_dropped() -> None:
    from smartpool._backends import registry

    def held() -> int:
        return sum(p.holders for p in registry._pools.values())

    before = held()
    with smartpool.Executor(backend="thread") as executor:
        executor.submit(double, 1).result()
        assert held() == before + 1
    assert held() == before
    dropped = smartpool.Executor(backend="process")
    dropped.submit(double, 1).result()
    assert held() == before + 1
    del dropped
    gc.collect()
    assert held() == before


def test_closing_the_map_iterator_cancels_the_calls_not_started() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def record(n: int) -> int:
        if n == 0:
            started.set()
            release.wait(30)
        ran.append(n)
        return n

    with smartpool.Executor(1, backend="thread") as executor:
        results = executor.map(record, range(5))
        assert started.wait(30)
        results.close()  # before taking any result
        release.set()
    assert ran == [0]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_an_initializer_sets_up_each_of_the_executors_own_workers(backend: str) -> None:
    from . import lifecycle_tasks as life

    token = f"executor-{backend}"
    with smartpool.Executor(2, backend=backend, initializer=life.set_up, initargs=(token,)) as ex:
        seen = [ex.submit(life.report, n).result() for n in range(6)]
        seen += list(ex.map(life.report, range(6)))
    assert {(token, 1)} == {(found, inits) for _, _, found, inits, _ in seen}
    # Other calls never get the executor's workers: a plain call finds no token.
    plain = smartpool.parallel_map(life.report, range(4), backend=backend, max_workers=2)
    assert {found for _, _, found, _, _ in plain} == {None}


def test_a_failing_initializer_fails_the_executors_calls_with_a_typed_error() -> None:
    from . import lifecycle_tasks as life

    with smartpool.Executor(backend="thread", initializer=life.fail_setup) as executor:
        future = executor.submit(life.pid_of, 0)
        with pytest.raises(smartpool.InitializerError) as caught:
            future.result(timeout=60)
    assert isinstance(caught.value.__cause__, life.SetupFailed)
    with smartpool.Executor(backend="thread") as executor:  # the next executor is unaffected
        assert executor.submit(life.pid_of, 0).result(timeout=60) == os.getpid()


def test_bad_initializer_arguments_fail_at_construction() -> None:
    with pytest.raises(TypeError, match="initializer must be callable"):
        smartpool.Executor(initializer=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initargs= is given without an initializer="):
        smartpool.Executor(initargs=(1,))


def test_max_tasks_per_child_replaces_the_executors_worker_processes() -> None:
    from . import lifecycle_tasks as life

    with smartpool.Executor(1, backend="process", max_tasks_per_child=2) as executor:
        pids = [executor.submit(life.pid_of, n).result(timeout=60) for n in range(6)]
    assert os.getpid() not in pids
    assert [pids[0]] * 2 != pids[2:4] and len(set(pids)) == 3, pids  # a new process each 2 calls
