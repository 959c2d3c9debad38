"""The dask backend against real clusters: one LocalCluster of 2 worker processes shared by the
module (started by ``smartpool.using("local")``, closed after), and one scheduler and worker
started as separate processes with the ``dask`` command. No part of dask is mocked."""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import smartpool
from smartpool import _cluster
from smartpool import _cluster_sync as cluster_sync
from smartpool._backends import dask as dask_backend

from . import dask_tasks as tasks

DEADLINE = 60.0


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes (1 thread each), attached for the whole module.

    The tests count on both workers. Once in a whole run under 3.14, a worker's connection to
    the scheduler broke right after it registered and its nanny closed for good (dask's start,
    before any test ran): such a cluster is closed and started again, once."""
    for attempt in range(2):
        scope = smartpool.using("local", n_workers=2, threads_per_worker=1)
        dask_client = scope.__enter__()
        workers = len(dask_client.scheduler_info()["workers"])
        if workers == 2 or attempt == 1:
            break
        scope.__exit__(None, None, None)
    assert workers == 2, f"the LocalCluster started with {workers} worker(s), not 2"
    try:
        yield dask_client
    finally:
        scope.__exit__(None, None, None)


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait (polling, with a generous deadline) for something another process does."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- running work ----------------------------------------------------------------------------


def test_map_runs_on_the_cluster_in_input_order(client: Any) -> None:
    assert smartpool.parallel_map(tasks.slower_first, range(10), backend="dask", chunksize=1) == (
        list(range(10))
    )
    ran = smartpool.parallel_map(tasks.where, range(40), backend="dask", chunksize=1)
    assert [x for x, _ in ran] == list(range(40))
    assert os.getpid() not in {pid for _, pid in ran}
    plan = smartpool.explain(tasks.square, range(10), backend="dask")
    assert (plan.backend, plan.max_workers) == ("dask", 2)


def test_many_items_are_chunked_and_come_back_whole(client: Any) -> None:
    assert smartpool.parallel_map(tasks.square, range(20_000), backend="dask") == [
        x * x for x in range(20_000)
    ]
    unordered = smartpool.parallel_map(tasks.slower_first, range(10), backend="dask", ordered=False)
    assert sorted(unordered) == list(range(10))


def test_lambdas_and_closures_travel_by_value(client: Any) -> None:
    offset = 10
    assert smartpool.parallel_map(lambda x: x + offset, range(5), backend="dask") == [
        10,
        11,
        12,
        13,
        14,
    ]


def test_imap_streams_an_endless_input_with_a_bounded_window(client: Any) -> None:
    read = itertools.count()
    results = smartpool.imap(tasks.square, read, backend="dask", chunksize=1)
    assert [next(results) for _ in range(30)] == [x * x for x in range(30)]
    results.close()
    # 2 worker threads, 2 chunks in flight each, plus what the input was read ahead.
    assert next(read) < 30 + 50


def test_submit_runs_one_call_on_the_cluster(client: Any) -> None:
    with smartpool.config(backend="dask"):
        future = smartpool.submit(tasks.where, 7)
    x, pid = future.result(timeout=DEADLINE)
    assert x == 7
    assert pid != os.getpid()


def test_an_executor_runs_its_calls_on_the_cluster(client: Any) -> None:
    with smartpool.Executor(backend="dask") as executor:
        assert executor.explain(tasks.where).backend == "dask"
        x, pid = executor.submit(tasks.where, 7).result(timeout=DEADLINE)
        assert (x, pid in client.run(os.getpid).values() or pid != os.getpid()) == (7, True)
        assert list(executor.map(tasks.slower_first, range(10))) == list(range(10))
        assert list(executor.map(tasks.square, range(50), chunksize=7)) == [
            x * x for x in range(50)
        ]
        failing = executor.submit(tasks.fail_at_five, 5)
        with pytest.raises(ValueError, match="item 5 is bad") as caught:
            failing.result(timeout=DEADLINE)
        assert "on the dask backend" in " ".join(caught.value.__notes__)
    # Inside using(), an automatic executor sends CPU-bound functions to the cluster.
    with smartpool.Executor() as executor:
        plan = executor.explain(tasks.crunch)
        if len(os.sched_getaffinity(0)) > 1:
            assert plan.backend == "dask"
            _, pid = executor.submit(tasks.crunch_where, 1000).result(timeout=DEADLINE)
            assert pid != os.getpid()
        assert executor.submit(tasks.crunch, 10).result(timeout=DEADLINE) == 285


def test_an_executor_call_runs_once_started_and_cancelled_before_never_runs(
    client: Any, tmp_path: Path
) -> None:
    release = smartpool.Event()
    with smartpool.Executor(backend="dask") as executor:
        # Calls that wait to be released take both worker threads of the cluster (3 of them:
        # dask may give a worker of one thread 2 tasks, the second waiting behind the first).
        blockers = [executor.submit(tasks.wait_for, release, x) for x in range(3)]
        eventually(lambda: sum(b.running() for b in blockers) == 2, "two calls to start")
        queued = executor.submit(tasks.touch, str(tmp_path), "queued")
        assert not queued.running()
        assert queued.cancel()
        started = next(b for b in blockers if b.running())
        assert not started.cancel()  # running: past cancelling
        # dask's cancel travels on asynchronously: once the scheduler has dropped the task, a
        # worker freed by the blockers finds nothing of it to run.
        eventually(lambda: _scheduled(client) == 3, "the scheduler to drop the cancelled task")
        eventually(lambda: _held_by_workers(client) == 3, "the workers to drop it too")
        release.set()
        assert [b.result(timeout=DEADLINE) for b in blockers] == [0, 1, 2]
        assert list(executor.map(tasks.touch, [str(tmp_path)] * 4, ["after"] * 4)) == [True] * 4
    assert not (tmp_path / "queued").exists()  # its task was cancelled on the cluster


def test_configure_attaches_a_cluster_to_the_process(client: Any) -> None:
    def outside_any_scope() -> tuple[list[int], smartpool.Config]:
        return smartpool.parallel_map(abs, [-1, -2], backend="dask"), smartpool.current_config()

    smartpool.configure(cluster=client)
    try:
        values, config = contextvars.Context().run(outside_any_scope)
    finally:
        smartpool.configure(cluster=None)
    assert values == [1, 2]
    assert config.cluster is client
    assert config.sources["cluster"] == "configure()"
    assert smartpool.current_config().sources["cluster"] == "using()"


def test_automatic_cpu_work_goes_to_the_attached_cluster(client: Any) -> None:
    @smartpool.cpu_bound
    def crunch(n: int) -> int:
        return sum(i * i for i in range(n))

    plan = smartpool.explain(crunch)
    if len(os.sched_getaffinity(0)) > 1:
        assert plan.backend == "dask"
        assert "a Dask cluster is attached" in " ".join(plan.reasons)
    else:  # one usable core: a CPU-bound call runs serially, cluster or not
        assert plan.backend == "serial"
    assert smartpool.explain(tasks.square, range(3), backend="thread").backend == "thread"


def test_io_bound_work_fans_out_on_the_dask_workers_threads(client: Any) -> None:
    """Six items that each wait until all six run at once: more than the cluster's 2 threads,
    so they finish only if the tasks left the workers' thread pools; they ran in the dask
    workers' own processes, not in children."""
    arrived, everyone = smartpool.Value(0), smartpool.Event()
    items = [(arrived, everyone, 6, x) for x in range(6)]
    plan = smartpool.explain(tasks.meet, items, backend="dask")
    assert plan.backend == "dask-thread"
    assert "I/O-bound" in " ".join(plan.reasons)
    ran = smartpool.parallel_map(tasks.meet, items, backend="dask", chunksize=1)
    assert [x for x, _ in ran] == list(range(6))
    assert {pid for _, pid in ran} <= set(client.run(os.getpid).values())
    with smartpool.config(backend="auto"):  # inside using(): I/O-bound work goes there too
        assert smartpool.explain(tasks.meet, items).backend == "dask-thread"
        # ...unless a timeout asks for work that can be stopped: child processes.
        assert smartpool.explain(tasks.meet, items, timeout=5).backend == "dask"
        assert smartpool.explain(tasks.crunch, [1, 2]).backend in ("dask", "serial")


