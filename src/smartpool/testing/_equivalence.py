"""``assert_parallel_equivalent`` and ``assert_order_independent``: same results, however run."""

from __future__ import annotations

import operator
import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import smartpool

from ._state import Outcome, Snapshot, _short, causes, format_causes

#: The backends every equivalence check runs on unless told otherwise.
DEFAULT_BACKENDS = ("serial", "thread", "process")


def assert_parallel_equivalent(
    fn: Callable[[Any], Any],
    items_or_strategy: Iterable[Any] | Any,
    *,
    backends: Sequence[str] | None = None,
    compare: Callable[[Any, Any], object] = operator.eq,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Check that ``smartpool.parallel_map(fn, items)`` gives what a plain loop gives, on each
    backend: equal values (by ``compare``, item by item), or the same exception (type and args)
    as the first item that fails serially.

    ``items_or_strategy`` is a list of items, or a hypothesis strategy of lists of items: then the
    check is a property test, and a failure is shrunk to a minimal list (call it from a plain
    test, not from inside ``@given``). ``backends`` defaults to "serial", "thread" and "process";
    ``options`` are passed to every call (``max_workers``, ``chunksize``...; not ``backend``).

    Raises AssertionError naming the backend, the first differing item and the causes it saw:
    draws from the global random generator, module globals or closure variables written.

    Example:
        >>> from smartpool.testing import assert_parallel_equivalent
        >>> assert_parallel_equivalent(abs, [-2, -1, 0, 1])
        >>> import os
        >>> assert_parallel_equivalent(lambda _: os.getpid(), range(4), backends=["process"])
        Traceback (most recent call last):
        ...
        AssertionError: fn gives different results on the process backend than serially...
    """
    given = dict(options or {})
    if "backend" in given:
        raise TypeError("options must not contain 'backend': pass backends=[...] instead")
    names = tuple(DEFAULT_BACKENDS if backends is None else backends)
    strategies = sys.modules.get("hypothesis.strategies")
    if strategies is not None and isinstance(items_or_strategy, strategies.SearchStrategy):
        _as_property(fn, items_or_strategy, names, compare, given)
    else:
        _check(fn, list(items_or_strategy), names, compare, given)


def _as_property(
    fn: Callable[[Any], Any],
    strategy: Any,
    names: tuple[str, ...],
    compare: Callable[[Any, Any], object],
    given: dict[str, Any],
) -> None:
    from hypothesis import HealthCheck, settings
    from hypothesis import given as given_

    # Pools take milliseconds to answer: no deadline. No example database either: every check
    # shares this inner function, so examples saved for one function would replay on another.
    @settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given_(strategy)
    def equivalent_on_every_backend(items: Iterable[Any]) -> None:
        _check(fn, list(items), names, compare, given)

    equivalent_on_every_backend()


def _run_serially(fn: Callable[[Any], Any], items: list[Any]) -> Outcome:
    values: list[Any] = []
    for item in items:
        outcome = Outcome.of(fn, item)
        if outcome.error is not None:
            return outcome
        values.append(outcome.value)
    return Outcome(values)


def _check(
    fn: Callable[[Any], Any],
    items: list[Any],
    names: tuple[str, ...],
    compare: Callable[[Any, Any], object],
    given: dict[str, Any],
) -> None:
    before = Snapshot(fn)
    expected = _run_serially(fn, items)
    after = Snapshot(fn)
    found = causes(after.changes_since(before), after.random_drawn_since(before))
    for name in names:
        try:
            got = Outcome(smartpool.parallel_map(fn, items, backend=name, **given))  # type: ignore[call-overload]
        except Exception as exc:
            got = Outcome(error=exc)
        difference = _difference(expected, got, compare)
        if difference is not None:
            if isinstance(got.error, smartpool.RemoteError):
                found.append("the exception fn raises cannot be pickled back from a worker")
            if isinstance(got.error, smartpool.SerializationError):
                found.append("fn or an item cannot be sent to a worker process (see above)")
            if name == "process" and not found:
                found.append(
                    "the result depends on the process that computes it (its id, its module "
                    "state, its caches): each worker process is a separate interpreter"
                )
            raise AssertionError(
                f"fn gives different results on the {name} backend than serially, for "
                f"{len(items)} item(s) {_short(items, 200)}:\n{difference}{format_causes(found)}"
            )


def _difference(
    expected: Outcome, got: Outcome, compare: Callable[[Any, Any], object]
) -> str | None:
    """What differs between a serial loop's outcome and a call's, in words; None if nothing."""
    if expected.error is not None or got.error is not None:
        if expected.same_as(got, compare):
            return None
        return f"  serially: {expected}\n  parallel: {got}"
    want, have = list(expected.value), list(got.value)
    if len(want) != len(have):
        return f"  serially: {len(want)} results\n  parallel: {len(have)} results"
    for index, (a, b) in enumerate(zip(want, have, strict=True)):
        if not compare(a, b):
            return f"  first difference at item {index}: serially {_short(a)}, parallel {_short(b)}"
    return None


def assert_order_independent(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    shuffles: int = 3,
    compare: Callable[[Any, Any], object] = operator.eq,
) -> None:
    """Check that each item's result does not depend on the order the items run in.

    ``fn`` runs over the items in input order, in reverse and in ``shuffles`` shuffled orders
    (always the same ones), serially; each item must give the same value (by ``compare``), or
    raise the same exception, every time. Workers run items in an order nobody chooses: a
    function that keeps state between calls (a running total, a cache that changes results)
    gives different answers on different runs.

    Example:
        >>> from smartpool.testing import assert_order_independent
        >>> assert_order_independent(str.upper, ["a", "b", "c"])
        >>> seen = []
        >>> def position(x):
        ...     seen.append(x)
        ...     return len(seen)
        >>> assert_order_independent(position, ["a", "b", "c"])
        Traceback (most recent call last):
        ...
        AssertionError: item 0 gives a different result depending on the order items run in...
    """
    items = list(items)
    indices = list(range(len(items)))
    orders = [indices, indices[::-1]]
    shuffler = random.Random(0)  # the same orders every time: a failure can be reproduced
    for _ in range(shuffles):
        order = indices[:]
        shuffler.shuffle(order)
        orders.append(order)
    before = Snapshot(fn)
    first: dict[int, Outcome] | None = None
    for order in orders:
        outcomes = {i: Outcome.of(fn, items[i]) for i in order}
        if first is None:
            first = outcomes
            continue
        for i in indices:
            if not first[i].same_as(outcomes[i], compare):
                after = Snapshot(fn)
                found = causes(after.changes_since(before), [])
                raise AssertionError(
                    f"item {i} gives a different result depending on the order items run in: "
                    f"{first[i]} when they ran in order {_short(orders[0], 60)}, but "
                    f"{outcomes[i]} in order {_short(order, 60)}" + format_causes(found)
                )
