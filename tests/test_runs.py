"""One call, one run: pools are leased under it, it can be cancelled from any thread, and
leaving it early stops its work."""

from __future__ import annotations

import json
import logging
import queue
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest

import smartpool
from smartpool import _api
from smartpool._backends import registry
from smartpool._options import Options
from smartpool._routing import planner
from smartpool._routing.measurement import Measurement
from smartpool._routing.memory import remember

from . import custom_backend
from .helpers import double, first_then_wait, nested_sum, signal_then_wait
from .subprocesses import ROOT, run_python


@pytest.mark.timeout(120)
def test_a_pool_in_use_is_never_shut_down_by_other_calls(parallel_backend: str) -> None:
    """Calls of many pool sizes while a stream runs: more pools than are kept idle, and the
    stream's own pool is never taken from under it (it was, as the least recently used)."""
    results = []
    stream = smartpool.imap(
        double, range(120), backend=parallel_backend, max_workers=2, chunksize=1
    )
    for i, value in enumerate(stream):
        results.append(value)
        if i % 8 == 0:
            n = 1 + (i // 8) % 8
            assert smartpool.parallel_map(
                double, range(n), backend=parallel_backend, max_workers=n
            ) == [2 * x for x in range(n)]
    assert results == [2 * x for x in range(120)]


@pytest.mark.timeout(120)
def test_the_default_auto_stream_survives_calls_that_size_their_own_pools() -> None:
    """The issue's repro, as a user wrote it: all defaults, thread pools sized by item count."""

    def fetch(x: int) -> int:
        threading.Event().wait(0.002)
        return x * 2

    def sub(x: int) -> int:
        threading.Event().wait(0.002)
        return x + 1

    out = []
    for i, r in enumerate(smartpool.imap(fetch, (x for x in range(400)))):
        out.append(r)
        if i % 25 == 0:
            n = 3 + (i // 25) % 8
            assert smartpool.parallel_map(sub, range(n)) == [x + 1 for x in range(n)]
    assert out == [2 * x for x in range(400)]


@pytest.mark.timeout(120)
def test_sixteen_threads_calling_with_different_pool_sizes_all_succeed() -> None:
    start = threading.Barrier(16)
    errors: list[str] = []

    def caller(n: int) -> None:
        try:
            start.wait(30)
            for _ in range(3):
                expected = [2 * x for x in range(n)]
                assert (
                    smartpool.parallel_map(double, range(n), backend="thread", max_workers=n)
                    == expected
                )
                got = smartpool.parallel_map(
                    double, range(n), backend="process", max_workers=1 + n % 5
                )
                assert got == expected
        except BaseException as exc:
            errors.append(f"{n}: {exc!r}")

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(2, 18)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)
    assert not [t for t in threads if t.is_alive()], "a caller hung"
    assert errors == []


def _runs_logged(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.timeout(120)
def test_a_pending_submit_can_be_cancelled_and_never_runs(
    parallel_backend: str, tmp_path: Path
) -> None:
    started, gate, log = smartpool.Event(), smartpool.Event(), tmp_path / "runs"
    hint = smartpool.io_bound if parallel_backend == "thread" else smartpool.cpu_bound
    task = hint(backend=parallel_backend, max_workers=1)(signal_then_wait)

    first = task.submit((started, gate, str(log)))
    assert started.wait(30), "the first call never started"
    second = task.submit((started, gate, str(log)))
    assert first.running()
    assert not second.running() and not second.done()  # queued behind the only worker
    assert second.cancel()
    assert second.cancelled()
    gate.set()
    assert first.result(30) == "set"
    assert task.submit((started, gate, str(log))).result(30) == "set"
    assert _runs_logged(log) == 2  # the first and the third: the cancelled call never ran
    with pytest.raises(CancelledError):
        second.result(0)


def test_a_running_submit_cannot_be_cancelled(parallel_backend: str, tmp_path: Path) -> None:
    started, gate = smartpool.Event(), smartpool.Event()
    hint = smartpool.io_bound if parallel_backend == "thread" else smartpool.cpu_bound
    task = hint(backend=parallel_backend, max_workers=1)(signal_then_wait)
    future = task.submit((started, gate, str(tmp_path / "runs")))
    assert started.wait(30)
    assert not future.cancel()  # as with concurrent.futures: a running call is not interrupted
    gate.set()
    assert future.result(30) == "set"


def _finishes_within(seconds: float, fn: Any) -> bool:
    """Whether ``fn()`` returns within ``seconds`` (it runs on a daemon thread)."""
    done = threading.Event()

    def target() -> None:
        fn()
        done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(seconds)


@pytest.mark.timeout(120)
def test_a_running_map_is_cancelled_from_another_thread(parallel_backend: str) -> None:
    """The caller's wait ends in CancelledError, and the items still running stop holding the
    pool: the next call on the same pool finishes at once (they would wait 60 s)."""
    gate = smartpool.Event()
    items = [(i, gate) for i in range(6)]
    options = {"backend": parallel_backend, "max_workers": 2, "chunksize": 1}
    run, _ = _api.start(first_then_wait, items, options)
    got_first, outcome = threading.Event(), []

    def consume() -> None:
        try:
            for values in run.results():
                outcome.extend(values)
                got_first.set()
        except CancelledError:
            outcome.append("cancelled")

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        assert got_first.wait(30)
        run.cancel()
        consumer.join(30)
        assert not consumer.is_alive()
        assert outcome == [0, "cancelled"]
        again = [(0, gate), (0, gate)]
        assert _finishes_within(
            30, lambda: smartpool.parallel_map(first_then_wait, again, **options)
        )
    finally:
        gate.set()  # abandoned threads (threads cannot be killed) finish now


@pytest.mark.timeout(60)
def test_cancel_from_another_thread_wakes_a_waiting_next(parallel_backend: str) -> None:
    gate = smartpool.Event()
    results = smartpool.imap(
        first_then_wait,
        [(i, gate) for i in range(4)],
        backend=parallel_backend,
        max_workers=2,
        chunksize=1,
    )
    try:
        assert next(results) == 0
        timer = threading.Timer(0.05, results.cancel)
        timer.start()
        with pytest.raises(CancelledError):
            next(results)  # waits for item 1 until the cancel
        with pytest.raises(CancelledError):
            next(results)
        timer.join()
    finally:
        gate.set()


def test_a_run_cancelled_before_it_starts_runs_nothing(tmp_path: Path) -> None:
    results = smartpool.imap(double, range(10), backend="thread")
    results.cancel()
    with pytest.raises(CancelledError):
        next(results)


def test_every_lease_is_released_when_calls_end(backend: str) -> None:
    smartpool.parallel_map(double, range(20), backend=backend, max_workers=2)
    stream = smartpool.imap(double, range(1000), backend=backend, max_workers=2, chunksize=1)
    next(stream)
    assert sum(p.holders for p in registry._pools.values()) == 1  # the stream's
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert all(p.holders == 0 for p in registry._pools.values())
    with pytest.raises(ZeroDivisionError):
        smartpool.parallel_map(lambda x: 1 // 0 if x == 3 else x, range(8), backend=backend)
    assert all(p.holders == 0 for p in registry._pools.values())


EARLY_EXIT_SCRIPT = textwrap.dedent(
    """
    import json, os, time
    import smartpool
    from tests.census import census
    from tests.helpers import double, first_then_wait

    def snapshot():
        smartpool.shutdown()  # what is left after it is a leak: orphans, fds, files, threads
        # Large-buffer files of this process (other processes' files come and go meanwhile).
        shm = sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"smartpool-{os.getpid()}-"))
        return [*census(), shm]

    gate = smartpool.Event()  # never set: every item but the first waits 60 s unless stopped
    items = [(i, gate) for i in range(6)]

    def leave(rep):
        results = smartpool.imap(
            first_then_wait, items, backend="process", max_workers=2, chunksize=1
        )
        how = rep % 4
        if how == 0:
            assert next(results) == 0
            results.close()
        elif how == 1:
            for value in results:
                break
        elif how == 2:
            try:
                for value in results:
                    raise KeyError(value)
            except KeyError:
                pass
        else:
            assert next(results) == 0
            del results

    leave(0)
    before = snapshot()
    slowest = 0.0
    for rep in range(200):
        leave(rep)
        began = time.perf_counter()
        got = smartpool.parallel_map(double, range(4), backend="process", max_workers=2)
        assert got == [0, 2, 4, 6]
        slowest = max(slowest, time.perf_counter() - began)
    print(json.dumps({"before": before, "after": snapshot(), "slowest": slowest}), flush=True)
    """
)


@pytest.mark.timeout(180)
def test_leaving_a_process_imap_early_stops_its_work_and_leaks_nothing() -> None:
    """200 early exits by every means: each next call finds both workers free (the abandoned
    items would hold them 60 s), and children, threads, fds and /dev/shm stay flat."""
    done = run_python("-c", EARLY_EXIT_SCRIPT, timeout=170, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["after"] == report["before"]
    assert report["slowest"] < 30  # far below the 60 s an abandoned item would hold a worker


def test_an_imap_dropped_before_its_first_result_releases_its_pool(parallel_backend: str) -> None:
    results = smartpool.imap(double, range(10), backend=parallel_backend, max_workers=3)
    assert sum(p.holders for p in registry._pools.values()) == 1
    results.close()
    assert sum(p.holders for p in registry._pools.values()) == 0
    results = smartpool.imap(double, range(10), backend=parallel_backend, max_workers=3)
    del results
    assert sum(p.holders for p in registry._pools.values()) == 0


def _two_then_fail() -> Iterator[int]:
    yield 1
    yield 2
    raise LookupError("the input broke")


@pytest.mark.parametrize("chunksize", [1, None])
def test_results_of_items_read_before_the_input_raised_are_delivered(
    backend: str, chunksize: int | None
) -> None:
    """As builtin ``map``: every result before the error, then the input's own exception."""
    got: list[int] = []
    with pytest.raises(LookupError, match="the input broke") as caught:
        for value in smartpool.imap(double, _two_then_fail(), backend=backend, chunksize=chunksize):
            got.append(value)
    assert got == [2, 4]
    assert "smartpool: raised by the input after 2 items" in caught.value.__notes__
    with pytest.raises(LookupError):
        smartpool.parallel_map(double, _two_then_fail(), backend=backend)


def test_auto_delivers_the_probes_results_before_the_inputs_error() -> None:
    got: list[int] = []
    with pytest.raises(LookupError):
        for value in smartpool.imap(double, _two_then_fail()):
            got.append(value)
    assert got == [2, 4]


def _crawl(page: int) -> list[int]:
    """A page of a binary tree of 31 pages links to its two children."""
    return [2 * page + 1, 2 * page + 2] if page < 15 else []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["auto", "serial", "thread", "process"])
def test_a_crawler_whose_results_feed_its_input_gets_every_page(backend: str) -> None:
    """The input waits for pages the results link to: results must come while it waits."""
    found: queue.Queue[int | None] = queue.Queue()
    found.put(0)

    def pages() -> Iterator[int]:
        while (page := found.get(timeout=30)) is not None:
            yield page

    crawled, outstanding = 0, 1
    for links in smartpool.imap(_crawl, pages(), backend=backend):  # type: ignore[arg-type]
        crawled, outstanding = crawled + 1, outstanding - 1 + len(links)
        for link in links:
            found.put(link)
        if not outstanding:
            found.put(None)
    assert crawled == 31


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["auto", "thread", "process"])
def test_results_arrive_while_the_input_waits(backend: str) -> None:
    """An input that blocks on its 5th item until the first 4 results are in."""
    four_in = threading.Event()

    def items() -> Iterator[int]:
        yield from range(4)
        assert four_in.wait(30), "the first four results never came while the input waited"
        yield from range(4, 8)

    got = []
    for value in smartpool.imap(double, items(), backend=backend):  # type: ignore[arg-type]
        got.append(value)
        if len(got) == 4:
            four_in.set()
    assert got == [2 * x for x in range(8)]


@pytest.mark.timeout(60)
def test_nested_calls_on_the_same_full_thread_pool_never_deadlock() -> None:
    """Every pool thread waits in an inner call on the same pool: stand-ins run the inner items,
    on the first call and on every call after it (the second one used to hang)."""
    for _ in range(3):
        got = smartpool.parallel_map(nested_sum, range(8), backend="thread", max_workers=2)
        assert got == [sum(range(n)) * 2 for n in range(8)]


@pytest.mark.timeout(60)
def test_cancel_reaches_a_caller_waiting_for_input() -> None:
    """The input waits for good after its first item: cancel() ends the wait all the same."""
    never = threading.Event()

    def stalled() -> Iterator[int]:
        yield 1
        never.wait(60)

    results = smartpool.imap(double, stalled(), backend="thread")
    assert next(results) == 2
    threading.Timer(0.05, results.cancel).start()
    try:
        with pytest.raises(CancelledError):
            next(results)
    finally:
        never.set()


def test_a_cancelled_parallel_map_never_returns_part_of_its_results() -> None:
    never = threading.Event()

    def stalled() -> Iterator[int]:
        yield 1
        never.wait(60)

    run, ordered = _api.start(double, stalled(), {"backend": "thread"})
    threading.Timer(0.05, run.cancel).start()
    try:
        with pytest.raises(CancelledError):
            _api._collect(run.results(), ordered)
    finally:
        never.set()


def _unpicklable_cpu_work(decorated: bool = False) -> Any:
    lock = threading.Lock()

    def work(x: int) -> int:
        with lock:  # a lock in its closure: it cannot go to a process
            return x

    work = smartpool.auto(work) if decorated else work  # type: ignore[assignment]
    # As if probed: pure-Python CPU work holding the GIL, where processes would be fastest.
    remember(
        work,
        Measurement(
            call_seconds=0.01,
            cpu_fraction=1.0,
            releases_gil=False,
            picklable=False,
            transfer_seconds=0.0,
            samples=4,
            gil_held=1.0,
        ),
    )
    return work


@pytest.mark.parametrize("entry", ["parallel_map", "imap", "map"])
def test_the_fallback_warning_points_at_the_callers_line(entry: str) -> None:
    work = _unpicklable_cpu_work(decorated=entry == "map")
    with pytest.warns(RuntimeWarning, match="cannot be pickled") as record:
        if entry == "parallel_map":
            got = smartpool.parallel_map(work, range(40))
        elif entry == "imap":
            got = list(smartpool.imap(work, range(40)))
        else:
            got = work.map(range(40))
    assert got == list(range(40))
    assert {w.filename for w in record} == {__file__}


def test_each_call_logs_what_it_did_in_one_readable_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="smartpool"):
        smartpool.parallel_map(double, range(30), backend="thread", max_workers=2)
        results = smartpool.imap(double, range(100), backend="thread", max_workers=2, chunksize=1)
        next(results)
        results.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "smartpool"]
    assert any(
        m.startswith("double finished: 30 items read in ") and m.endswith(", not re-planned")
        for m in lines
    ), lines
    assert any(m.startswith("double left early: ") for m in lines), lines
    assert not any("Measurement(" in m for m in lines)


