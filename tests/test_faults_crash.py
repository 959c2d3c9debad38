"""A worker that dies or overruns fails only its own items, fast, and the pool heals itself."""

from __future__ import annotations

import os
import select
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import smartpool
from smartpool._process import descriptors, launcher

from .fault_tasks import CRASHES, HOLDER_SECONDS, HOLDERS, ChildThenCrash, CrashOn, HangOn, attempts
from .helpers import double
from .subprocesses import run_python

EXIT_DESCRIPTIONS = {
    "exit": (3, "exited with code 3"),
    "sigkill": (-9, "killed by SIGKILL"),
    "segfault": (-11, "killed by SIGSEGV"),
}


@pytest.fixture(params=["forkserver", "fork"])
def start_method(request: pytest.FixtureRequest) -> Iterator[str]:
    smartpool.configure(start_method=request.param)
    try:
        yield str(request.param)
    finally:
        smartpool.configure(start_method="forkserver")


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", CRASHES)
def test_crash_names_item_and_exit_and_keeps_finished_results(how: str, start_method: str) -> None:
    began = time.monotonic()
    with pytest.raises(smartpool.WorkerCrashedError) as info:
        smartpool.parallel_map(
            CrashOn(5, how), range(20), backend="process", max_workers=2, chunksize=1
        )
    assert time.monotonic() - began < 10
    exitcode, description = EXIT_DESCRIPTIONS[how]
    error = info.value
    assert (error.index, error.exitcode) == (5, exitcode)
    assert "item 5" in str(error) and description in str(error)
    assert {i: 2 * i for i in range(5)}.items() <= error.completed.items()
    assert 5 not in error.completed
    # The pool replaced its dead worker: the next call works at full size.
    assert smartpool.parallel_map(double, range(8), backend="process", max_workers=2) == [
        2 * i for i in range(8)
    ]


def _sockets(pid: int) -> set[str]:
    links: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.add(os.readlink(fd))
        except FileNotFoundError:
            pass  # closed while we looked
    return {link for link in links if link.startswith("socket:")}


def test_a_forked_worker_holds_none_of_the_callers_sockets() -> None:
    """Or it would keep other workers' sockets open, and they would never see their end."""
    workers = [launcher.start_worker("fork") for _ in range(3)]
    try:
        ours = _sockets(os.getpid())
        for worker in workers:
            # A new worker closes what it inherited first thing; give it a generous deadline.
            deadline = time.monotonic() + 20
            while not (held := _sockets(worker.pid)).isdisjoint(ours):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)  # polling a condition under a deadline
            assert len(held) == 1 and held.isdisjoint(ours), (worker.pid, held, ours)
    finally:
        for worker in workers:
            worker.kill()
            worker.close()


class _ForkWhileReleasing(set[int]):
    """``owned_fds`` that, the first time a descriptor leaves it, has another thread fork a
    worker: the moment a concurrent "fork" start would copy a socket end being closed."""

    def __init__(self, fds: set[int]) -> None:
        super().__init__(fds)
        self.others: list[launcher.WorkerProcess] = []
        self.forked = threading.Event()
        self._armed = True

    def discard(self, fd: int) -> None:
        super().discard(fd)
        if self._armed:
            self._armed = False

            def start_other() -> None:
                self.others.append(launcher.start_worker("fork"))
                self.forked.set()

            threading.Thread(target=start_other).start()
            # Unsafe code lets the other fork happen now; safe code makes it wait for this close.
            self.forked.wait(timeout=1.0)


@pytest.mark.timeout(60)
def test_a_worker_forked_by_another_thread_does_not_hide_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooked = _ForkWhileReleasing(descriptors.owned_fds)
    monkeypatch.setattr(descriptors, "owned_fds", hooked)
    first = launcher.start_worker("fork")
    try:
        assert hooked.forked.wait(timeout=30), "the other worker did not start"
        os.kill(first.pid, signal.SIGKILL)
        # The caller sees the death as end-of-file, although the other worker still runs.
        assert select.select([first.conn], [], [], 20)[0], "the dead worker's socket stayed open"
        with pytest.raises((EOFError, ConnectionResetError)):  # reset: it died with unread data
            first.conn.recv_bytes()
        assert first.exitcode() == -signal.SIGKILL
    finally:
        for worker in (first, *hooked.others):
            worker.kill()
            worker.close()


@pytest.mark.timeout(60)
def test_imap_yields_results_before_the_crash(start_method: str) -> None:
    seen: list[int] = []
    results = smartpool.imap(
        CrashOn(4, "sigkill"), range(10), backend="process", max_workers=2, chunksize=1
    )
    with pytest.raises(smartpool.WorkerCrashedError, match="item 4"):
        for value in results:
            seen.append(value)
    assert seen == [0, 2, 4, 6]


