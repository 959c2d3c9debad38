"""Measured advice: classify a function, time it on every backend, and say which to use and why.

``smartpool advise`` and ``smartpool demo`` are thin shells around :func:`compare` and
:func:`advise`. One measurement of the function gives both the classification and the estimate
(from the same planner ``backend="auto"`` uses), so the two cannot tell different stories; the
verdict then follows the times measured on every backend when they and the estimate disagree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import _api, _explain
from ._options import BackendChoice
from ._routing import cost, memory
from ._routing.classify import Classification, from_measurement, measure_call

BACKENDS: tuple[BackendChoice, ...] = ("serial", "thread", "process")
#: How long the serial run of an advice comparison should take, roughly.
COMPARISON_SECONDS = 0.5


def compare(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    backends: Sequence[BackendChoice] = BACKENDS,
    rounds: int = 1,
) -> dict[str, float]:
    """Wall-clock seconds of ``parallel_map(fn, items)`` on each backend (pools warmed first):
    the best of ``rounds`` runs, taken in turn, so a moment of load elsewhere does not decide."""
    seconds: dict[str, float] = {}
    for backend in backends:
        if backend != "serial":  # start-up is not the workload
            _api.parallel_map(fn, items[:2], backend=backend)
    for _ in range(rounds):
        for backend in backends:
            began = time.perf_counter()
            _api.parallel_map(fn, items, backend=backend)
            took = time.perf_counter() - began
            seconds[backend] = min(took, seconds.get(backend, took))
    return seconds


#: Rounds of timing on every backend for an advice (the best of them counts).
ADVICE_ROUNDS = 3
#: The estimate's pick stands while it measured within this factor of the fastest backend;
#: beyond it the verdict follows the measurement.
MEASURED_MARGIN = 1.15


@dataclass(frozen=True)
class Advice:
    """What ``smartpool advise`` found."""

    function: str
    classification: Classification
    calls: int
    #: The best measured wall-clock seconds of ``calls`` calls, per backend.
    seconds: dict[str, float]
    #: The backend the estimate picks (what ``backend="auto"`` decides from this measurement).
    picked: str
    #: The backend to use: the estimate's pick, unless another measured clearly faster.
    verdict: str
    #: Why: what was measured against what was estimated, then the estimate's reasons.
    reasons: tuple[str, ...]

    @property
    def speedups(self) -> dict[str, float]:
        serial = self.seconds["serial"]
        return {b: serial / t for b, t in self.seconds.items() if t > 0}

    @property
    def fastest(self) -> str:
        return min(self.seconds, key=self.seconds.__getitem__)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(speedups=self.speedups, fastest=self.fastest)
        return data


def advise(fn: Callable[..., Any], args: Sequence[Any], name: str | None = None) -> Advice:
    """Measure ``fn(*args)``, estimate from that measurement, then time many such calls on
    each backend; the verdict is the estimate's pick unless the times measured disagree."""
    measurement = measure_call(fn, tuple(args), {}, budget=0.5)
    classification = from_measurement(measurement)
    calls = _calls_for(classification.call_seconds)
    star = _api.StarCall(fn)
    items: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(tuple(args), {})] * calls
    seconds = compare(star, items, rounds=ADVICE_ROUNDS)
    memory.remember(star, measurement)  # the estimate from the measurement classified above
    try:
        plan = _explain.explain(star, items)
    finally:
        memory.forget(star)
    verdict, measured = _verdict(seconds, plan.backend, calls)
    return Advice(
        function=name or str(getattr(fn, "__qualname__", None) or repr(fn)),
        classification=classification,
        calls=calls,
        seconds=seconds,
        picked=plan.backend,
        verdict=verdict,
        reasons=(measured, *plan.reasons),
    )


def _verdict(seconds: dict[str, float], picked: str, calls: int) -> tuple[str, str]:
    """The backend to use, and the reason that compares what was measured with the estimate."""
    fastest = min(seconds, key=seconds.__getitem__)
    times = ", ".join(f"{b} {seconds[b]:.3f} s" for b in sorted(seconds, key=seconds.__getitem__))
    measured = f"measured for {calls} calls (best of {ADVICE_ROUNDS} rounds): {times}"
    if seconds[picked] <= seconds[fastest] * MEASURED_MARGIN:
        if picked == fastest:
            return picked, f"{measured}: {picked} was fastest, as estimated below"
        return picked, (
            f"{measured}: {picked}, as estimated below, was within "
            f"{MEASURED_MARGIN - 1:.0%} of {fastest}"
        )
    return fastest, (
        f"{measured}: {fastest} was {seconds[picked] / seconds[fastest]:.1f}x faster than "
        f"{picked}, which the estimate below picks: the verdict follows the measurement "
        f"(pass backend={fastest!r}: backend='auto' would decide from an estimate like this one)"
    )


def _calls_for(call_seconds: float) -> int:
    """Enough calls for the serial run to take about COMPARISON_SECONDS (between 8 and 2000)."""
    wanted = COMPARISON_SECONDS / max(call_seconds, 1e-6)
    cores = cost.cpu_count()
    return int(min(2000, max(8, 4 * cores, math.ceil(wanted))))