def test_unhinted_work_is_probed_on_a_worker_where_its_data_is(client: Any) -> None:
    """Items that need what only the workers have (here a module global set on them): the
    probe runs in a task on a worker, and so does the rest (waiting work: on its threads)."""
    client.run(tasks.install_data, "worker data")
    try:
        smartpool.forget(tasks.read_worker_data)
        items = range(12)
        plan = smartpool.explain(tasks.read_worker_data, items)
        assert plan.backend == "dask-thread", plan
        smartpool.forget(tasks.read_worker_data)
        ran = smartpool.parallel_map(tasks.read_worker_data, items)
        assert [x for x, _, _ in ran] == list(items)
        assert {data for _, data, _ in ran} == {"worker data"}
        assert {pid for _, _, pid in ran} <= set(client.run(os.getpid).values())
        with pytest.raises(KeyError, match="no data here"):  # the caller has none
            tasks.read_worker_data(0)
    finally:
        client.run(tasks.install_data, None)
        smartpool.forget(tasks.read_worker_data)


def test_an_item_failing_in_the_probe_on_a_worker_says_where(client: Any) -> None:
    smartpool.forget(tasks.fail_at_five)
    with pytest.raises(ValueError, match="item 5 is bad") as caught:  # the first item: probed
        smartpool.parallel_map(tasks.fail_at_five, [5, 1, 2, 3])
    notes = " ".join(caught.value.__notes__)
    assert "item 0 failed" in notes
    assert "the probe, in the first task on dask worker" in notes
    assert "fail_at_five" in [f.name for f in traceback.extract_tb(caught.value.__traceback__)]


