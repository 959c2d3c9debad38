"""``assert_no_shared_state``: a function run by several threads at once neither races nor
leaves module state behind.

Races are rare on purpose-free runs; this check makes them likely: the threads start together
behind a barrier, the interpreter switches threads every microsecond instead of every 5 ms
(``sys.setswitchinterval``), and every thread runs every item many times, each from another
starting point. Writes to module globals and closure variables are reported even when no result
came out wrong this time: the next run may not be so lucky.
"""

from __future__ import annotations

import operator
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._state import Outcome, Snapshot, _short, causes, format_causes

#: How often the interpreter switches threads while the check runs (seconds).
SWITCH_INTERVAL = 1e-6


def assert_no_shared_state(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    threads: int = 8,
    iterations: int = 20,
    compare: Callable[[Any, Any], object] = operator.eq,
) -> None:
    """Check that ``fn`` gives each item's serial result when ``threads`` threads run all the
    items ``iterations`` times at once, and that doing so changed no module global or closure
    variable that one serial run over the items had left as it was.

    (A cache filled by the serial run is fine; a counter that keeps counting is not.)

    Example:
        >>> from smartpool.testing import assert_no_shared_state
        >>> assert_no_shared_state(str.upper, ["a", "b"])
        >>> calls = [0]
        >>> def counted(x):
        ...     calls[0] += 1  # read-modify-write of shared state
        ...     return x
        >>> assert_no_shared_state(counted, [1, 2])
        Traceback (most recent call last):
        ...
        AssertionError: fn shares state between concurrent calls...
    """
    if threads < 2:
        raise ValueError(f"threads must be at least 2 to run anything at once, got {threads}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    items = list(items)
    expected = [Outcome.of(fn, item) for item in items]
    settled = Snapshot(fn)
    outcomes = _hammer(fn, items, threads, iterations)
    after = Snapshot(fn)
    changed = after.changes_since(settled)
    wrong = [
        (index, outcome)
        for index, outcome in outcomes
        if not expected[index].same_as(outcome, compare)
    ]
    if not wrong and not changed:
        return
    lines = [f"fn shares state between concurrent calls ({threads} threads x {iterations} runs):"]
    if wrong:
        index, outcome = wrong[0]
        lines.append(
            f"  {len(wrong)} result(s) differ from a serial run's; first: item {index} "
            f"{_short(items[index])} gave {outcome}, serially {expected[index]}"
        )
    found = causes(changed, [])
    raise AssertionError("\n".join(lines) + format_causes(found))


def _hammer(
    fn: Callable[[Any], Any], items: list[Any], threads: int, iterations: int
) -> list[tuple[int, Outcome]]:
    """Every (item index, outcome) of ``threads`` threads running every item ``iterations``
    times, started together, switching as often as the interpreter allows."""
    barrier = threading.Barrier(threads, timeout=60)  # a thread that could not start
    results: list[list[tuple[int, Outcome]]] = [[] for _ in range(threads)]
    n = len(items)

    def work(which: int) -> None:
        found = results[which]
        barrier.wait()
        for round_ in range(iterations):
            shift = which + round_
            for k in range(n):
                index = (k + shift) % n
                found.append((index, Outcome.of(fn, items[index])))

    workers = [
        threading.Thread(target=work, args=(i,), name=f"smartpool-testing-race-{i}")
        for i in range(threads)
    ]
    old = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(old)
    return [pair for found in results for pair in found]
