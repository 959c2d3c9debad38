"""Run one cell in a fresh subprocess with a time limit, and never let it take the run down."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.engines import BASELINE, BASELINE_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
PRIMARY_METRIC = {"cold": "first_map", "warm_small": "per_call", "lock": "pair"}


def primary_metric(workload: str) -> str:
    """The metric a cell is ranked by: map time, or the workload's own headline number."""
    return PRIMARY_METRIC.get(workload, "time")


def cell_env(engine: str) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    path = str(REPO_ROOT) + (os.pathsep + path if path else "")
    baseline = env.get(BASELINE_ENV)
    if engine == BASELINE and baseline:  # its smartpool first, in the cell and its workers
        path = baseline + os.pathsep + path
    env["PYTHONPATH"] = path
    return env


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the cell and every pool worker it left behind (they share its process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(text: str, limit: int = 800) -> str:
    text = text.strip()
    if not text:
        return "(no output on stderr)"
    return text if len(text) <= limit else "..." + text[-limit:]


def run_cell(
    workload: str, engine: str, *, repeats: int, quick: bool, timeout: float
) -> dict[str, Any]:
    """Run `benchmarks._cell` for one (workload, engine) and return its result record."""
    with tempfile.TemporaryDirectory(prefix="smartpool-bench-") as tmp:
        out = Path(tmp) / "cell.json"
        cmd = [sys.executable, "-m", "benchmarks._cell", workload, engine]
        cmd += ["--repeats", str(repeats), "--out", str(out)]
        if quick:
            cmd.append("--quick")
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=cell_env(engine),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            record: dict[str, Any] = {
                "status": "timeout",
                "error": f"no result after {timeout:g} s (cell killed)",
                "samples": {},
            }
        else:
            _kill_group(proc)
            if out.exists():
                record = json.loads(out.read_text())
            else:
                record = {
                    "status": "error",
                    "error": f"cell exited with code {proc.returncode}: {_tail(stderr)}",
                    "samples": {},
                }
        wall = time.perf_counter() - start
    record.update(workload=workload, engine=engine, wall_s=wall)
    medians = record.get("medians") or {}
    record["value"] = medians.get(primary_metric(workload))
    record["metric"] = primary_metric(workload)
    return record