def test_nested_calls_inside_a_task_run_inline(client: Any) -> None:
    assert smartpool.parallel_map(tasks.nested_backend, [3, 4], backend="dask") == [
        (5, "serial"),
        (14, "serial"),
    ]


def test_shared_memory_state_works_on_a_local_cluster(client: Any) -> None:
    counter = smartpool.Value(0)
    items = [(counter, x) for x in range(20)]
    assert smartpool.parallel_map(tasks.count_into, items, backend="dask", chunksize=1) == list(
        range(20)
    )
    assert counter.get() == 20


@pytest.fixture
def elsewhere(client: Any) -> Iterator[None]:
    """The cluster's workers report another machine (as workers on other hosts would): what
    they see of shared memory is real, only their identity is not."""
    client.run(cluster_sync.pretend_machine, "another host|another boot|0:0")
    cluster_sync.forget_machines()
    try:
        yield
    finally:
        client.run(cluster_sync.pretend_machine, None)
        cluster_sync.forget_machines()


def test_primitives_stay_in_shared_memory_while_the_workers_share_this_machine(
    client: Any,
) -> None:
    assert not cluster_sync.reaches_other_machines(client)
    assert type(smartpool.Lock()) is smartpool.Lock
    assert type(smartpool.Value(0)) is smartpool.Value