def test_the_probe_logs_its_measurement_in_words(caplog: pytest.LogCaptureFixture) -> None:
    def triple(x: int) -> int:
        return 3 * x

    with caplog.at_level(logging.DEBUG, logger="smartpool"):
        assert smartpool.parallel_map(triple, range(50_000)) == [3 * x for x in range(50_000)]
    lines = [r.getMessage() for r in caplog.records if r.name == "smartpool"]
    probe = next(m for m in lines if m.startswith("probe: "))
    assert " ms a call, " in probe and "% CPU, " in probe
    assert "its items and results pickle" in probe and "None" not in probe, probe
    assert any(m.startswith("plan for ") and "triple: " in m for m in lines), lines
    assert any(".triple finished: 50000 items read in " in m for m in lines), lines


def test_explain_without_items_says_the_call_will_measure_first() -> None:
    def unseen(x: int) -> int:
        return x

    plan = smartpool.explain(unseen)
    assert plan.reasons[0].startswith("not measured yet: parallel_map and imap will first time")
    # ...and what it tends to decide, from the planner itself (its rules: test_routing_rules)
    typical = planner.typical_plans(Options(), None)
    assert typical.startswith("for 10000 (assumed) items of common kinds it would decide: ")
    assert typical in plan.reasons[0]
    reasons = smartpool.explain(unseen, backend="thread").reasons
    assert reasons[0] == "backend='thread' was requested"
    assert not any("not measured" in reason for reason in reasons)


