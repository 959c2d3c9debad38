"""Out of descriptors or threads: the call raises a ResourceLimitError that says what to do, and
the next call works once the limit is raised again.

The open-files case lowers ``RLIMIT_NOFILE`` in a fresh interpreter, just above what it holds,
so the pool runs out partway through starting its workers. Threads that cannot start are
simulated (``Thread.start`` raising as it does when ``pthread_create`` fails): a real
``RLIMIT_NPROC`` does not bind root, and other processes of the same user would make it flaky.
"""

from __future__ import annotations

import errno
import json
import pickle
import textwrap
import threading
from collections.abc import Iterator

import pytest

import smartpool

from .subprocesses import run_python

OPEN_FILES_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    import smartpool

    smartpool.configure(start_method=sys.argv[1])

    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_fds()
    resource.setrlimit(resource.RLIMIT_NOFILE, (before + 8, hard))
    report = {}
    try:
        smartpool.parallel_map(abs, range(64), backend="process", max_workers=8, chunksize=1)
    except smartpool.ResourceLimitError as error:
        report.update(
            message=str(error), errno=error.errno, resource=error.resource, limit=error.limit,
            is_oserror=isinstance(error, OSError), expected_limit=before + 8,
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    report["again"] = smartpool.parallel_map(abs, range(-20, 0), backend="process", max_workers=8)
    smartpool.shutdown()
    report["leaked_fds"] = open_fds() - before
    print(json.dumps(report))
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_too_few_open_files_for_the_workers_is_a_clear_error_and_the_next_call_works(
    method: str,
) -> None:
    done = run_python("-c", OPEN_FILES_SCRIPT, method, timeout=90)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errno"] == errno.EMFILE
    assert report["is_oserror"] and report["resource"] == "open files"
    assert report["limit"] == report["expected_limit"]
    message = report["message"]
    for words in ("too many open files", "RLIMIT_NOFILE", "ulimit -n", "smaller max_workers"):
        assert words in message, message
    assert report["again"] == list(range(20, 0, -1))
    assert report["leaked_fds"] == 0


@pytest.fixture
def no_new_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """smartpool's worker threads cannot start, as when the system refuses threads (EAGAIN)."""
    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name.startswith("smartpool-thread-"):
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    yield


@pytest.mark.timeout(60)
def test_threads_that_cannot_start_are_a_clear_error_and_the_next_call_works(
    no_new_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(smartpool.ResourceLimitError) as caught:
        smartpool.parallel_map(abs, range(50), backend="thread", max_workers=7, chunksize=1)
    error = caught.value
    assert isinstance(error, OSError) and error.errno == errno.EAGAIN
    assert error.resource == "processes or threads"
    for words in ("could not start a worker thread", "RLIMIT_NPROC", "ulimit -u", "max_workers"):
        assert words in str(error), str(error)
    monkeypatch.undo()  # threads can start again
    assert smartpool.parallel_map(abs, range(-50, 0), backend="thread", max_workers=7) == list(
        range(50, 0, -1)
    )


def test_the_error_survives_pickling_with_its_attributes() -> None:
    error = smartpool.ResourceLimitError(
        "out of files", errno=errno.EMFILE, resource="open files", limit=64
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is smartpool.ResourceLimitError
    assert (copy.errno, copy.resource, copy.limit, str(copy)) == (
        24,
        "open files",
        64,
        "out of files",
    )


@pytest.mark.timeout(60)
def test_a_fork_server_out_of_descriptors_refuses_the_worker_and_keeps_serving() -> None:
    from smartpool._process import forkserver

    server = forkserver.server()
    # A spawn request whose socket did not arrive, as when the server has no descriptor left.
    refused = server.request(("spawn",), fds=[])
    assert refused == (errno.EMFILE, "Too many open files")
    assert not server.dead
    assert forkserver.server() is server
    assert smartpool.parallel_map(abs, range(-9, 0), backend="process", max_workers=2) == list(
        range(9, 0, -1)
    )


HELPER_THREAD_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    import smartpool

    name, call = sys.argv[1], sys.argv[2]
    start = threading.Thread.start

    def refuse(thread):
        if thread.name == name:
            raise RuntimeError("can't start new thread")
        start(thread)

    def spin(n):  # pure Python, ~1 ms: whether it holds the GIL decides the plan
        total = 0
        for i in range(n):
            total += i % 7
        return n

    def run():
        if call == "spare":  # the probe's timing threads, started as the GIL sampler does
            from smartpool._work.spare_threads import spare

            spare.start(lambda: None).join()
            return smartpool.parallel_map(abs, range(-9, 0), backend="serial")
        if call == "imap":
            return list(smartpool.imap(abs, (x for x in range(-9, 0)), backend="thread"))
        if call == "timeout":
            return smartpool.parallel_map(abs, range(-9, 0), backend="thread", timeout=60)
        return smartpool.parallel_map(spin, [9, 8, 7] + [20_000] * 200)

    threading.Thread.start = refuse
    try:
        run()
        report = {"raised": None}
    except Exception as error:
        report = {"raised": type(error).__name__, "message": str(error)}
    threading.Thread.start = start  # threads can start again
    report["again"] = run()[:3]
    print(json.dumps(report))
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("thread", "call", "what"),
    [
        ("smartpool-input", "imap", "the thread that reads the input iterator"),
        ("smartpool-thread-watchdog", "timeout", "a watchdog thread"),
        ("smartpool-probe", "spare", "a thread to time the function on"),
        ("smartpool-deadlines", "auto", "the thread that enforces timeouts"),
    ],
)
def test_helper_threads_that_cannot_start_are_a_clear_error(
    thread: str, call: str, what: str
) -> None:
    done = run_python("-c", HELPER_THREAD_SCRIPT, thread, call, timeout=90)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["raised"] == "ResourceLimitError", report
    assert f"could not start {what}" in report["message"] and "ulimit -u" in report["message"]
    assert report["again"] == [9, 8, 7]
