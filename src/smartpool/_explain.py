"""``smartpool.explain``: the plan a call would follow, and why, without running the job."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ._api import hint_of, raw_function, resolve_options
from ._routing import planner
from ._routing.memory import recall, remember
from ._routing.planner import Plan
from ._routing.probe import probe_items
from ._run import steering
from ._run.flight import with_note
from ._work.feed import Feed, length_of
from ._work.task import Call

logger = logging.getLogger("smartpool")

#: ``explain`` runs the function on at most this many items of the iterable it is given.
EXPLAIN_MAX_ITEMS = 1000


def explain(fn: Callable[..., Any], iterable: Iterable[Any] | None = None, **options: Any) -> Plan:
    """The plan ``parallel_map(fn, iterable, **options)`` would follow, without running the job.

    For an automatic call with no kept decision, the function is probed on the first few items
    of ``iterable`` (at most 1000; pass a list, since a generator would lose them), and the
    decision is kept for the real call. Without ``iterable`` nothing runs, and the plan shows
    what is known so far.

    Example:
        >>> import smartpool
        >>> smartpool.explain(str.upper, ["a", "b"], backend="thread").backend
        'thread'
    """
    opts = resolve_options(fn, options)
    n_items = None if iterable is None else length_of(iterable)
    hint = hint_of(fn)
    measurement = None
    if planner.needs_probe(opts, hint, n_items):
        measurement = recall(fn)
        if measurement is None and iterable is not None:
            feed = Feed(iterable)
            raw = raw_function(fn)
            # On a worker of an attached Dask cluster, as parallel_map would (None: no cluster).
            probe = steering.on_cluster(Call(raw, portable=fn), feed, opts) or probe_items(
                raw,
                feed,
                max_items=EXPLAIN_MAX_ITEMS,
                gil_matters=lambda m: planner.gil_matters(m, opts, n_items),
            )
            if probe.failed is not None:
                raise with_note(probe.failed, "serial")
            measurement = probe.measurement
            remember(fn, measurement)
    if measurement is not None:
        plan, _ = planner.plan_measured(fn, opts, n_items, measurement)
    else:
        plan = planner.make_plan(fn, opts, hint=hint, n_items=n_items)
        if planner.needs_probe(opts, hint, n_items):  # no items were given to measure
            why = (
                "not measured yet: parallel_map and imap will first time a few items in the "
                "caller and decide from them (pass items to explain() to see that decision); "
                f"{planner.typical_plans(opts, n_items)}; "
                "without a measurement (submit(), timeout=) the plan is this one"
            )
            plan = replace(plan, reasons=(why, *plan.reasons))
    logger.debug("explain %s: %s", getattr(fn, "__qualname__", fn), plan)
    return plan
