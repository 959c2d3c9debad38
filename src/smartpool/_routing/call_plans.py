"""Plans for calls submitted one at a time (``Executor.submit``), on top of the planner's rules:
such a call never runs in the caller, and a function not measured yet is learned from its first
calls (see ``learning``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .._options import Options
from . import planner
from .measurement import Measurement


def plan_call(
    fn: Callable[..., Any],
    options: Options,
    *,
    hint: planner.Hint | None,
    measurement: Measurement | None,
    learning: bool,
) -> planner.Plan:
    """The plan for calls of ``fn`` submitted one at a time (``Executor.submit``).

    A hint or a chosen backend decides; else a kept ``measurement`` of ``fn``; else, while
    ``learning``, its first calls run on threads, where they are measured (see ``learning``).
    Such a call never runs in the caller, since ``submit`` returns before it runs: where the
    planner would run the work serially, it runs on threads.
    """
    if measurement is not None and options.backend == "auto" and hint is None:
        plan, _ = planner.plan_measured(fn, options, None, measurement)
    else:
        plan = planner.make_plan(fn, options, hint=hint, n_items=None)
        if learning:
            why = (
                "not measured yet: its first calls run on threads and are timed there; later "
                "calls go where they run best"
            )
            plan = replace(plan, reasons=(why, *plan.reasons))
    if plan.backend == "serial" and options.backend == "auto":
        workers = options.max_workers or planner.DEFAULT_IO_WORKERS
        why = "a submitted call never runs in the caller: threads instead of serial"
        plan = replace(plan, backend="thread", max_workers=workers, reasons=(*plan.reasons, why))
    return plan
