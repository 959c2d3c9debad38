"""Hypothesis strategies for smartpool's options, completion orders and faults.

Each function builds a new strategy from immutable parts (nothing is shared or cached between
calls), so strategies can be built and drawn from in several threads at once. Importing this
module imports hypothesis (a test dependency: ``pip install smartpool[test]``).

Example:
    >>> from hypothesis import given
    >>> import smartpool
    >>> from smartpool.testing import strategies
    >>> @given(strategies.options(backends=["serial", "thread"]))
    ... def test_abs(options):  # options may say ordered=False: compare as sets
    ...     assert sorted(smartpool.parallel_map(abs, [-1, 2], **options)) == [1, 2]
    >>> test_abs()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from ._scheduled import Fault

#: The backends every smartpool installation has.
BACKENDS = ("serial", "thread", "process")


def backends(*, parallel: bool = False) -> st.SearchStrategy[str]:
    """Names of the built-in backends ("serial", "thread", "process"); only the last two with
    ``parallel=True``. Shrinks towards "serial" (or "thread").

    Example:
        >>> from smartpool.testing import strategies
        >>> strategies.backends(parallel=True)
        sampled_from(['thread', 'process'])
    """
    return st.sampled_from(list(BACKENDS[1:] if parallel else BACKENDS))


def chunksizes(max_size: int = 64) -> st.SearchStrategy[int | None]:
    """``chunksize=`` values: None (sized by smartpool) or 1 to ``max_size``.

    Example:
        >>> from smartpool.testing import strategies
        >>> strategies.chunksizes(8)
        one_of(none(), integers(min_value=1, max_value=8))
    """
    return st.none() | st.integers(1, max_size)


def worker_counts(max_workers: int = 4) -> st.SearchStrategy[int | None]:
    """``max_workers=`` values: None (chosen by smartpool) or 1 to ``max_workers``.

    Example:
        >>> from smartpool.testing import strategies
        >>> strategies.worker_counts(2)
        one_of(none(), integers(min_value=1, max_value=2))
    """
    return st.none() | st.integers(1, max_workers)


def options(
    *,
    backends: Sequence[str] = ("auto", *BACKENDS),
    max_chunksize: int = 64,
    max_workers: int = 4,
    timeouts: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword options for ``parallel_map``/``imap`` that smartpool accepts together: a
    ``timeout`` only with a backend that can enforce it (not "serial") and ``chunksize`` None
    or 1; ``retries`` with a ``retry_on``. Pass ``backends=()`` to leave ``backend`` out.

    Timeouts are long (60 to 600 s): they are there to take the timeout code paths, not to fire.

    Example:
        >>> from hypothesis import given
        >>> import smartpool
        >>> from smartpool.testing import strategies
        >>> @given(strategies.options(backends=["thread"]))
        ... def test_options_are_valid(options):
        ...     smartpool.explain(abs, **options)
        >>> test_options_are_valid()
    """
    return st.builds(
        _combine,
        backend=st.sampled_from(list(backends)) if backends else st.none(),
        max_workers=worker_counts(max_workers),
        chunksize=chunksizes(max_chunksize),
        ordered=st.booleans(),
        timeout=st.none() | st.floats(60, 600) if timeouts else st.none(),
        retries=st.integers(0, 2),
        retry_on=st.sampled_from([Exception, ValueError, (OSError, TimeoutError)]),
    )


def _combine(
    backend: str | None,
    max_workers: int | None,
    chunksize: int | None,
    ordered: bool,
    timeout: float | None,
    retries: int,
    retry_on: Any,
) -> dict[str, Any]:
    drawn: dict[str, Any] = {"ordered": ordered}
    if backend is not None:
        drawn["backend"] = backend
    if max_workers is not None:
        drawn["max_workers"] = max_workers
    if timeout is not None and backend != "serial":
        drawn["timeout"] = timeout
        chunksize = None if chunksize is None else 1
    if chunksize is not None:
        drawn["chunksize"] = chunksize
    if retries:
        drawn["retries"] = retries
        drawn["retry_on"] = retry_on
    return drawn


def completion_orders(n: int) -> st.SearchStrategy[list[int]]:
    """Orders in which ``n`` items may complete (permutations of ``range(n)``), for
    ``scheduled(order=...)``; shrinks towards input order.

    Example:
        >>> from hypothesis import given
        >>> import smartpool
        >>> from smartpool.testing import scheduled, strategies
        >>> @given(strategies.completion_orders(3))
        ... def test_sum_ignores_order(order):
        ...     with scheduled(order=order):
        ...         assert sum(smartpool.imap(abs, [1, 2, 3], ordered=False)) == 6
        >>> test_sum_ignores_order()
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    return st.permutations(list(range(n)))


def fault_plans(
    n: int,
    *,
    kinds: Sequence[str] = ("crash", "timeout", "raise"),
    exception: type[Exception] = ValueError,
    max_faults: int | None = None,
) -> st.SearchStrategy[dict[int, Fault]]:
    """``faults=`` for ``scheduled()`` over ``n`` items: some items (at most ``max_faults``)
    crash, time out, or raise ``exception("fault at item i")``. Shrinks towards no fault.

    Example:
        >>> from hypothesis import given
        >>> import smartpool
        >>> from smartpool.testing import scheduled, strategies
        >>> @given(strategies.fault_plans(4))
        ... def test_failures_are_smartpools_or_the_items(faults):
        ...     with scheduled(faults=faults):
        ...         try:
        ...             smartpool.parallel_map(abs, range(4))
        ...         except (smartpool.WorkerCrashedError, smartpool.TaskTimeoutError, ValueError):
        ...             assert faults
        >>> test_failures_are_smartpools_or_the_items()
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    unknown = sorted(set(kinds) - {"crash", "timeout", "raise"})
    if unknown or not kinds:
        raise ValueError(f"kinds must be among 'crash', 'timeout', 'raise', got {list(kinds)}")
    if n == 0:
        return st.just({})
    index = st.integers(0, n - 1)
    return st.dictionaries(index, st.sampled_from(list(kinds)), max_size=max_faults or n).map(
        lambda plan: {i: _fault(kind, i, exception) for i, kind in plan.items()}
    )


def _fault(kind: str, index: int, exception: type[Exception]) -> Fault:
    if kind == "raise":
        return exception(f"fault at item {index}")
    return "crash" if kind == "crash" else "timeout"