def test_across_machines_the_primitives_are_dask_ones_used_by_tasks(
    client: Any, elsewhere: None
) -> None:
    assert cluster_sync.reaches_other_machines(client)
    lock, rlock, event = smartpool.Lock(), smartpool.RLock(), smartpool.Event()
    gate, total = smartpool.BoundedSemaphore(2), smartpool.Value(0)
    for made, kind in ((lock, smartpool.Lock), (rlock, smartpool.RLock), (event, smartpool.Event)):
        assert isinstance(made, kind)
        assert type(made) is not kind  # not the shared-memory one
    assert isinstance(gate, smartpool.Semaphore)
    assert isinstance(total, smartpool.Value)
    items = [(lock, rlock, gate, total, x) for x in range(12)]
    ran = smartpool.parallel_map(tasks.add_under_locks, items, backend="dask", chunksize=1)
    assert [x for x, _ in ran] == list(range(12))
    assert {pid for _, pid in ran} <= set(client.run(os.getpid).values())  # on their threads
    assert total.get() == 12  # each task read and wrote it under the cluster-wide lock
    assert not lock.locked()
    assert gate.acquire(timeout=DEADLINE) and gate.acquire(timeout=DEADLINE)  # both leases back
    assert not gate.acquire(blocking=False)
    gate.release(2)
    with pytest.raises(ValueError):
        gate.release()
    assert smartpool.parallel_map(tasks.set_event, [event], backend="dask") == [True]
    assert event.is_set() and event.wait(0)  # set by a task, seen here
    assert total.add(5) == 17


