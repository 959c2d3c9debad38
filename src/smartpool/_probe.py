"""Measuring a function on real items: how long a call takes, how much of it is CPU, and whether
two calls at once run in parallel on threads (i.e. whether the function lets go of the GIL).

The probe runs in the caller on the first items of the job and keeps their results, so no item is
computed twice and side effects happen once per item. It stops early: a few items or a few
milliseconds, whichever comes later, within a hard time budget.
"""

from __future__ import annotations

import itertools
import pickle
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._errors import SerializationError
from ._serialize import dump_function, dumps
from ._task import ChunkResult, run_chunk

#: The sequential phase stops once it has this many items and this much time...
MIN_ITEMS = 2
MIN_SECONDS = 0.002
#: ...or at this much time, whatever the item count.
MAX_SECONDS = 0.02
#: Pair timings (two calls at once / one call) below this mean the calls ran in parallel.
PARALLEL_RATIO = 1.4
#: ... and above this, that one waited for the other (the GIL was held).
SERIAL_RATIO = 1.7
#: Calls shorter than this are not timed in pairs: thread start-up would drown the signal.
MIN_PAIR_SECONDS = 0.0005
#: Calls that mostly wait are not timed in pairs: the GIL does not matter to them.
MIN_PAIR_CPU = 0.3


@dataclass(frozen=True)
class Measurement:
    """What a probe saw of a function, in the units the planner reasons with."""

    #: Mean wall-clock seconds per call.
    call_seconds: float
    #: CPU time of the calling thread / wall time, in [0, 1]: 1 computes, 0 waits.
    cpu_fraction: float
    #: Whether two calls at once ran in parallel on threads; None when not measured.
    releases_gil: bool | None
    #: Whether the function and sample items and results pickle; None when not checked.
    picklable: bool | None
    #: Caller-side seconds per item to pickle it and its result for a worker process.
    transfer_seconds: float
    #: How many calls were timed.
    samples: int
    #: Why the measurement may be off, or None.
    doubt: str | None = None
    #: Two calls at once on two threads, as a speed-up over one after the other (1 = none, 2 =
    #: perfect); None when not measured. Tells how far threads scale, GIL or memory bandwidth aside.
    pair_speedup: float | None = None


@dataclass
class ProbeRun:
    """The probe's outcome on a job: the values it computed, in order, and what it measured."""

    values: list[Any]
    measurement: Measurement
    #: The chunk holding the first error, if an item failed during the probe.
    failed: ChunkResult | None = None
    #: True when the probe ran every item there was.
    exhausted: bool = False
    #: Items taken from the source but not run, to be run first by the plan.
    rest: list[Any] = field(default_factory=list)


def probe_items(
    fn: Callable[[Any], Any], source: Iterator[Any], *, max_items: int | None = None
) -> ProbeRun:
    """Run the first items of ``source`` in the caller, timing them; then time a pair at once.

    Items the probe took from ``source`` but did not run come back in ``ProbeRun.rest``.
    ``max_items`` bounds how many items run (for a dry run such as ``explain``).
    """
    if max_items is not None:
        source = itertools.islice(source, max_items)
    values: list[Any] = []
    wall = cpu = 0.0
    batch, exhausted = 1, False
    sample_items: list[Any] = []
    rest: list[Any] = []
    began = time.perf_counter()
    while True:
        items = list(itertools.islice(source, batch))
        if not items:
            exhausted = True
            break
        waits_before = _voluntary_switches()
        budget = max(MAX_SECONDS - (time.perf_counter() - began), 0.0)
        result = run_chunk(fn, items, len(values), budget=budget)
        values.extend(result.values)
        # Wall time beyond CPU time is waiting only if the thread gave up the CPU itself; time
        # lost to preemption (a busy machine) must not make CPU work look like I/O.
        waited = _voluntary_switches() != waits_before
        wall += result.seconds if waited else result.cpu_seconds
        cpu += result.cpu_seconds
        if len(sample_items) < 16:
            sample_items.extend(items[: 16 - len(sample_items)])
        if result.error is not None:
            return _failed(values, result, wall, cpu)
        rest = items[len(result.values) :]
        elapsed = time.perf_counter() - began
        if rest or (len(values) >= MIN_ITEMS and elapsed >= MIN_SECONDS) or elapsed >= MAX_SECONDS:
            break
        batch = min(batch * 2, 1 << 16)
    timed = len(values)
    call_seconds = wall / max(timed, 1)
    releases_gil: bool | None = None
    doubt: str | None = None
    pair_speedup: float | None = None
    if not exhausted and call_seconds >= MIN_PAIR_SECONDS and cpu >= MIN_PAIR_CPU * wall:
        pair = rest[:2] + list(itertools.islice(source, max(0, 2 - len(rest))))
        rest = rest[2:]
        if len(pair) == 2:
            timing = _time_pair(fn, pair, len(values))
            values.extend(timing.values)
            if timing.result.error is not None:
                return _failed(values, timing.result, wall, cpu)
            releases_gil, doubt = _judge_pair(timing, call_seconds)
            pair_speedup = 2 * call_seconds / max(timing.seconds, 1e-9)
        else:
            exhausted, rest = True, pair  # a single item left: the plan runs it
    picklable, transfer = _pickling_cost(sample_items, values[: len(sample_items)])
    measurement = Measurement(
        call_seconds=call_seconds,
        cpu_fraction=min(1.0, cpu / wall) if wall > 0 else 1.0,
        releases_gil=releases_gil,
        picklable=picklable,
        transfer_seconds=transfer,
        samples=timed,
        doubt=doubt,
        pair_speedup=pair_speedup,
    )
    return ProbeRun(values, measurement, None, exhausted and not rest, rest)


