"""What a ``progress=`` callable receives: :class:`ProgressEvent`.

A leaf module (it imports nothing of smartpool) so that the options can name the type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """How far a ``parallel_map`` or ``imap`` call got, as ``progress=callable`` is told.

    Items are counted as they complete (even when results come out in input order), each once:
    the items timed before planning are not counted again, and an item retried counts once in
    ``done`` (its failed attempts in ``retried``). The last event has ``finished`` True, also when
    the call failed or was interrupted.

    Example:
        >>> import smartpool
        >>> seen = []
        >>> smartpool.parallel_map(abs, range(-5, 5), backend="thread", progress=seen.append)
        [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        >>> last = seen[-1]
        >>> last.done, last.failed, last.total, last.finished
        (10, 0, 10, True)
    """

    #: Items that ran to a result.
    done: int
    #: Items that failed (after their retries).
    failed: int
    #: Attempts that failed and were run again (``retries=``).
    retried: int
    #: Items in the input, or None when its length is unknown (a generator).
    total: int | None
    #: Seconds since the call started.
    elapsed: float
    #: Seconds left, estimated from the measured cost of the items since the last change of
    #: plan; None while nothing is known (or ``total`` is None).
    eta: float | None
    #: The backend the call runs on now ("serial" while its first items are timed).
    backend: str
    #: Workers of that backend.
    workers: int
    #: Steps the function reported with :func:`smartpool.report_progress`.
    steps: int = 0
    #: True for the last event of a call (done, failed or interrupted).
    finished: bool = False
