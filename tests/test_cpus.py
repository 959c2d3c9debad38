"""``cpu_count()``: the least of the affinity mask, the cgroup CPU quota and ``max_cpus``; how
plans use it (processes and CPU-bound threads, not I/O threads) and say which limit applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import smartpool
from smartpool._routing import cost, planner
from smartpool._routing.cpus import affinity_cpus, cgroup_quota, cpu_limit
from smartpool._routing.measurement import Measurement


def _cgroup(root: Path, files: dict[str, str], membership: str = "0::/\n") -> Path:
    """A fake cgroup tree under ``root`` and a fake /proc/self/cgroup; returns the latter."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(membership)
    return proc


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("150000 100000\n", 2),  # 1.5 CPUs, rounded up
        ("200000 100000\n", 2),
        ("5000 100000\n", 1),  # a twentieth of a CPU still runs
        ("max 100000\n", None),  # no quota
        ("", None),  # an empty file: no quota
    ],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    root = tmp_path / "cgroup"
    proc = _cgroup(root, {"cpu.max": cpu_max})
    quota = cgroup_quota(root, proc)
    assert (quota.count if quota else None) == expected
    limit = cpu_limit(cgroup_root=root, proc_cgroup=proc)
    assert limit.count == min(affinity_cpus(), expected or affinity_cpus())


def test_the_tightest_quota_on_the_process_cgroup_path_wins(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = _cgroup(
        root,
        {"cpu.max": "max 100000", "pod/cpu.max": "100000 100000", "pod/app/cpu.max": "max 100000"},
        membership="0::/pod/app\n",
    )
    quota = cgroup_quota(root, proc)
    assert quota is not None and quota.count == 1
    assert "pod/cpu.max" in quota.reason


@pytest.mark.parametrize(
    ("quota", "period", "expected"), [("250000", "100000", 3), ("-1", "100000", None)]
)
def test_cgroup_v1_quota_and_period(
    tmp_path: Path, quota: str, period: str, expected: int | None
) -> None:
    root = tmp_path / "cgroup"
    proc = _cgroup(
        root,
        {
            "cpu,cpuacct/docker/x/cpu.cfs_quota_us": quota,
            "cpu,cpuacct/docker/x/cpu.cfs_period_us": period,
        },
        membership="12:cpu,cpuacct:/docker/x\n11:memory:/docker/x\n",
    )
    found = cgroup_quota(root, proc)
    assert (found.count if found else None) == expected


def test_no_cgroup_files_mean_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path / "absent", tmp_path / "absent-proc") is None


def test_the_least_limit_applies_and_is_named(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = _cgroup(root, {"cpu.max": "100000 100000"})
    limit = cpu_limit(cgroup_root=root, proc_cgroup=proc)
    assert limit.count == 1 and "cgroup CPU quota 100000/100000" in limit.reason
    assert cpu_limit(1, cgroup_root=root, proc_cgroup=proc).reason == "max_cpus=1"  # a tie
    unlimited = cpu_limit(10_000, cgroup_root=tmp_path / "none", proc_cgroup=proc)
    assert unlimited.count == affinity_cpus() and unlimited.reason == "the CPU affinity"


def test_cpu_count_follows_max_cpus_from_the_configuration() -> None:
    assert smartpool.cpu_count() == cpu_limit().count
    with smartpool.config(max_cpus=1):
        assert smartpool.cpu_count() == 1
    with pytest.raises(ValueError, match="max_cpus must be at least 1"):
        smartpool.config(max_cpus=0)


def test_max_cpus_one_in_the_environment_in_a_fresh_interpreter() -> None:
    code = (
        "import json, smartpool\n"
        "plan = smartpool.explain(abs, range(100), backend='process')\n"
        "print(json.dumps([smartpool.cpu_count(), plan.max_workers, plan.reasons]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "SMARTPOOL_MAX_CPUS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    count, workers, reasons = json.loads(done.stdout)
    assert (count, workers) == (1, 1)
    assert "1 usable CPU(s), limited by max_cpus=1" in reasons


def _env(cores: int) -> cost.Environment:
    return cost.Environment(cores=cores, gil_enabled=True, nested=False, cores_reason="a test")


HOLDS_GIL = Measurement(
    call_seconds=0.01,
    cpu_fraction=1.0,
    releases_gil=False,
    picklable=True,
    transfer_seconds=0.0,
    samples=5,
)
WAITS = Measurement(
    call_seconds=0.01,
    cpu_fraction=0.01,
    releases_gil=None,
    picklable=True,
    transfer_seconds=0.0,
    samples=5,
)


def test_plans_count_cpus_for_processes_and_cpu_bound_threads_not_io_threads() -> None:
    opts = smartpool.current_config().options
    cpu = planner.make_plan(abs, opts, hint=None, n_items=1000, measurement=HOLDS_GIL, env=_env(3))
    assert (cpu.backend, cpu.max_workers) == ("process", 3)
    assert "3 usable CPU(s), limited by a test" in cpu.reasons
    one = planner.make_plan(abs, opts, hint="cpu", n_items=1000, env=_env(1))
    assert one.backend == "serial"
    io_wide = planner.make_plan(abs, opts, hint="io", n_items=1000, env=_env(64))
    io_narrow = planner.make_plan(abs, opts, hint="io", n_items=1000, env=_env(1))
    assert io_narrow.max_workers == io_wide.max_workers == planner.DEFAULT_IO_WORKERS
    waits = planner.make_plan(abs, opts, hint=None, n_items=1000, measurement=WAITS, env=_env(1))
    assert waits.backend == "thread" and waits.max_workers > 1
    assert not any("usable CPU" in reason for reason in waits.reasons)
