"""Measured advice: classify a function, time it on every backend, and say which to use and why.

``smartpool advise`` and ``smartpool demo`` are thin shells around :func:`compare` and
:func:`advise`; the verdict comes from the same planner that ``backend="auto"`` uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import _api
from ._options import BackendChoice
from ._routing import cost, memory
from ._routing.classify import Classification, classify

BACKENDS: tuple[BackendChoice, ...] = ("serial", "thread", "process")
#: How long the serial run of an advice comparison should take, roughly.
COMPARISON_SECONDS = 0.5


def compare(
    fn: Callable[[Any], Any], items: Sequence[Any], backends: Sequence[BackendChoice] = BACKENDS
) -> dict[str, float]:
    """Wall-clock seconds of ``parallel_map(fn, items)`` on each backend (pools warmed first)."""
    seconds: dict[str, float] = {}
    for backend in backends:
        if backend != "serial":  # start-up is not the workload
            _api.parallel_map(fn, items[:2], backend=backend)
        began = time.perf_counter()
        _api.parallel_map(fn, items, backend=backend)
        seconds[backend] = time.perf_counter() - began
    return seconds


@dataclass(frozen=True)
class Advice:
    """What ``smartpool advise`` found."""

    function: str
    classification: Classification
    calls: int
    seconds: dict[str, float]
    picked: str
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
    """Classify ``fn(*args)``, then time many such calls on each backend."""
    classification = classify(fn, *args)
    calls = _calls_for(classification.call_seconds)
    star = _api.StarCall(fn)
    items: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(tuple(args), {})] * calls
    seconds = compare(star, items)
    memory.forget(star)
    plan = _api.explain(star, items)
    return Advice(
        function=name or str(getattr(fn, "__qualname__", None) or repr(fn)),
        classification=classification,
        calls=calls,
        seconds=seconds,
        picked=plan.backend,
        reasons=plan.reasons,
    )


def _calls_for(call_seconds: float) -> int:
    """Enough calls for the serial run to take about COMPARISON_SECONDS (between 8 and 2000)."""
    wanted = COMPARISON_SECONDS / max(call_seconds, 1e-6)
    cores = cost.cpu_count()
    return int(min(2000, max(8, 4 * cores, math.ceil(wanted))))
