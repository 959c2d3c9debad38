"""A worker killed by a fatal signal keeps faulthandler's report off the caller's stderr: it
reaches the WorkerCrashedError as a note, or stderr when SMARTPOOL_FAULTHANDLER says so."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from smartpool._process import crash_reports

from .subprocesses import ENV

#: Crashes a worker with SIGSEGV, then one with SIGABRT, under the start method given, and
#: prints each error's notes. The caller runs with faulthandler on (as under pytest), which
#: forked workers inherit and PYTHONFAULTHANDLER turns on in spawned ones.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import smartpool

    def segfault(x):
        if x == 1:
            os.kill(os.getpid(), signal.SIGSEGV)
        return x

    def abort(x):
        if x == 2:
            os.abort()
        return x

    if __name__ == "__main__":
        smartpool.configure(start_method=sys.argv[1])
        for fn in (segfault, abort):
            try:
                smartpool.parallel_map(fn, range(4), backend="process", chunksize=1)
            except smartpool.WorkerCrashedError as error:
                print(f"{fn.__name__}: {error}")
                print("\\n".join(getattr(error, "__notes__", [])))
            else:
                raise SystemExit(f"{fn.__name__} did not crash its worker")
    """
)


def run(method: str, reports: str | None) -> subprocess.CompletedProcess[str]:
    env = {**ENV, "PYTHONFAULTHANDLER": "1"}
    env.pop(crash_reports.ENV, None)
    if reports is not None:
        env[crash_reports.ENV] = reports
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", SCRIPT, method],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(150)
@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_the_report_is_a_note_not_stderr(method: str) -> None:
    proc = run(method, None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    segfault, abort = proc.stdout.split("abort: ")
    assert "killed by SIGSEGV" in segfault and "killed by SIGABRT" in abort
    for report, function, line in ((segfault, "segfault", 7), (abort, "abort", 12)):
        assert "smartpool: the worker's faulthandler report:" in report
        assert f"line {line} in {function}" in report  # the stack it died in, from the top
        assert "in parallel_map" not in report  # not the stack a forked worker was forked from
    assert "Fatal Python error: Segmentation fault" in segfault
    assert "Fatal Python error: Aborted" in abort


@pytest.mark.timeout(150)
def test_the_report_goes_to_stderr_when_asked() -> None:
    proc = run("forkserver", "stderr")
    assert proc.returncode == 0, proc.stderr
    assert "faulthandler report" not in proc.stdout
    assert "Fatal Python error: Segmentation fault" in proc.stderr
    assert "Fatal Python error: Aborted" in proc.stderr
    assert "line 7 in segfault" in proc.stderr


@pytest.mark.timeout(150)
def test_no_report_at_all_when_turned_off() -> None:
    proc = run("forkserver", "off")
    assert proc.returncode == 0, proc.stderr
    assert "killed by SIGSEGV" in proc.stdout
    assert "faulthandler report" not in proc.stdout
    assert proc.stderr == ""


def test_an_unknown_setting_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(crash_reports.ENV, "verbose")
    with pytest.warns(RuntimeWarning, match="SMARTPOOL_FAULTHANDLER='verbose'.*using 'note'"):
        assert crash_reports.mode() == "note"