def test_a_machine_local_primitive_sent_to_another_machine_is_refused(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smartpool")  # shown if an item ran after all
    counter = smartpool.Value(0)  # made while the workers share this machine: shared memory
    # Both workers pretend, including one its nanny is still restarting after an earlier test
    # killed it: one that joined after the pretence would run an item on the real machine (the
    # counter read 1 once, in a whole run in random order with two other programs spinning).
    client.wait_for_workers(2, timeout=DEADLINE)
    pretending = client.run(cluster_sync.pretend_machine, "another host|another boot|0:0")
    assert len(pretending) == 2
    cluster_sync.forget_machines()
    try:
        # On child processes, on the workers' threads (I/O), and in the probe on a worker.
        cases = [("dask", tasks.count_into), ("auto", tasks.count_into_io)]
        cases.append(("auto", tasks.count_into))  # unhinted: probed on a worker
        for backend_choice, fn in cases:
            smartpool.forget(fn)
            with pytest.raises(smartpool.SerializationError, match="made for the caller's machine"):
                smartpool.parallel_map(
                    fn, [(counter, x) for x in range(3)], backend=backend_choice, chunksize=1
                )
    finally:
        client.run(cluster_sync.pretend_machine, None)
        cluster_sync.forget_machines()
    assert counter.get() == 0, f"a task touched it:\n{caplog.text}"


def test_a_large_buffer_shared_by_many_items_is_scattered_once(client: Any) -> None:
    import numpy

    from smartpool._backends import registry
    from smartpool._work.task import Call

    data = numpy.arange(512 * 1024, dtype=numpy.float64)  # 4 MiB: pickled out of band
    expected = float(data[::4096].sum())
    with registry.lease("dask", 2) as backend:
        prepared = backend.prepare(Call(tasks.checksum, portable=tasks.checksum, stored_items=True))
        chunks = [backend.submit(prepared, [(data, x)], x) for x in range(6)]
        results = [chunk.result(timeout=DEADLINE) for chunk in chunks]
        assert len(prepared.shared) == 1  # one scatter for the six chunks
    assert [r.values for r in results] == [[(x, expected)] for x in range(6)]
    items = [(data, x) for x in range(6)]
    assert smartpool.parallel_map(tasks.checksum, items, backend="dask", chunksize=1) == [
        (x, expected) for x in range(6)
    ]


# -- failures ----------------------------------------------------------------------------------


def test_an_error_comes_back_as_itself_with_frames_and_item(client: Any) -> None:
    with pytest.raises(ValueError, match="item 5 is bad") as caught:
        smartpool.parallel_map(tasks.fail_at_five, range(10), backend="dask", chunksize=2)
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "fail_at_five" in frames
    notes = " ".join(getattr(caught.value, "__notes__", []))
    assert "item 5 failed on the dask backend" in notes
    assert f"dask worker {_cluster_protocol(client)}://127.0.0.1:" in notes


def test_an_unpicklable_error_arrives_as_remote_error(client: Any) -> None:
    with pytest.raises(smartpool.RemoteError) as caught:
        smartpool.parallel_map(tasks.raise_unpicklable, [1], backend="dask")
    assert "Unpicklable" in caught.value.type_name
    assert "raise_unpicklable" in caught.value.remote_traceback


def test_a_timeout_stops_the_sleeping_item(client: Any, tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(smartpool.TaskTimeoutError) as caught:
        smartpool.parallel_map(
            tasks.record_pid_then_sleep, [(str(tmp_path), 1)], backend="dask", timeout=1.0
        )
    assert time.monotonic() - began < 30  # the item sleeps 60 s
    assert caught.value.index == 0
    pid = int((tmp_path / "1.pid").read_text())
    eventually(lambda: not alive(pid), f"the child {pid} running the overrun item to die")


def test_a_stuck_worker_times_out_at_the_callers_deadline(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dask worker running a timed item is stopped (SIGSTOP), so its child is never killed
    and nothing reports: the caller's own deadline fails the item and cancels its task."""
    monkeypatch.setattr(dask_backend, "DEADLINE_GRACE_SECONDS", 1.0)
    pids = frozenset(client.run(os.getpid).values())
    before = _started_events(client)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            item = [(str(tmp_path), 1)]
            smartpool.parallel_map(tasks.record_pid_then_sleep, item, backend="dask", timeout=3.0)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=contextvars.copy_context().run, args=(call,), daemon=True)
    caller.start()  # in a copy of this context: inside the fixture's using() scope
    eventually(lambda: (tmp_path / "1.pid").exists(), "the timed item to start")
    eventually(lambda: _started_events(client) > before, "the task to report its start")
    child = int((tmp_path / "1.pid").read_text())
    worker = tasks.ancestor_in(child, pids)
    os.kill(worker, signal.SIGSTOP)
    try:
        caller.join(DEADLINE)
        assert not caller.is_alive(), "the caller still waits for the stopped worker"
    finally:
        os.kill(worker, signal.SIGCONT)
    [error] = outcome
    assert isinstance(error, smartpool.TaskTimeoutError), repr(error)
    assert error.index == 0
    assert "did not report back" in str(error)
    # Resumed, the worker finds its task cancelled and kills the child.
    eventually(lambda: not alive(child), f"the child {child} of the cancelled task to die")
    squares = smartpool.parallel_map(tasks.square, range(4), backend="dask", timeout=30)
    assert squares == [0, 1, 4, 9]


def test_a_task_that_kills_its_process_is_a_crash_and_the_cluster_lives_on(client: Any) -> None:
    workers_before = set(client.nthreads())
    with pytest.raises(smartpool.WorkerCrashedError) as caught:
        smartpool.parallel_map(tasks.exit_at_three, range(8), backend="dask", chunksize=1)
    error = caught.value
    assert error.index == 3
    assert error.exitcode == 7
    assert all(error.completed[i] == i for i in error.completed)
    assert {0, 1, 2} <= set(error.completed)
    # The dask workers were not touched: the item ran in a child of one of them.
    assert set(client.nthreads()) == workers_before
    assert smartpool.parallel_map(tasks.square, range(5), backend="dask") == [0, 1, 4, 9, 16]


def test_a_dask_worker_that_dies_is_a_crash_and_its_item_is_not_rerun(
    client: Any, tmp_path: Path
) -> None:
    pids = frozenset(client.run(os.getpid).values())
    items = [(pids, str(tmp_path), x) for x in range(6)]
    with pytest.raises(smartpool.WorkerCrashedError, match=r"dask worker that had item \d") as info:
        smartpool.parallel_map(
            tasks.kill_own_dask_worker_at_two, items, backend="dask", chunksize=1
        )
    # dask blames every task the dead worker had: item 2, or one queued there before it.
    assert info.value.index is not None
    assert info.value.index <= 2
    eventually(lambda: sum(map(alive, pids)) == 1, "one dask worker to be gone")
    client.wait_for_workers(2, timeout=DEADLINE)  # its nanny starts a new one
    assert (tmp_path / "attempts").read_text() == "."  # allowed-failures 0: never run again
    assert smartpool.parallel_map(tasks.square, range(5), backend="dask") == [0, 1, 4, 9, 16]


def test_retries_run_inside_the_task_per_item(client: Any, tmp_path: Path) -> None:
    items = [(str(tmp_path), x) for x in range(4)]
    assert smartpool.parallel_map(tasks.fail_twice, items, backend="dask", retries=2) == [
        0,
        1,
        2,
        3,
    ]
    assert all((tmp_path / f"{x}.attempts").read_text() == "..." for x in range(4))


def test_retries_keep_to_retry_on(client: Any, tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        smartpool.parallel_map(
            tasks.fail_with_key_error,
            [(str(tmp_path), 0)],
            backend="dask",
            retries=3,
            retry_on=ConnectionError,
        )
    assert (tmp_path / "0.attempts").read_text() == "."


def test_closing_imap_cancels_queued_tasks_and_stops_running_ones(
    client: Any, tmp_path: Path
) -> None:
    items = [(str(tmp_path), x) for x in range(8)]
    results = smartpool.imap(tasks.record_pid_then_sleep, items, backend="dask", chunksize=1)
    assert next(results) == 0
    eventually(lambda: any(tmp_path.glob("*.pid")), "an item to start sleeping")
    results.close()
    pids = [int(path.read_text()) for path in tmp_path.glob("*.pid")]
    for pid in pids:
        eventually(lambda pid=pid: not alive(pid), f"the child {pid} of a cancelled item to die")
    eventually(
        lambda: not any(client.processing().values()), "the cluster to drop the cancelled tasks"
    )
    assert len(list(tmp_path.glob("*.pid"))) <= 3  # queued items never started


# -- selecting a cluster -----------------------------------------------------------------------


def test_smartpool_never_imports_dask_until_a_cluster_is_attached() -> None:
    code = (
        "import sys, smartpool\n"
        "smartpool.parallel_map(abs, [-1, -2])\n"
        "smartpool.explain(abs, [1, 2], backend='process')\n"
        "assert not {'dask', 'distributed'} & set(sys.modules), 'dask was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=DEADLINE)


def test_without_dask_installed_using_says_which_extra_to_install() -> None:
    code = (
        "import sys, smartpool\n"
        "sys.modules['distributed'] = None  # as if it were not installed\n"
        "try:\n"
        "    smartpool.using('local').__enter__()\n"
        "except ImportError as error:\n"
        "    assert \"pip install 'smartpool[dask]'\" in str(error), error\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=DEADLINE)


def test_backend_dask_without_a_cluster_is_a_clear_error() -> None:
    def call() -> None:
        smartpool.parallel_map(abs, [1, 2], backend="dask")

    with pytest.raises(ValueError, match=r"needs a Dask cluster.*smartpool\.using.*configure"):
        contextvars.Context().run(call)  # a context where no using() scope is in force


def test_using_rejects_what_is_not_a_cluster() -> None:
    with pytest.raises(TypeError, match="Client, a Dask cluster, a scheduler address"):
        smartpool.using(42)
    with pytest.raises(ValueError, match="size only using"):
        smartpool.using("tls://127.0.0.1:8786", n_workers=2)
    with pytest.raises(TypeError, match="cluster must be"):
        smartpool.configure(cluster=3.5)


def test_local_cluster_listens_on_loopback_only_with_tls(client: Any) -> None:
    from distributed import default_client

    assert client.scheduler.address.startswith("tls://")
    with pytest.raises(ValueError):
        default_client()  # smartpool's client is not dask's global default
    pids = {os.getpid(), *client.run(os.getpid).values()}
    listening = _listening_addresses(pids)
    assert len(listening) >= 3  # the scheduler and the 2 workers at least
    assert all(host in ("127.0.0.1", "::1") for host, _ in listening), listening


def test_plain_tcp_to_another_machine_warns() -> None:
    with pytest.warns(RuntimeWarning, match="anyone who can reach that port can run code"):
        _cluster.warn_if_exposed("tcp://10.1.2.3:8786")
    with pytest.warns(RuntimeWarning, match="plain tcp"):
        _cluster.warn_if_exposed("scheduler.example.com:8786")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for safe in ("tcp://127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786"):
            _cluster.warn_if_exposed(safe)
        _cluster.warn_if_exposed("tls://10.1.2.3:8786")


def test_a_scheduler_and_a_worker_started_as_separate_processes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # tests/ not importable
    scheduler_file = tmp_path / "scheduler.json"
    started: list[subprocess.Popen[bytes]] = []

    def dask(*args: str) -> None:
        command = [str(Path(sys.executable).parent / "dask"), *args]
        command += ["--no-dashboard", "--host", "127.0.0.1"]
        started.append(
            subprocess.Popen(
                command,
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    try:
        dask("scheduler", "--port", "0", "--scheduler-file", str(scheduler_file))
        eventually(lambda: _address_in(scheduler_file) is not None, "the scheduler's address")
        dask("worker", "--scheduler-file", str(scheduler_file), "--nthreads", "2")
        address = _address_in(scheduler_file)
        assert address is not None
        assert address.startswith("tcp://127.0.0.1:")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # plain tcp on loopback: no warning
            with smartpool.using(address) as remote:
                remote.wait_for_workers(1, timeout=DEADLINE)
                assert smartpool.parallel_map(lambda x: x * 3, range(10), backend="dask") == [
                    3 * x for x in range(10)
                ]
                assert smartpool.explain(abs, [1], backend="dask").max_workers == 2
                # tests.dask_tasks is not importable there: said before any work.
                with pytest.raises(smartpool.SerializationError, match="module 'tests'"):
                    smartpool.parallel_map(tasks.square, range(3), backend="dask")
    finally:
        for process in reversed(started):
            os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(started):
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# -- helpers -----------------------------------------------------------------------------------


def _address_in(scheduler_file: Path) -> str | None:
    """The address the scheduler wrote to its file, once the file is whole."""
    try:
        return str(json.loads(scheduler_file.read_text())["address"])
    except (OSError, ValueError, KeyError):
        return None


def _scheduled(client: Any) -> int:
    """Tasks the scheduler still has to run or is running."""

    def count(dask_scheduler: Any) -> int:
        states = ("waiting", "queued", "no-worker", "processing")
        return sum(task.state in states for task in dask_scheduler.tasks.values())

    return int(client.run_on_scheduler(count))


def _held_by_workers(client: Any) -> int:
    """Tasks the dask workers hold to run or are running."""

    def count(dask_worker: Any) -> int:
        states = ("waiting", "ready", "constrained", "executing", "long-running")
        return sum(task.state in states for task in dask_worker.state.tasks.values())

    return sum(int(n) for n in client.run(count).values())


def _started_events(client: Any) -> int:
    """How many timed tasks reported their start to the scheduler so far."""
    events: dict[str, Any] = client.get_events()
    return sum(len(log) for topic, log in events.items() if topic.startswith("smartpool-started"))


def _cluster_protocol(client: Any) -> str:
    return str(client.scheduler.address).split("://")[0]


def _listening_addresses(pids: set[int]) -> list[tuple[str, int]]:
    """(host, port) of every listening TCP socket of ``pids`` and their children, read from
    /proc/net/tcp and tcp6 (state 0A is LISTEN)."""
    inodes: set[str] = set()
    for pid in _with_descendants(pids):
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else ():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:
                found.append(_decode(local))
    return found


def _with_descendants(pids: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parent = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _decode(local: str) -> tuple[str, int]:
    """'0100007F:1F90' -> ('127.0.0.1', 8080); the IPv6 form likewise (little-endian words)."""
    address, port = local.split(":")
    raw = bytes.fromhex(address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return ".".join(str(b) for b in words), int(port, 16)
    import ipaddress

    return str(ipaddress.IPv6Address(words)), int(port, 16)
