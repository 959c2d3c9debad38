"""The command line: `smartpool demo` and `smartpool advise`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import smartpool


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartpool", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.timeout(300)
def test_demo_prints_a_measured_table() -> None:
    done = run_cli("demo", "--quick")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table = [line for line in lines if line.startswith(("pure-Python", "sha256", "I/O waits"))]
    assert len(table) == 3
    for line in table:
        assert line.count("s (") == 3  # a time and speed-up for each backend
        assert line.split()[-1] in ("serial", "thread", "process")
    io_row = next(line for line in table if line.startswith("I/O waits"))
    assert io_row.split()[-1] == "thread"


@pytest.mark.timeout(120)
def test_advise_explains_its_verdict() -> None:
    done = run_cli("advise", "tests.workloads:nap", "0.01")
    assert done.returncode == 0, done.stderr
    assert "io" in done.stdout
    assert "Verdict: use backend='thread'" in done.stdout
    assert "probe:" in done.stdout


@pytest.mark.timeout(120)
def test_advise_json() -> None:
    done = run_cli("advise", "tests.workloads:spin", "200000", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["classification"]["kind"] == "cpu"
    assert set(report["seconds"]) == {"serial", "thread", "process"}
    assert report["speedups"]["serial"] == 1.0
    assert report["picked"] in ("serial", "thread", "process")
    assert report["reasons"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "expected MODULE:FUNCTION"),
        ("no_such_module_xyz:f", "cannot load"),
        ("tests.workloads:missing", "cannot load"),
        ("tests.workloads:NOT_A_FUNCTION", "is not callable"),
    ],
)
def test_advise_rejects_bad_targets(target: str, message: str) -> None:
    done = run_cli("advise", target)
    assert done.returncode != 0
    assert message in done.stderr


def test_entry_point_help() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    assert "demo" in done.stdout and "advise" in done.stdout
    assert "``" not in done.stdout  # plain text, not reStructuredText


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"smartpool {smartpool.__version__}"


@pytest.mark.parametrize(("command", "says"), [("demo", "backend"), ("advise", "ARG")])
def test_each_command_explains_itself(command: str, says: str) -> None:
    done = run_cli(command, "--help")
    assert done.returncode == 0
    assert says in done.stdout and "``" not in done.stdout
    description = done.stdout.split("\n\n")[1]  # after the usage line
    assert len(description) > 60, done.stdout


def test_the_lazily_loaded_names_are_listed_for_help_and_completion() -> None:
    listed = dir(smartpool)
    assert {"Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Value"} <= set(listed)
    assert set(smartpool.__all__) <= set(listed)
