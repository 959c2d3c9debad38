"""A long first item does not leave the other cores idle while the probe decides: items after it
run on worker processes meanwhile, each once, their results in input order, and a run that
fails, is closed or gets Ctrl-C stops them as it stops any chunk in flight."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import smartpool
from smartpool._routing import gil
from smartpool._run import beside as run_beside

from . import beside_tasks as tasks
from . import subprocesses


@pytest.fixture(autouse=True)
def _two_cores_and_warm_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two usable cores, whatever the machine has, and worker processes already running (items
    are sent only to a warm pool: see ``Processes.ready``); every call probes afresh. No thread
    is started beside a first item: the GIL verdict is not under test here (on a machine loaded
    far beyond its cores, the sampler can take an item that holds the GIL for one that frees
    it, and a thread then runs the next item beside it instead: see test_gil_evidence.py)."""
    monkeypatch.setattr(run_beside, "cpu_count", lambda max_cpus=None: 2)
    monkeypatch.setattr(gil, "HELPER_AFTER", sys.maxsize)
    smartpool.parallel_map(abs, [1, 2], backend="process", max_workers=2)
    smartpool.forget()
    yield
    smartpool.forget()


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _gone(pid: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_an_item_starts_in_a_worker_process_while_the_first_one_runs_in_the_caller(
    tmp_path: Path,
) -> None:
    """Item 0 computes, holding the GIL, until an item has started in another process: without
    items sent beside the probe, it would wait for ever (TimeoutError)."""
    results = smartpool.parallel_map(tasks.run, tasks.items(tmp_path, {0: "wait"}, 6))
    assert [index for index, _ in results] == list(range(6))
    assert results[0][1] == os.getpid()  # the first item ran in the caller (the probe)
    assert any(pid != os.getpid() for _, pid in results[1:])


@pytest.mark.parametrize("ordered", [True, False])
def test_every_item_runs_once_and_results_keep_their_places(tmp_path: Path, ordered: bool) -> None:
    n = 12
    pairs = list(
        smartpool.imap(
            tasks.run, tasks.items(tmp_path, {0: "wait"}, n), ordered=ordered, with_index=True
        )
    )
    if ordered:
        assert [i for i, _ in pairs] == list(range(n))
    assert sorted(i for i, _ in pairs) == list(range(n))
    assert all(i == value[0] for i, value in pairs)
    ran = tasks.ran_in(tmp_path)  # each item claimed its file once: a second run would raise
    assert sorted(ran) == list(range(n))
    assert {pid for _, (_, pid) in pairs} == set(ran.values())
    assert len(set(ran.values())) >= 2


def test_the_run_says_items_ran_beside_the_probe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="smartpool"):
        smartpool.parallel_map(tasks.run, tasks.items(tmp_path, {0: "wait"}, 6))
    assert "sent to worker processes meanwhile" in caplog.text  # the probe's line
    assert "worker processes meanwhile: their results are kept" in caplog.text  # the plan's


def test_an_item_failing_on_a_worker_is_raised_in_its_place(tmp_path: Path) -> None:
    """Item 2 is the first sent to a worker: it fails there; items 0 and 1 (the caller's) come
    first, then its error, which names the item and the process backend."""
    results = smartpool.imap(tasks.run, tasks.items(tmp_path, {0: "wait", 2: "fail"}, 8))
    assert [next(results)[0], next(results)[0]] == [0, 1]
    with pytest.raises(ValueError, match="item 2 fails") as caught:
        next(results)
    notes = getattr(caught.value, "__notes__", [])
    assert any("item 2 failed on the process backend" in note for note in notes), notes


def test_an_item_failing_in_the_caller_stops_the_run_there(tmp_path: Path) -> None:
    """Item 1, the caller's second, fails after item 2 went to a worker: the results stop at
    item 1's error, as in input order (item 2's result is not handed out)."""
    results = smartpool.imap(tasks.run, tasks.items(tmp_path, {0: "wait", 1: "fail"}, 8))
    assert next(results)[0] == 0
    with pytest.raises(ValueError, match="item 1 fails") as caught:
        next(results)
    notes = getattr(caught.value, "__notes__", [])
    assert any("item 1 failed on the serial backend" in note for note in notes), notes
    assert 2 in tasks.ran_in(tmp_path)  # it did start elsewhere