def measure_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], budget: float
) -> Measurement:
    """Time ``fn(*args, **kwargs)`` repeatedly within ``budget`` seconds (for ``classify``)."""

    def call(_: object) -> Any:
        return fn(*args, **kwargs)

    deadline = time.perf_counter() + budget
    wall = cpu = 0.0
    count = 0
    while count < 3 or (wall < 0.01 and time.perf_counter() < deadline):
        result = run_chunk(call, [None], count)
        if result.error is not None:
            raise result.error
        wall, cpu, count = wall + result.seconds, cpu + result.cpu_seconds, count + 1
        if time.perf_counter() >= deadline:
            break
    call_seconds = wall / count
    releases_gil: bool | None = None
    doubt: str | None = None
    if call_seconds >= MIN_PAIR_SECONDS and time.perf_counter() + 2 * call_seconds <= deadline:
        pair = _time_pair(call, [None, None], count)
        if pair.error is not None:
            raise pair.error
        releases_gil, doubt = _judge_pair(pair, call_seconds)
    elif call_seconds >= MIN_PAIR_SECONDS:
        doubt = "the time budget allowed no concurrent run, so GIL release was not measured"
    picklable, transfer = _pickling_cost([(args, kwargs)], [])
    if picklable is not False:
        try:
            dump_function(fn)
            picklable = True
        except SerializationError:
            picklable = False
    return Measurement(
        call_seconds=call_seconds,
        cpu_fraction=min(1.0, cpu / wall) if wall > 0 else 1.0,
        releases_gil=releases_gil,
        picklable=picklable,
        transfer_seconds=transfer,
        samples=count,
        doubt=doubt,
    )


@dataclass
class _Pair:
    result: ChunkResult
    values: list[Any]
    seconds: float
    #: Times the two threads blocked (waiting for the GIL shows up here; waiting for a core of a
    #: busy machine does not).
    blocked: int

    @property
    def error(self) -> BaseException | None:
        return self.result.error


def _time_pair(fn: Callable[[Any], Any], pair: list[Any], start: int) -> _Pair:
    """Run two items at once: one on a helper thread, one here; return the wall time of both."""
    ready = threading.Barrier(2)
    box: list[ChunkResult] = []
    blocked = [0, 0]

    def other() -> None:
        ready.wait()
        before = _voluntary_switches()
        box.append(run_chunk(fn, pair[1:], start + 1))
        blocked[1] = _voluntary_switches() - before

    helper = threading.Thread(target=other, name="smartpool-probe", daemon=True)
    helper.start()
    ready.wait()
    began = time.perf_counter()
    before = _voluntary_switches()
    first = run_chunk(fn, pair[:1], start)
    blocked[0] = _voluntary_switches() - before
    helper.join()
    seconds = time.perf_counter() - began
    second = box[0]
    values = first.values + (second.values if first.error is None else [])
    failed = first if first.error is not None else second
    return _Pair(failed, values, seconds, sum(blocked))


def _voluntary_switches() -> int:
    """Times this thread blocked (I/O, sleep, locks) so far; -1 where the OS cannot tell."""
    try:
        return resource.getrusage(_RUSAGE_THREAD).ru_nvcsw
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return -1


_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def _judge_pair(pair: _Pair, call_seconds: float) -> tuple[bool | None, str | None]:
    """Did the two calls run in parallel? Wall time says so on an idle machine; on a busy one,
    whether the threads blocked (for the GIL) tells it from merely waiting for a free core."""
    ratio = pair.seconds / max(call_seconds, 1e-9)
    if ratio <= PARALLEL_RATIO:
        return True, None
    if ratio >= SERIAL_RATIO:
        if pair.blocked == 0:
            return True, (
                f"two calls at once took {ratio:.2f}x one call, but neither thread ever waited "
                "for the GIL: the machine is busy"
            )
        return False, None
    return ratio < (PARALLEL_RATIO + SERIAL_RATIO) / 2, (
        f"two calls at once took {ratio:.2f}x one call: between parallel and serial, "
        "so whether the GIL is released is uncertain"
    )


def _failed(values: list[Any], result: ChunkResult, wall: float, cpu: float) -> ProbeRun:
    measurement = Measurement(
        call_seconds=wall / max(len(values), 1),
        cpu_fraction=min(1.0, cpu / wall) if wall > 0 else 1.0,
        releases_gil=None,
        picklable=None,
        transfer_seconds=0.0,
        samples=len(values),
    )
    return ProbeRun(values, measurement, result, False)


def _pickling_cost(items: list[Any], results: list[Any]) -> tuple[bool | None, float]:
    """Whether sample items and results pickle, and the caller-side seconds per item to do it.

    Plain pickle is tried first (fast, and no cloudpickle import for work that stays in-process);
    only what it refuses goes through cloudpickle. The function itself is checked when a process
    plan is prepared, so its pickling error surfaces only where it matters.
    """
    began = time.perf_counter()
    try:
        for sample in (items, results):
            try:
                pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                dumps(sample)
    except Exception:
        return False, 0.0
    return None, (time.perf_counter() - began) / max(len(items), 1)
