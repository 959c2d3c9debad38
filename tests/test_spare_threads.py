"""The probe's kept threads: reused from sample to sample, bounded, errors surfaced, and no
obstacle to forking the fork server while they wait."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from smartpool._routing import gil as _gil
from smartpool._work.spare_threads import MAX_WAITING, spare


def _probe_threads() -> int:
    return sum(t.name == "smartpool-probe" for t in threading.enumerate())


def _eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (threads settle asynchronously)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _all_waiting() -> bool:
    return spare.waiting() == _probe_threads()


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def test_samples_reuse_the_same_threads() -> None:
    _gil.sample_in_pairs(_spin, [2_000] * 4, 0)
    assert _eventually(_all_waiting)
    before = {t.native_id for t in threading.enumerate() if t.name == "smartpool-probe"}
    assert len(before) >= 2  # the sampler and the helper
    for _ in range(5):
        result, held = _gil.sample_in_pairs(_spin, [2_000] * 4, 0)
        assert result.values == [_spin(2_000)] * 4
        assert 0.0 <= held.held <= 1.0
    assert _eventually(_all_waiting)
    after = {t.native_id for t in threading.enumerate() if t.name == "smartpool-probe"}
    assert after == before


def test_a_side_job_error_is_raised_by_join() -> None:
    def broken() -> None:
        raise ValueError("bug in a side job")

    job = spare.start(broken)
    with pytest.raises(ValueError, match="bug in a side job"):
        job.join(timeout=10)
    assert spare.start(lambda: None).join(timeout=10)  # the thread is still of use


def test_join_times_out_while_the_job_runs() -> None:
    release = threading.Event()
    job = spare.start(release.wait)
    assert job.join(timeout=0.01) is False
    release.set()
    assert job.join(timeout=10) is True


def test_no_more_than_max_waiting_threads_are_kept() -> None:
    release = threading.Event()
    started = threading.Barrier(MAX_WAITING + 3)

    def hold() -> None:
        started.wait(timeout=10)
        release.wait(timeout=10)

    jobs = [spare.start(hold) for _ in range(MAX_WAITING + 2)]
    started.wait(timeout=10)  # every job runs at once, each on its own thread
    assert _probe_threads() >= MAX_WAITING + 2
    release.set()
    for job in jobs:
        assert job.join(timeout=10)
    assert _eventually(lambda: _probe_threads() <= MAX_WAITING)
    assert _eventually(_all_waiting)


def test_an_interrupted_sample_stops_its_sampler() -> None:
    """Ctrl-C during a GIL sample reaches the caller; the sampler stops napping and its thread
    waits for work again instead of napping for ever in the background."""

    def interrupt(_: object) -> object:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _gil.sample(interrupt, [1], 0, beside=lambda: None)
    assert _eventually(_all_waiting)


_FORK_SERVER_AFTER_A_SAMPLE = """
from smartpool import parallel_map
from smartpool._routing import gil as _gil
from smartpool._process import forkserver
from smartpool._work.spare_threads import spare

def spin(n):
    return sum(range(n))

_gil.sample_in_pairs(spin, [2_000] * 4, 0)
assert spare.waiting() >= 2, spare.waiting()
assert not forkserver.single_threaded(), "waiting probe threads are threads"
with spare.quiet() as waiting:
    assert forkserver.single_threaded(waiting), "waiting probe threads are harmless"
assert parallel_map(spin, [10, 20], backend="process") == [45, 190]
assert forkserver._server_instance is not None and forkserver._server_instance._popen is None, (
    "the fork server was started with exec, not forked"
)
print("ok")
"""

_FORKED_CHILD_STARTS_ITS_OWN = """
import os
from smartpool._routing import gil as _gil
from smartpool._work.spare_threads import spare

_gil.sample_in_pairs(sum, [[1, 2]] * 4, 0)
assert spare.waiting() >= 2
pid = os.fork()
if pid == 0:
    ok = spare.waiting() == 0 and spare.start(lambda: None).join(timeout=10)
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("ok")
"""


@pytest.mark.parametrize(
    ("script", "warnings"),
    [
        # smartpool forks its server only when that is safe, and then silences the warning
        (_FORK_SERVER_AFTER_A_SAMPLE, "error::DeprecationWarning"),
        # a plain os.fork() with threads running warns on Python 3.12+
        (_FORKED_CHILD_STARTS_ITS_OWN, "ignore::DeprecationWarning"),
    ],
    ids=["fork-server-forked", "fork-child-forgets"],
)
def test_forking_with_threads_waiting(script: str, warnings: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", warnings, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