def _kill_and_wait(pid: int) -> None:
    """SIGKILL ``pid`` (not our child) and wait until it is gone."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGKILL)
        assert select.select([pidfd], [], [], 20)[0], f"process {pid} outlived SIGKILL"
    finally:
        os.close(pidfd)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", HOLDERS)
def test_a_child_left_by_the_function_does_not_hide_the_crash(
    how: str, start_method: str, tmp_path: Path
) -> None:
    """A daemon or server the function started may hold a copy of the worker's socket: the
    worker's death still shows at once, not when that child exits."""
    began = time.monotonic()
    try:
        with pytest.raises(smartpool.WorkerCrashedError) as info:
            smartpool.parallel_map(
                ChildThenCrash(how, str(tmp_path)),
                range(2),
                backend="process",
                max_workers=1,
                chunksize=1,
            )
        seconds = time.monotonic() - began
        [child] = [int(path.name.split("-")[1]) for path in tmp_path.glob("child-*")]
        assert alive(child)  # so it could have hidden the crash
    finally:
        for path in tmp_path.glob("child-*"):
            _kill_and_wait(int(path.name.split("-")[1]))
    assert seconds < HOLDER_SECONDS / 3
    assert (info.value.index, info.value.exitcode) == (1, 3)
    assert info.value.completed == {0: 0}


@pytest.mark.timeout(60)
def test_crash_in_a_chunk_names_its_items() -> None:
    with pytest.raises(smartpool.WorkerCrashedError, match=r"items 4\.\.7") as info:
        smartpool.parallel_map(CrashOn(5, "exit"), range(8), backend="process", chunksize=4)
    assert info.value.index == 4
    assert info.value.completed == {i: 2 * i for i in range(4)}


@pytest.mark.timeout(60)
def test_process_timeout_kills_the_worker_and_the_pool_recovers(tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(smartpool.TaskTimeoutError) as info:
        smartpool.parallel_map(
            HangOn(3, str(tmp_path)), range(8), backend="process", max_workers=2, timeout=0.5
        )
    assert time.monotonic() - began < 10
    assert (info.value.index, info.value.timeout) == (3, 0.5)
    assert "item 3 did not finish within timeout=0.5 s" in str(info.value)
    assert {0: 0, 1: 1, 2: 2}.items() <= info.value.completed.items()
    [pid_file] = tmp_path.glob("pid-*")
    assert not alive(int(pid_file.name.split("-")[1]))
    assert smartpool.parallel_map(double, range(6), backend="process", max_workers=2) == [
        0,
        2,
        4,
        6,
        8,
        10,
    ]


@pytest.mark.timeout(60)
def test_process_timeout_is_enforced_on_a_warm_idle_worker() -> None:
    # The worker is idle when the item arrives: the pool's manager, waiting with no deadline,
    # must still learn of this one (it once slept until the item ended on its own).
    assert smartpool.parallel_map(double, range(20), backend="process", max_workers=1) == [
        2 * x for x in range(20)
    ]
    began = time.monotonic()
    with pytest.raises(smartpool.TaskTimeoutError):
        smartpool.parallel_map(time.sleep, [30], backend="process", max_workers=1, timeout=0.5)
    assert time.monotonic() - began < 10


@pytest.mark.timeout(60)
def test_thread_timeout_abandons_the_thread_and_the_interpreter_still_exits() -> None:
    script = textwrap.dedent(
        """
        import time
        import smartpool

        def slow(x):
            if x == 1:
                time.sleep(1000)
            return x

        try:
            smartpool.parallel_map(slow, range(4), backend="thread", timeout=0.5)
        except smartpool.TaskTimeoutError as error:
            print("timed out at item", error.index, sorted(error.completed), flush=True)
        print(smartpool.parallel_map(slow, [0, 2], backend="thread"), flush=True)
        """
    )
    began = time.monotonic()
    done = run_python("-c", script, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["timed out at item 1 [0, 2, 3]", "[0, 2]"]
    assert time.monotonic() - began < 20  # nowhere near the abandoned thread's 1000 s


@pytest.mark.timeout(60)
def test_crash_is_retried_when_retry_on_names_it(tmp_path: Path) -> None:
    fn = CrashOn(3, "sigkill", str(tmp_path), times=2)
    results = smartpool.parallel_map(
        fn,
        range(6),
        backend="process",
        chunksize=1,
        retries=2,
        retry_on=smartpool.WorkerCrashedError,
    )
    assert results == [2 * i for i in range(6)]
    assert attempts(str(tmp_path), 3) == 3


@pytest.mark.timeout(60)
def test_crash_retries_run_out_with_a_note(tmp_path: Path) -> None:
    fn = CrashOn(2, "exit", str(tmp_path))
    with pytest.raises(smartpool.WorkerCrashedError) as info:
        smartpool.parallel_map(
            fn,
            range(4),
            backend="process",
            chunksize=1,
            retries=1,
            retry_on=(RuntimeError, smartpool.WorkerCrashedError),
        )
    assert attempts(str(tmp_path), 2) == 2
    assert any("failed after 2 attempts (retries=1)" in n for n in info.value.__notes__)


@pytest.mark.timeout(60)
def test_crash_is_not_retried_by_the_catch_all_default(tmp_path: Path) -> None:
    fn = CrashOn(2, "exit", str(tmp_path))
    with pytest.raises(smartpool.WorkerCrashedError):
        smartpool.parallel_map(fn, range(4), backend="process", chunksize=1, retries=3)
    assert attempts(str(tmp_path), 2) == 1


@pytest.mark.timeout(60)
def test_timeout_is_retried_when_retry_on_names_it(tmp_path: Path) -> None:
    fn = HangOn(1, str(tmp_path), times=1)
    results = smartpool.parallel_map(
        fn, range(3), backend="process", timeout=0.5, retries=1, retry_on=TimeoutError
    )
    assert results == [0, 1, 2]
    assert attempts(str(tmp_path), 1) == 2
