"""Ctrl-C in the middle of a map: the caller gets KeyboardInterrupt fast and no worker survives.

Each case runs a script in its own session (as a terminal would run a foreground job), waits until
a worker has started an item (the worker creates a file), then sends SIGINT to the script and to
its whole process group, like a terminal does on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .subprocesses import ENV
from .test_faults_crash import alive

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    # Ctrl-C raises KeyboardInterrupt, as in a terminal's foreground job, even when the tests
    # themselves run in a background job (`cmd &`), whose children start with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import smartpool

    directory, backend, api, method = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    smartpool.configure(start_method=method)

    def work(x):
        Path(directory, f"pid-{os.getpid()}-{os.getppid()}-{x}").touch()
        time.sleep(1000)  # the long-running work being interrupted
        return x

    try:
        if api == "parallel_map":
            smartpool.parallel_map(work, range(100), backend=backend, max_workers=2, chunksize=1)
        else:
            for _ in smartpool.imap(work, range(100), backend=backend, max_workers=2, chunksize=1):
                pass
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the test sends a second SIGINT
        print(time.monotonic(), flush=True)
        sys.exit(42)
    """
)

CASES = [
    ("serial", "forkserver"),
    ("thread", "forkserver"),
    ("process", "forkserver"),
    ("process", "fork"),
    ("process", "spawn"),
]


def _wait_for(directory: Path, pattern: str, deadline: float) -> None:
    while not list(directory.glob(pattern)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern} in {directory} before the deadline")
        time.sleep(0.005)  # polling for the file, not synchronising on time


# Room above the test's own deadlines (30 s to start, 20 s to exit): a slow, loaded machine gets
# their clear assertion, not a pytest timeout.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", ["parallel_map", "imap"])
@pytest.mark.parametrize(("backend", "method"), CASES)
def test_ctrl_c_stops_everything(tmp_path: Path, backend: str, method: str, api: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    directory = tmp_path / "marks"
    directory.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(directory), backend, api, method],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(directory, "pid-*", time.monotonic() + 30)
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 42, stderr
    assert float(stdout) - sent < 2.0  # KeyboardInterrupt reached the caller within 2 s
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    for mark in directory.glob("pid-*"):
        _, pid, parent, _ = mark.name.split("-")
        assert not alive(int(pid)), f"worker {pid} survived"
        if backend == "process" and method == "forkserver":
            assert not alive(int(parent)), f"fork server {parent} survived"
