"""Cost estimates the planner weighs: how long a job would take serially, on threads, on processes.

Nothing here decides; :mod:`smartpool._routing.planner` compares these numbers. The constants
are rough costs measured on a 2-core Linux VM; estimates only need to be right within a factor
that the planner's margins absorb.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from .._backends import registry
from .._work import context
from .cpus import cpu_limit
from .measurement import Measurement

#: Upper bound on threads sized from a measured wait fraction.
MAX_IO_THREADS = 128
#: Rough costs (measured on a 2-core Linux VM) that the estimates use.
THREAD_TASK_SECONDS = 30e-6
THREAD_START_SECONDS = 80e-6
PROCESS_TASK_SECONDS = 150e-6
PROCESS_START_SECONDS = 0.03
#: A chunk's round trip into a subinterpreter, and starting the pool's interpreters (they start
#: on threads of their own, in parallel): a new interpreter imports everything afresh, the
#: standard library included, about what a new process pays, where a fork-server worker
#: inherits its imports. Measured under CPython 3.14 on the same VM (benchmarks/interpreters.py).
INTERPRETER_TASK_SECONDS = 150e-6
INTERPRETER_START_SECONDS = 0.05


@dataclass(frozen=True)
class Environment:
    """The facts about this process that routing depends on (injectable in tests)."""

    cores: int
    gil_enabled: bool
    nested: bool
    #: Worker processes already running in the default process pool (no start-up to pay).
    warm_processes: int = 0
    #: Which limit set ``cores`` (affinity, cgroup quota, max_cpus), for the plan's reasons.
    cores_reason: str = ""
    #: Whether the interpreter backend can run here (Python 3.14+).
    interpreters: bool = False
    #: Interpreters already running in the interpreter backend's pools.
    warm_interpreters: int = 0

    @classmethod
    def current(cls, max_cpus: int | None = None) -> Environment:
        is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
        cpus = cpu_limit(max_cpus)
        return cls(
            cores=cpus.count,
            cores_reason=cpus.reason,
            gil_enabled=True if is_gil_enabled is None else bool(is_gil_enabled()),
            nested=context.in_worker(),
            warm_processes=_warm_processes(),
            interpreters=registry.available("interpreter"),
            warm_interpreters=registry.warm_workers("interpreter"),
        )


def _warm_processes() -> int:
    return registry.warm_workers("process")


def cpu_count(max_cpus: int | None = None) -> int:
    """CPUs this process may use: affinity, cgroup quota and ``max_cpus`` (see ``cpus``)."""
    return cpu_limit(max_cpus).count


def crowded_cores(m: Measurement, env: Environment) -> int:
    """Workers for CPU-bound work: one per core, and on a machine other programs keep busy
    (``Measurement.crowding``) one more for each of them, up to twice the cores. The cores are
    shared thread by thread: beside one busy program, two workers on two cores get 4/3 of a
    core's worth, three get 3/2, four 8/5 (measured: 1.28x, 1.56x and 1.60x over serial)."""
    return env.cores + min(env.cores, math.ceil(m.crowding))


def thread_workers(m: Measurement, env: Environment, n: int) -> int:
    if m.cpu_fraction >= 0.95:
        return max(1, min(crowded_cores(m, env), n))
    wanted = math.ceil(env.cores / max(m.cpu_fraction, 1 / MAX_IO_THREADS))
    return max(1, min(MAX_IO_THREADS, wanted, n))


def process_workers(m: Measurement, env: Environment, n: int) -> int:
    if m.cpu_fraction >= 0.8:
        return max(1, min(crowded_cores(m, env), n))
    return max(1, min(4 * env.cores, math.ceil(env.cores / max(m.cpu_fraction, 0.05)), n))


def effective_cores(m: Measurement, env: Environment, w: int) -> float:
    """Cores' worth of computing that ``w`` busy threads or processes of this program get.

    On a machine other programs keep busy (see ``Measurement.crowding``) the cores are shared
    with their threads: ``w`` of ours beside ``S`` others get ``cores * w / (w + S)``. That
    holds for every backend alike, serial included: fewer cores, not a different kind of work.
    """
    w = max(1, w)
    if m.crowding <= 0.0:
        return float(min(w, env.cores))
    return min(float(w), env.cores * w / (w + m.crowding))


def serial_time(m: Measurement, env: Environment, n: int) -> float:
    """The job run in the caller: measured calls (which leave out time queued for a core),
    slowed by the share of a core a saturated machine leaves one thread."""
    total = n * m.call_seconds
    cpu = total * m.cpu_fraction
    return total - cpu + cpu / effective_cores(m, env, 1)


def thread_time(m: Measurement, env: Environment, n: int, w: int, parallel_cpu: bool) -> float:
    total, cpu = n * m.call_seconds, n * m.call_seconds * m.cpu_fraction
    # Each extra thread adds the share of a call that runs without the GIL: all or nothing when
    # the probe was clear, the measured share when it was in doubt.
    free = 1.0 if parallel_cpu else 0.0
    if m.doubt is not None and m.gil_held is not None:
        free = 1.0 - m.gil_held
    if not env.gil_enabled:
        free = 1.0
    one = effective_cores(m, env, 1)
    cpu_time = cpu / (one + (effective_cores(m, env, w) - one) * free)
    chunks = max(total / registry.traits("thread").chunk_seconds, min(n, 2 * w))
    return max(cpu_time, total / w) + chunks * THREAD_TASK_SECONDS + w * THREAD_START_SECONDS


def process_time(m: Measurement, env: Environment, n: int, p: int) -> float:
    total, cpu = n * m.call_seconds, n * m.call_seconds * m.cpu_fraction
    chunks = max(total / registry.traits("process").chunk_seconds, min(n, 2 * p))
    start = 0.0 if env.warm_processes >= p else PROCESS_START_SECONDS
    return (
        max(cpu / effective_cores(m, env, p), total / p)
        + n * m.transfer_seconds
        + m.shared_transfer_seconds
        + chunks * PROCESS_TASK_SECONDS
        + start
    )


def interpreter_time(m: Measurement, env: Environment, n: int, w: int) -> float:
    """The job on ``w`` subinterpreters: parallel like processes, but every item carries its
    own copy of any buffer it shares with others (nothing goes through shared memory), and
    interpreters not yet running must start first."""
    total, cpu = n * m.call_seconds, n * m.call_seconds * m.cpu_fraction
    chunks = max(total / registry.traits("interpreter").chunk_seconds, min(n, 2 * w))
    start = INTERPRETER_START_SECONDS if env.warm_interpreters < w else 0.0
    return (
        max(cpu / effective_cores(m, env, w), total / w)
        + n * m.transfer_seconds
        + n * m.shared_transfer_seconds
        + chunks * INTERPRETER_TASK_SECONDS
        + start
    )


def fmt_seconds(seconds: float) -> str:
    if math.isinf(seconds):
        return "n/a"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"