@pytest.fixture
def head_held() -> Iterator[type[custom_backend.HeadHeldBackend]]:
    registry.register(
        "head-held", "tests.custom_backend:HeadHeldBackend", registry.traits("thread")
    )
    try:
        yield custom_backend.HeadHeldBackend
    finally:
        registry.unregister("head-held")
        custom_backend.HeadHeldBackend.join()


@pytest.mark.timeout(120)
def test_a_long_chunk_at_the_head_of_the_order_does_not_idle_the_other_workers(
    head_held: type[custom_backend.HeadHeldBackend],
) -> None:
    # Item 0's chunk runs long; the other worker finishes the chunks after it. A run that kept
    # its window full of those done chunks, waiting to hand out item 0 first, would submit
    # nothing more (3 others with 2 workers), and the chunk would start only at the deadline.
    head_held.reset(enough=8, deadline=30.0)
    got = smartpool.parallel_map(double, range(40), backend="head-held", max_workers=2, chunksize=1)  # type: ignore[arg-type]
    assert got == [2 * x for x in range(40)]
    assert head_held.released_by_progress, f"only {head_held.others} chunks were submitted"


@pytest.mark.timeout(120)
def test_results_held_back_for_order_are_bounded(
    head_held: type[custom_backend.HeadHeldBackend],
) -> None:
    # Item 0's chunk never ends by progress here: the run goes on submitting only as far as
    # its bound on done chunks held back (4 windows of 2 x 2 chunks, item 0's included).
    head_held.reset(enough=None, deadline=2.0)
    results = smartpool.imap(
        double,
        iter(range(200)),
        backend="head-held",  # type: ignore[arg-type]
        max_workers=2,
        chunksize=1,
    )
    assert list(results) == [2 * x for x in range(200)]
    assert head_held.others_at_release <= 4 * 2 * 2 - 1


def test_done_results_are_handed_out_before_more_than_a_window_is_submitted() -> None:
    # Every chunk is done as soon as it is submitted: the run hands each out before it submits
    # past its window (2 x 2 chunks), rather than holding done chunks it could deliver.
    target = "tests.custom_backend:DoneAtOnceBackend"
    registry.register("done-at-once", target, registry.traits("thread"))
    custom_backend.DoneAtOnceBackend.submitted = 0
    try:
        results = smartpool.imap(
            double, range(1000), backend="done-at-once", max_workers=2, chunksize=1
        )  # type: ignore[arg-type]
        assert next(results) == 0
        assert custom_backend.DoneAtOnceBackend.submitted <= 2 * 2
        assert list(results) == [2 * x for x in range(1, 1000)]
    finally:
        registry.unregister("done-at-once")
