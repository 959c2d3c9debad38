"""``smartpool.report_progress``: a function tells the progress display about its inner steps.

Where the function runs decides where a report goes: the run that called it installs a reporter
around each item (on the serial and thread backends), and a worker process installs one that
sends the counts to the caller (see ``smartpool._process.step_sender``). Without progress, no
reporter is installed and a report costs one context-variable lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, cast

Reporter = Callable[[int], None]

_reporter: ContextVar[Reporter | None] = ContextVar("smartpool_reporter", default=None)


def report_progress(n: int = 1) -> None:
    """Tell the call's progress display that the running item did ``n`` more steps of its work.

    For long items with inner steps (epochs, pages, files): called inside the function that
    ``parallel_map`` or ``imap`` runs, on any backend (worker processes send the counts to the
    caller, a few times a second at most), it adds to ``ProgressEvent.steps``, which the bars
    and log lines show beside the items done. Outside such a call, or when the call shows no
    progress, it does nothing and costs next to nothing.

    Example:
        >>> import smartpool
        >>> def pages(book: str) -> int:
        ...     for _ in range(3):
        ...         smartpool.report_progress()  # one page read
        ...     return 3
        >>> seen = []
        >>> smartpool.parallel_map(pages, ["a", "b"], backend="thread", progress=seen.append)
        [3, 3]
        >>> seen[-1].steps
        6
    """
    if isinstance(n, bool) or not isinstance(cast(object, n), int):
        raise TypeError(f"report_progress(n) takes an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"report_progress(n) takes n >= 0, got {n}")
    reporter = _reporter.get()
    if reporter is not None and n:
        reporter(n)


class reporting_to:
    """Context manager: ``report_progress`` calls in this context go to ``reporter``."""

    __slots__ = ("_reporter", "_token")

    def __init__(self, reporter: Reporter | None) -> None:
        self._reporter = reporter

    def __enter__(self) -> None:
        self._token = _reporter.set(self._reporter)

    def __exit__(self, *exc: object) -> None:
        _reporter.reset(self._token)


class Reporting:
    """``fn`` with its ``report_progress`` calls going to ``reporter`` (the run's progress)."""

    __slots__ = ("fn", "reporter")

    def __init__(self, fn: Callable[[Any], Any], reporter: Reporter) -> None:
        self.fn, self.reporter = fn, reporter

    def __call__(self, item: Any) -> Any:
        token = _reporter.set(self.reporter)
        try:
            return self.fn(item)
        finally:
            _reporter.reset(token)


#: The wrapper's frame, which tracebacks leave out (they start at the user's function).
REPORTING_CODE = Reporting.__call__.__code__
