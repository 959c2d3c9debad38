"""Every routing decision: hint + options + environment -> a :class:`Plan`.

Backends never decide anything; the engine only executes a plan. Automatic classification by a
probe plugs in here, in :func:`make_plan`, without touching either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .._backends import registry
from .._errors import SerializationError
from .._options import Options
from .._transport.serialize import dump_function
from .._work import context
from . import on_cluster
from .cost import (
    COMPUTES,
    Environment,
    effective_cores,
    fmt_seconds,
    interpreter_time,
    process_time,
    process_workers,
    serial_time,
    thread_time,
    thread_workers,
)
from .measurement import Measurement
from .memory import remember
from .neighbours import described

#: A registered backend's name ("serial", "thread", "process", ...).
BackendName = str
Hint = Literal["cpu", "io"]

#: Threads for I/O-bound work when neither the user nor a measurement says otherwise.
DEFAULT_IO_WORKERS = 32
#: The most threads one pool runs, and processes per usable core: more only costs memory and
#: descriptors (each worker process holds a socket), never time.
MAX_THREADS = 512
MAX_PROCESSES_PER_CORE = 4
#: Items assumed when the input's length is unknown (a generator).
ASSUMED_ITEMS = 10_000
#: A parallel plan must be estimated at most this fraction of serial time...
MARGIN = 0.85
#: ...and save at least this much, since estimates are rough.
MIN_SAVING_SECONDS = 0.002
#: Prefer threads when within this factor of processes: nothing to pickle, nothing to start.
PREFER_THREADS = 1.15
#: Re-plan when items take this many times more (or less) than the plan assumed.
REPLAN_FACTOR = 8.0


@dataclass(frozen=True)
class Plan:
    """How a call will run: the backend, how many workers, how items are chunked, and why.

    Example:
        >>> import smartpool
        >>> plan = smartpool.explain(abs, range(10), backend="thread", max_workers=4)
        >>> plan.backend, plan.max_workers
        ('thread', 4)
    """

    backend: BackendName
    max_workers: int
    #: Fixed chunk size, or None: sized adaptively from the measured cost of items.
    chunksize: int | None
    reasons: tuple[str, ...] = field(default=())
    #: Measured seconds per item when the plan came from a probe.
    item_seconds: float | None = None
    #: BLAS/OpenMP threads each worker gives its libraries (None: left alone; see
    #: ``inner_threads=``).
    inner_threads: int | None = None

    @property
    def target_chunk_seconds(self) -> float:
        return registry.traits(self.backend).chunk_seconds

    def __str__(self) -> str:
        chunks = "adaptive" if self.chunksize is None else str(self.chunksize)
        why = "; ".join(self.reasons)
        return f"{self.backend} x{self.max_workers} (chunksize {chunks}): {why}"


def needs_probe(options: Options, hint: Hint | None, n_items: int | None) -> bool:
    """Whether the plan must wait for a measurement of the function on its first items."""
    return (
        options.backend == "auto"
        and hint is None
        and options.timeout is None  # the probe runs inline, where an overrun cannot be stopped
        and options.initializer is None  # the caller is not one of the workers it sets up
        and not context.in_worker()
        and (n_items is None or n_items > 1)
    )


def make_plan(
    fn: Callable[..., Any],
    options: Options,
    *,
    hint: Hint | None,
    n_items: int | None,
    measurement: Measurement | None = None,
    env: Environment | None = None,
) -> Plan:
    """Decide backend, workers and chunking for running ``fn`` over ``n_items`` items.

    ``measurement`` is what the probe saw on the first items (``n_items`` then counts the items
    left after it); without one, an unhinted auto call gets the documented default (threads).
    """
    env = env or Environment.current(options.max_cpus)
    reasons: list[str] = []
    backend: BackendName
    workers: int | None = options.max_workers
    item_seconds = None if measurement is None else measurement.call_seconds
    if options.backend != "auto":
        backend = options.backend
        reasons.append(f"backend={backend!r} was requested")
    elif env.nested:
        backend = "serial"
        reasons.append("nested call inside a smartpool worker runs in-process")
    elif n_items is not None and n_items <= 1:
        backend = "serial"
        reasons.append(f"{n_items} item(s) left: nothing to parallelise")
    elif measurement is not None:
        backend, chosen, why = _decide(measurement, env, n_items, options.max_workers)
        workers = workers or chosen
        reasons.extend(why)
    elif hint == "io":
        backend = "thread"
        reasons.append("hinted I/O-bound: threads overlap the waits")
    elif hint == "cpu":
        if env.cores > 1:
            backend = "process"
            reasons.append(f"hinted CPU-bound: processes use the {env.cores} cores")
        else:
            backend = "serial"
            reasons.append("hinted CPU-bound but only one core is usable")
    else:
        backend = "thread"
        reasons.append("no hint and no measurement: threads (nothing needs pickling)")
    if options.timeout is not None and backend == "serial" and options.backend == "auto":
        backend = "thread"
        reasons.append("timeout= needs an interruptible backend")
    if backend in ("dask", "process", "thread"):
        backend, workers = on_cluster.place(
            backend, workers, options, env, reasons, hint == "io", DEFAULT_IO_WORKERS
        )
    if workers is None:
        workers = _workers(backend, hint, env)
    chunksize = 1 if options.timeout is not None else options.chunksize
    workers = 1 if backend == "serial" else _capped(backend, workers, env, reasons)
    inner = _inner_threads(options.inner_threads, backend, workers, env)
    cpu_bound = hint == "cpu" or (measurement is not None and measurement.cpu_fraction >= COMPUTES)
    if backend == "process" or (backend == "thread" and cpu_bound):  # the CPUs count here
        reasons.append(f"{env.cores} usable CPU(s), limited by {env.cores_reason or 'the caller'}")
        if inner is not None:
            reasons.append(f"{inner} BLAS/OpenMP thread(s) in each of the {workers} workers")
    return Plan(backend, workers, chunksize, tuple(reasons), item_seconds, inner)


def _inner_threads(
    setting: int | str | None, backend: BackendName, workers: int, env: Environment
) -> int | None:
    """BLAS/OpenMP threads per worker: the usable CPUs shared among the workers (``"auto"``),
    so that workers each running a multi-threaded library do not oversubscribe the CPUs."""
    if setting is None or backend == "serial":
        return None
    if isinstance(setting, int):
        return setting
    return max(1, env.cores // workers)


def _capped(backend: BackendName, workers: int, env: Environment, reasons: list[str]) -> int:
    """``workers``, but no more than this machine can take (workers start only when work waits
    for them, so a pool larger than a call's items costs nothing). A cluster is not capped."""
    if backend in ("dask", "dask-thread"):
        return workers
    cap = MAX_THREADS if backend == "thread" else MAX_PROCESSES_PER_CORE * env.cores
    if workers > cap:
        unit = "threads" if backend == "thread" else f"processes ({MAX_PROCESSES_PER_CORE} a core)"
        reasons.append(f"max_workers={workers} capped at {cap} {unit}")
        return cap
    return workers


def plan_measured(
    fn: Callable[..., Any], options: Options, n_items: int | None, measurement: Measurement
) -> tuple[Plan, Measurement]:
    """The plan for a measured function; a process plan is only kept if the function pickles.

    Items and results were checked by the probe; the function itself is checked only here,
    when processes are actually on the table (a cloudpickle import is not free).
    """
    plan = make_plan(fn, options, hint=None, n_items=n_items, measurement=measurement)
    if registry.traits(plan.backend).needs_pickling and measurement.picklable is None:
        try:
            dump_function(fn)
        except SerializationError:  # now we know: plan again without processes
            measurement = replace(measurement, picklable=False)
            remember(fn, measurement)
            plan = make_plan(fn, options, hint=None, n_items=n_items, measurement=measurement)
    if plan.backend == "interpreter" and measurement.runs_in_interpreter is None:
        # Once per function: does it load in a subinterpreter? (Not if its modules import an
        # extension that refuses them, such as NumPy.) If not, remember it and plan again.
        loads = registry.backend_class("interpreter").runs_function(fn)
        measurement = replace(measurement, runs_in_interpreter=loads)
        remember(fn, measurement)
        if not loads:
            plan = make_plan(fn, options, hint=None, n_items=n_items, measurement=measurement)
            why = "its modules do not load in a subinterpreter: not on interpreters"
            plan = replace(plan, reasons=(*plan.reasons, why))
    return plan, measurement


def replan(
    plan: Plan,
    observed: Measurement,
    probed: Measurement,
    options: Options,
    *,
    n_left: int | None,
    done: int,
    env: Environment | None = None,
) -> Plan | None:
    """A new plan when items turn out far cheaper or costlier than the plan assumed, else None.

    Only plans running where measurements are clean are revisited: inline (serial) and in worker
    processes. On threads, waiting for the GIL looks like I/O, so their timings cannot be trusted.
    """
    if options.backend != "auto" or plan.item_seconds is None or plan.backend == "thread":
        return None
    ratio = observed.call_seconds / max(plan.item_seconds, 1e-9)
    if 1 / REPLAN_FACTOR < ratio < REPLAN_FACTOR:
        return None
    merged = replace(
        observed,
        releases_gil=probed.releases_gil,
        picklable=probed.picklable,
        transfer_seconds=probed.transfer_seconds,
        shared_transfer_seconds=probed.shared_transfer_seconds,
        runs_in_interpreter=probed.runs_in_interpreter,
    )
    if probed.other_groups:  # the probe saw which groups share the cores: that still stands
        merged = replace(merged, crowding=probed.crowding, other_groups=probed.other_groups)
    new = make_plan(_no_function, options, hint=None, n_items=n_left, measurement=merged, env=env)
    if new.backend == plan.backend:
        return None
    note = (
        f"re-planned after {done} items: they took {ratio:.3g}x the time the plan assumed; "
        f"{plan.backend} -> {new.backend}"
    )
    reasons = [r.replace("probe:", "observed in the run:", 1) for r in new.reasons]
    return replace(new, reasons=(note, *reasons))


def _no_function(_: object) -> None:  # pragma: no cover - planning never calls it
    return None


#: Calls of a few common kinds, to say what a call's plan would be before it is measured.
TYPICAL_CALLS: tuple[tuple[str, Measurement], ...] = (
    ("calls of a microsecond", Measurement(1e-6, 1.0, False, True, 1e-6, 1, gil_held=1.0)),
    ("1 ms of Python code a call", Measurement(1e-3, 1.0, False, True, 1e-5, 1, gil_held=1.0)),
    (
        "1 ms a call with the GIL released (hashlib, NumPy)",
        Measurement(1e-3, 1.0, True, True, 1e-5, 1, gil_held=0.0),
    ),
    ("10 ms of waiting (I/O) a call", Measurement(1e-2, 0.02, None, True, 1e-5, 1)),
)


def typical_plans(options: Options, n_items: int | None, env: Environment | None = None) -> str:
    """What the plan would be once measured, for calls of common kinds: the measurement decides,
    but a reader of ``explain(fn)`` without items learns what it tends to decide, and why."""
    env = env or Environment.current()
    n = n_items if n_items is not None else ASSUMED_ITEMS
    decided: list[str] = []
    for label, m in TYPICAL_CALLS:
        backend, workers, _ = _decide(m, env, n_items, options.max_workers)
        decided.append(f"{label} -> {backend}" + (f" x{workers}" if backend != "serial" else ""))
    assumed = "" if n_items is not None else " (assumed)"
    return f"for {n}{assumed} items of common kinds it would decide: " + "; ".join(decided)


def gil_matters(
    m: Measurement, options: Options, n_items: int | None, env: Environment | None = None
) -> bool:
    """Whether learning if ``fn`` holds the GIL could change the plan (worth sampling for).

    It often cannot: calls too cheap for any parallelism, or processes within reach of even
    GIL-free threads, get the same plan either way, and the probe saves the items it would cost.
    """
    env = env or Environment.current(options.max_cpus)
    held = replace(m, releases_gil=False, gil_held=1.0)
    free = replace(m, releases_gil=True, gil_held=0.0)
    requested = options.max_workers
    if_held = _decide(held, env, n_items, requested)[0]
    if _decide(free, env, n_items, requested)[0] == if_held:
        return False
    if if_held != "process":
        return True
    # Processes run GIL-free code about as well as threads: sample only if they would lose
    # clearly to threads on a GIL-free function (large arguments to pickle, say).
    n = n_items if n_items is not None else ASSUMED_ITEMS
    threads = requested or thread_workers(free, env, n)
    procs = requested or process_workers(free, env, n)
    thread_t = thread_time(free, env, n, threads, parallel_cpu=True)
    return process_time(free, env, n, procs) > thread_t * PREFER_THREADS


def _decide(
    m: Measurement, env: Environment, n_items: int | None, requested: int | None
) -> tuple[BackendName, int, list[str]]:
    """Pick the backend whose estimated time is lowest, with a margin in favour of serial."""
    n = n_items if n_items is not None else ASSUMED_ITEMS
    gil = "releases the GIL" if m.releases_gil else "holds the GIL"
    if m.releases_gil is None:  # (say what the thread estimate assumes instead)
        gil = "GIL release not measured" + (
            ": threads are estimated as if it holds the GIL"
            if env.gil_enabled and m.cpu_fraction >= 0.5
            else ""
        )
    why = [
        f"probe: {m.call_seconds * 1e3:.3g} ms a call, {m.cpu_fraction:.0%} CPU, {gil}"
        + (f" ({m.doubt})" if m.doubt else "")
    ]
    if m.first_call_seconds is not None:
        why.append(
            f"the first call took {fmt_seconds(m.first_call_seconds)}, far above the calls "
            "after it: a one-time cost (an import, a cache filled), left out of the estimate"
        )
    parallel_cpu = bool(m.releases_gil) or not env.gil_enabled
    if not env.gil_enabled:
        why.append("free-threaded interpreter: threads run Python code in parallel")
    threads = requested or thread_workers(m, env, n, parallel_cpu)
    procs = requested or process_workers(m, env, n)
    if m.crowding > 0.0 or m.other_groups:
        why.append(
            f"also wanting the {env.cores} cores: {described(m.crowding, m.other_groups)}; "
            "estimates count "
            f"{effective_cores(m, env, procs):.2g} cores' worth for {procs} workers, "
            f"{effective_cores(m, env, 1):.2g} for one"
        )
    serial_t = serial_time(m, env, n)
    thread_t = thread_time(m, env, n, threads, parallel_cpu)
    process_t = process_time(m, env, n, procs) if env.cores > 1 else math.inf
    # Subinterpreters: only on Python 3.14+, only for functions that load there, and only
    # where they beat processes (below).
    interp_ok = env.interpreters and env.cores > 1 and m.runs_in_interpreter is not False
    interp_t = interpreter_time(m, env, n, procs) if interp_ok else math.inf
    if m.picklable is False:
        if min(process_t, interp_t) < min(thread_t, serial_t * MARGIN):
            why.append(
                "WARNING: processes would be fastest, but the function, its items or its "
                "results cannot be pickled, so this runs on threads (make it picklable, e.g. a "
                "module-level function without locks or open files in its closure)"
            )
            return "thread", threads, why
        process_t = interp_t = math.inf
    why.append(
        f"estimated for {n}{'' if n_items is not None else ' (assumed)'} items: serial "
        f"{fmt_seconds(serial_t)}, threads x{threads} {fmt_seconds(thread_t)}, processes x{procs} "
        f"{fmt_seconds(process_t)}"
        + (f", interpreters x{procs} {fmt_seconds(interp_t)}" if interp_ok else "")
    )
    best_parallel = min(thread_t, process_t, interp_t)
    if best_parallel > serial_t * MARGIN or serial_t - best_parallel < MIN_SAVING_SECONDS:
        if env.cores == 1 and m.cpu_fraction >= 0.5:
            why.append("one usable core: CPU work runs serially")
        else:
            why.append("dispatch would cost about as much as it saves: serial")
        return "serial", 1, why
    if thread_t <= min(process_t, interp_t) * PREFER_THREADS:
        why.append("threads: fastest estimate, and nothing needs pickling")
        return "thread", threads, why
    if interp_t < process_t:
        why.append("interpreters: faster than processes (no process to start)")
        return "interpreter", procs, why
    why.append("processes: fastest estimate")
    return "process", procs, why


def _workers(backend: BackendName, hint: Hint | None, env: Environment) -> int:
    if backend == "serial":
        return 1
    if backend == "thread" and hint != "cpu":
        return DEFAULT_IO_WORKERS
    return env.cores
