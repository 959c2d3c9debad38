"""How many CPUs this process may use: the least of its CPU affinity, its cgroup's CPU quota
(containers, ``docker run --cpus``, Kubernetes limits) and ``max_cpus`` (``SMARTPOOL_MAX_CPUS``).

``os.cpu_count()`` counts the machine's CPUs; a container limited to two of sixty-four would
start sixty-four processes that the kernel then throttles. The quota is read from cgroup v2's
``cpu.max`` or v1's ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, along the process's own cgroup
path and its parents (the tightest wins), rounded up to whole CPUs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import _config

#: Where the cgroup file systems are mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The process's cgroup membership.
PROC_CGROUP = Path("/proc/self/cgroup")
#: The quota is read again after this many seconds (``docker update --cpus`` changes it live).
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class CpuLimit:
    """The CPUs a process may use, and which limit set the number."""

    count: int
    #: Which limit: "the CPU affinity", "the cgroup CPU quota 150000/100000 in .../cpu.max,
    #: rounded up" or "max_cpus=2".
    reason: str


def cpu_count() -> int:
    """The CPUs smartpool's plans count on here: the least of this process's CPU affinity, its
    cgroup's CPU quota (a container's ``--cpus``), and ``max_cpus`` (a call option, also set by
    ``config()``, ``configure()`` or ``SMARTPOOL_MAX_CPUS``); at least 1.

    Process plans and CPU-bound thread plans use at most this many workers' worth of CPUs
    (``explain()`` names the limit); plans for I/O-bound threads do not depend on it.

    Example:
        >>> import os, smartpool
        >>> 1 <= smartpool.cpu_count() <= os.cpu_count()
        True
        >>> with smartpool.config(max_cpus=1):
        ...     smartpool.cpu_count()
        1
    """
    return cpu_limit(_config.resolve({}).max_cpus).count


def cpu_limit(
    max_cpus: int | None = None,
    *,
    cgroup_root: Path | None = None,
    proc_cgroup: Path | None = None,
) -> CpuLimit:
    """The least of affinity, cgroup quota and ``max_cpus``; at least 1.

    ``cgroup_root`` and ``proc_cgroup`` replace the system's paths (tests pass fake files).
    """
    candidates = [CpuLimit(affinity_cpus(), "the CPU affinity")]
    quota = (
        _cached_quota()
        if cgroup_root is None and proc_cgroup is None
        else cgroup_quota(cgroup_root or CGROUP_ROOT, proc_cgroup or PROC_CGROUP)
    )
    if quota is not None:
        candidates.append(quota)
    if max_cpus is not None:
        candidates.append(
            CpuLimit(max(1, max_cpus), f"max_cpus={max_cpus}")
        )  # or SMARTPOOL_MAX_CPUS
    return min(reversed(candidates), key=lambda c: c.count)  # a tie names the narrower limit


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (``os.process_cpu_count()`` on 3.13+)."""
    process_cpu_count = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:
        return max(1, int(process_cpu_count() or 1))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cgroup_quota(root: Path, proc_cgroup: Path) -> CpuLimit | None:
    """The tightest CPU quota on the process's cgroup path (v2, else v1); None: no quota."""
    own = _own_paths(proc_cgroup)
    found: list[CpuLimit] = []
    for folder in _ancestors(root, own.get("", "/")):  # cgroup v2: one unified hierarchy
        found.extend(_v2_quota(folder / "cpu.max"))
    if not found:
        for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            base = root / mount
            path = own.get("cpu", "/")
            for folder in _ancestors(base, path):
                found.extend(_v1_quota(folder))
    return min(found, key=lambda c: c.count) if found else None


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller list -> the process's cgroup path ("" for v2), from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths.setdefault(controller, parts[2])
    return paths


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base`` joined with ``path`` and each of its parents, down to ``base`` itself."""
    folders = [base]
    parts = [p for p in path.split("/") if p and p != ".."]
    for i in range(1, len(parts) + 1):
        folders.append(base.joinpath(*parts[:i]))
    return [f for f in folders if f.is_dir()]


def _v2_quota(cpu_max: Path) -> list[CpuLimit]:
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        return []
    if len(fields) != 2 or fields[0] == "max":  # empty, or "max <period>": no quota
        return []
    return _quota(int(fields[0]), int(fields[1]), str(cpu_max))


def _v1_quota(folder: Path) -> list[CpuLimit]:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text().strip() or -1)
        period = int((folder / "cpu.cfs_period_us").read_text().strip() or 0)
    except (OSError, ValueError):
        return []
    return _quota(quota, period, str(folder / "cpu.cfs_quota_us"))


def _quota(quota: int, period: int, where: str) -> list[CpuLimit]:
    if quota <= 0 or period <= 0:  # -1: no quota (v1)
        return []
    count = max(1, math.ceil(quota / period))
    return [CpuLimit(count, f"the cgroup CPU quota {quota}/{period} in {where}, rounded up")]


_cache: tuple[float, CpuLimit | None] = (-math.inf, None)


def _cached_quota() -> CpuLimit | None:
    global _cache
    now = time.monotonic()
    if now - _cache[0] > CACHE_SECONDS:
        _cache = (now, cgroup_quota(CGROUP_ROOT, PROC_CGROUP))
    return _cache[1]
