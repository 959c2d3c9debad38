"""The pytest plugin as a user sees it: test files in a temporary directory, run by pytest in a
subprocess that finds the plugin through its ``pytest11`` entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WHERE = """
import os, threading
import pytest
import smartpool

def where(_):
    return os.getpid(), threading.current_thread().name

def ran_on(backend):
    (pid, thread), = smartpool.parallel_map(where, [0])
    if backend == "serial":
        return pid == os.getpid() and thread == threading.current_thread().name
    if backend == "thread":
        return pid == os.getpid() and thread.startswith("smartpool-thread")
    return pid != os.getpid()
"""


def run_pytest(folder: Path, source: str, *args: str, conftest: str = "") -> tuple[int, str]:
    """(exit code, output) of pytest run on ``source`` as test_user.py in ``folder``."""
    (folder / "test_user.py").write_text(textwrap.dedent(WHERE + source))
    if conftest:
        (folder / "conftest.py").write_text(textwrap.dedent(conftest))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args, "test_user.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def counts(output: str) -> dict[str, int]:
    last = output.strip().splitlines()[-1]
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", last)}


ONE_TEST = """
def test_runs_where_asked(smartpool_backend):
    assert ran_on(smartpool_backend)
    assert smartpool.explain(where, [1, 2]).backend == smartpool_backend
"""


def test_one_test_runs_on_each_of_the_three_backends(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, ONE_TEST)
    assert code == 0, output
    assert counts(output) == {"passed": 3}
    for name in ("serial", "thread", "process"):
        assert f"test_runs_where_asked[{name}] PASSED" in output


def test_the_marker_narrows_the_backends(tmp_path: Path) -> None:
    source = "\n@pytest.mark.smartpool(backends=['thread'])" + ONE_TEST
    code, output = run_pytest(tmp_path, source)
    assert code == 0, output
    assert counts(output) == {"passed": 1}
    assert "test_runs_where_asked[thread] PASSED" in output


def test_a_bad_marker_is_a_usage_error(tmp_path: Path) -> None:
    source = "\n@pytest.mark.smartpool(backends='thread')" + ONE_TEST
    code, output = run_pytest(tmp_path, source)
    assert code != 0
    assert "@pytest.mark.smartpool needs backends=[...]" in output


def test_a_redefined_fixture_chooses_the_backends(tmp_path: Path) -> None:
    conftest = """
    import pytest

    @pytest.fixture(params=["process"])
    def smartpool_backend(request):
        return request.param
    """
    code, output = run_pytest(tmp_path, ONE_TEST, conftest=conftest)
    assert code == 0, output
    assert counts(output) == {"passed": 1}
    assert "test_runs_where_asked[process] PASSED" in output


def test_no_smartpool_removes_the_plugin(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, ONE_TEST, "-p", "no:smartpool")
    assert code != 0
    assert "fixture 'smartpool_backend' not found" in output


def test_serial_forces_one_backend_for_every_call_of_the_session(tmp_path: Path) -> None:
    source = (
        "\n@pytest.mark.smartpool(backends=['thread', 'process'])"
        + ONE_TEST
        + """
def test_without_the_fixture():
    assert ran_on("serial")
    assert smartpool.explain(where, [1, 2, 3]).backend == "serial"
"""
    )
    code, output = run_pytest(tmp_path, source, "--smartpool-serial")
    assert code == 0, output
    assert counts(output) == {"passed": 2}
    assert "test_runs_where_asked[serial] PASSED" in output


def test_a_forced_backend_must_exist(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, ONE_TEST, "--smartpool-backend=bogus")
    assert code == pytest.ExitCode.USAGE_ERROR
    assert "--smartpool-backend: unknown backend 'bogus'" in output


def test_loading_the_plugin_imports_neither_smartpool_nor_hypothesis(tmp_path: Path) -> None:
    code = (
        "import sys, _smartpool_pytestplugin\n"
        "loaded = [m for m in sys.modules if m.startswith(('smartpool', 'hypothesis'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    helpers = "import sys, smartpool.testing\nassert 'hypothesis' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", helpers], check=True, timeout=120)
    (tmp_path / "test_user.py").write_text(
        "import sys\n\n"
        "def test_nothing_loaded(request):\n"
        "    assert request.config.pluginmanager.has_plugin('smartpool')\n"
        "    assert 'smartpool' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


LEAKS = """
import subprocess, threading

started = []

@pytest.fixture(scope="session", autouse=True)
def _stop_what_the_tests_left():
    yield
    gate.set()
    for process in started:
        process.kill()
        process.wait()

gate = threading.Event()
KEPT = []

def test_leaves_a_thread(smartpool_clean):
    threading.Thread(target=gate.wait, name="left-behind", daemon=True).start()

def test_leaves_a_process(smartpool_clean):
    started.append(subprocess.Popen(["sleep", "60"]))

def test_leaves_a_held_lock(smartpool_clean):
    lock = smartpool.Lock()
    lock.acquire()
    KEPT.append(lock)

def test_leaves_nothing(smartpool_clean, smartpool_backend):
    assert ran_on(smartpool_backend)
    with smartpool.Lock():
        pass
"""


def test_smartpool_clean_fails_tests_that_leave_things_behind(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, LEAKS, "-o", "smartpool_grace=0.5")
    assert code == 1, output
    assert counts(output) == {"passed": 6, "errors": 3}, output  # passed, then failed teardown
    held = output.split("teardown of test_leaves_a_held_lock")[1].split("short test summary")[0]
    assert "process" not in held  # Python's resource tracker serves the process: not a leak
    assert re.search(r"the test left behind:\n  - thread 'left-behind'", output)
    assert re.search(r"the test left behind:\n  - process \d+ sleep", output)
    assert re.search(r"held Lock <smartpool\._sync\._lock\.Lock /smartpool-\w+ locked>", output)
    assert re.search(r"shared-memory file /dev/shm/smartpool-\w+", output)
    for name in ("serial", "thread", "process"):
        assert f"test_leaves_nothing[{name}] PASSED" in output


def test_strict_checks_every_test(tmp_path: Path) -> None:
    source = LEAKS.replace("smartpool_clean, ", "").replace("(smartpool_clean)", "()")
    code, output = run_pytest(tmp_path, source, "--smartpool-strict", "-o", "smartpool_grace=0.5")
    assert code == 1, output
    assert counts(output) == {"passed": 6, "errors": 3}, output