def test_closing_the_results_kills_the_worker_running_a_sent_item(tmp_path: Path) -> None:
    """Item 2 went to a worker and blocks there; the caller's items come out, then the results
    are closed: the worker running item 2 is killed (replaced), not waited for."""
    results = smartpool.imap(tasks.run, tasks.items(tmp_path, {0: "wait", 2: "block"}, 8))
    assert [next(results)[0], next(results)[0]] == [0, 1]
    results.close()
    worker = tasks.ran_in(tmp_path)[2]
    assert worker != os.getpid()
    assert _gone(worker)
    assert smartpool.parallel_map(abs, [-1, -2], backend="process") == [1, 2]  # pool still works


def test_ctrl_c_in_the_first_item_kills_the_worker_running_a_sent_item(tmp_path: Path) -> None:
    """KeyboardInterrupt in the caller (the probe's first item), with item 2 running in a worker:
    it reaches the caller, and that worker does not survive it."""
    roles = {0: "interrupt", 2: "block"}
    with pytest.raises(KeyboardInterrupt):
        smartpool.parallel_map(tasks.run, tasks.items(tmp_path, roles, 8))
    worker = tasks.ran_in(tmp_path)[2]
    assert worker != os.getpid()
    assert _gone(worker)
    assert 1 not in tasks.ran_in(tmp_path)  # the caller stopped at its first item


def test_no_item_is_sent_when_no_worker_process_is_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a running pool, items are sent only if the fork server can be forked from the
    caller between its first two items, which takes a caller running no other thread (this
    test process runs many): a server started while threads run would be a fresh interpreter
    for good."""
    smartpool.shutdown()
    release = threading.Event()
    other = threading.Thread(target=release.wait)  # another thread runs in the caller
    other.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="smartpool"):
            results = smartpool.parallel_map(tasks.run, tasks.items(tmp_path, {}, 4))
    finally:
        release.set()
        other.join()
    assert [index for index, _ in results] == list(range(4))
    assert "probe: run on " in caplog.text
    assert "sent to worker processes" not in caplog.text


def test_a_one_time_cost_in_the_first_call_is_still_left_out() -> None:
    """The first call is long (a one-time cost), so items are sent beside it; the calls after
    it are cheap: sending stops, and the first call is still left out of the estimate."""
    tasks.reset_once()
    results = smartpool.parallel_map(tasks.once_then_cheap, range(300_000))
    assert results == list(range(1, 300_001))
    plan = smartpool.explain(tasks.once_then_cheap)  # from what the probe measured
    assert any("first call took" in reason for reason in plan.reasons), plan.reasons


_COLD_SCRIPT = """
import os, sys, tempfile
import smartpool
from smartpool._process import forkserver
from smartpool._routing import gil
from tests import beside_tasks as tasks

gil.HELPER_AFTER = sys.maxsize  # as in the fixture: the GIL verdict is not under test here
smartpool.configure(start_method="forkserver")

with tempfile.TemporaryDirectory() as short, tempfile.TemporaryDirectory() as cold:
    assert smartpool.parallel_map(tasks.run, tasks.items(short, {}, 2)) == [
        (0, os.getpid()), (1, os.getpid())]
    assert forkserver._server_instance is None, "two items: nothing to send beside the second"
    smartpool.forget()  # probed again
    # Item 0 is long and holds the GIL; item 1 computes until an item has started in another
    # process (a TimeoutError otherwise): items 2 and 3 are sent while it runs.
    results = smartpool.parallel_map(tasks.run, tasks.items(cold, {1: "wait"}, 4))
    assert [index for index, _ in results] == [0, 1, 2, 3], results
    assert results[1][1] == os.getpid()
    assert any(pid != os.getpid() for _, pid in results[2:]), results
    assert forkserver._server_instance is not None and forkserver._server_instance._popen is None
print("ok")
"""


def test_a_caller_with_no_worker_process_starts_them_after_a_long_first_item() -> None:
    """In a fresh process (no other thread runs, no worker process yet): after a long first item
    that held the GIL, the fork server is forked from the caller (not a fresh interpreter) and
    items after the second run on new worker processes while the caller times the second. A
    call with only one item after the first starts nothing."""
    done = subprocesses.run_python("-c", _COLD_SCRIPT, timeout=120, cwd=subprocesses.ROOT)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
