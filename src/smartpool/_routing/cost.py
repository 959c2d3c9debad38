"""Cost estimates the planner weighs: how long a job would take serially, on threads, on processes.

Nothing here decides; :mod:`smartpool._routing.planner` compares these numbers. The constants
are rough costs measured on a 2-core Linux VM; estimates only need to be right within a factor
that the planner's margins absorb.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from .._backends import registry
from .._work import context
from .cpus import cpu_limit
from .measurement import Measurement
from .neighbours import fair_share

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


#: A worker beyond one a core is added only while the estimate with it is this much shorter.
MORE_WORKERS_GAIN = 0.97
#: Calls that computed for this share of their time or more compute all along, as far as
#: worker counts go: the probe can read pure computation as a few percent of waits (GIL
#: hand-overs to its own threads, the timer), which a worker more would not fill.
COMPUTES = 0.95


def thread_workers(m: Measurement, env: Environment, n: int, parallel_cpu: bool = True) -> int:
    """Threads for the job: for I/O, enough to keep the cores busy while the others wait; for
    CPU work, one a core, and more if the estimate gains (see ``_fewest_fastest``) when the
    threads compute in parallel (GIL-free code, or a free-threaded build)."""
    if m.cpu_fraction < COMPUTES:
        wanted = math.ceil(env.cores / max(m.cpu_fraction, 1 / MAX_IO_THREADS))
        return max(1, min(MAX_IO_THREADS, wanted, n))
    if not parallel_cpu:
        return max(1, min(env.cores, n))
    return _fewest_fastest(lambda w: thread_time(m, env, n, w, parallel_cpu), env, n)


def process_workers(m: Measurement, env: Environment, n: int) -> int:
    """Worker processes for the job: as many as the work keeps busy, for CPU work one a core
    and more where the estimate gains (see ``_fewest_fastest``)."""
    if m.cpu_fraction < 0.8:
        return max(1, min(4 * env.cores, math.ceil(env.cores / max(m.cpu_fraction, 0.05)), n))
    if m.cpu_fraction >= COMPUTES:  # (a third worker on two cores gained 3 % on paper, lost)
        m = replace(m, cpu_fraction=1.0)
    return _fewest_fastest(lambda p: process_time(m, env, n, p), env, n)


def _fewest_fastest(time_with: Callable[[int], float], env: Environment, n: int) -> int:
    """One worker a core, and one more at a time (up to twice the cores, never more than the
    items) while each makes the estimate ``time_with`` shorter by ``MORE_WORKERS_GAIN``.

    The kernel shares the cores thread by thread, so more workers than cores gain in two cases:
    beside other busy programs, where each worker more takes a larger share (beside one, three
    workers on two cores get 1.5 cores' worth where two get 4/3: measured 1.56x and 1.28x over
    serial); and with few long items, where a last round would leave a core idle (3 items on 2
    cores take two items' time on 2 workers, 1.5 on 3)."""
    best = max(1, min(env.cores, n))
    best_time = time_with(best)
    for w in range(best + 1, max(1, min(2 * env.cores, n)) + 1):
        time = time_with(w)
        if time >= best_time * MORE_WORKERS_GAIN:
            break
        best, best_time = w, time
    return best


def _rounds(m: Measurement, n: int, w: int, chunk_seconds: float) -> float:
    """The least time ``w`` workers take over ``n`` items too long to share a chunk: each runs
    whole, on one worker, so the last round may leave workers idle."""
    if m.call_seconds < chunk_seconds:
        return 0.0
    return math.ceil(n / w) * m.call_seconds


def effective_cores(m: Measurement, env: Environment, w: int) -> float:
    """Cores' worth of computing that ``w`` busy threads or processes of this program get.

    On a machine other programs keep busy the cores are shared: first between scheduling
    groups (``Measurement.other_groups``: other sessions, other cgroups), each an equal part,
    then between the threads of a group, this program's ``w`` beside the ``crowding`` others in
    its own. That holds for every backend alike, serial included: fewer cores, not a different
    kind of work. (Beside one busy program in another session, two workers on two cores get
    one core, as the caller alone does; beside one in the same session, 4/3.)
    """
    w = max(1, w)
    wanted = w + m.crowding
    group = fair_share(env.cores, wanted, m.other_groups)
    return min(float(w), group * w / wanted)


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
    chunk_seconds = registry.traits("thread").chunk_seconds
    chunks = max(total / chunk_seconds, min(n, 2 * w))
    return (
        max(cpu_time, total / w, _rounds(m, n, w, chunk_seconds))
        + chunks * THREAD_TASK_SECONDS
        + w * THREAD_START_SECONDS
    )


def process_time(m: Measurement, env: Environment, n: int, p: int) -> float:
    total, cpu = n * m.call_seconds, n * m.call_seconds * m.cpu_fraction
    chunk_seconds = registry.traits("process").chunk_seconds
    chunks = max(total / chunk_seconds, min(n, 2 * p))
    start = 0.0 if env.warm_processes >= p else PROCESS_START_SECONDS
    return (
        max(cpu / effective_cores(m, env, p), total / p, _rounds(m, n, p, chunk_seconds))
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
    chunk_seconds = registry.traits("interpreter").chunk_seconds
    chunks = max(total / chunk_seconds, min(n, 2 * w))
    start = INTERPRETER_START_SECONDS if env.warm_interpreters < w else 0.0
    return (
        max(cpu / effective_cores(m, env, w), total / w, _rounds(m, n, w, chunk_seconds))
        + n * m.transfer_seconds
        + n * m.shared_transfer_seconds
        + chunks * INTERPRETER_TASK_SECONDS
        + start
    )


def fmt_seconds(seconds: float) -> str:
    if math.isinf(seconds):
        return "n/a"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"
