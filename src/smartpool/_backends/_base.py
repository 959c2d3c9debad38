"""The one interface every backend implements: prepare a call, submit chunks, get Futures.

A backend knows how to run :func:`smartpool._task.run_chunk` somewhere (inline, on a thread, in a
worker process). It decides nothing: the planner chose it and the engine drives it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ClassVar

from .._task import ChunkResult, RetryPolicy


@dataclass(frozen=True)
class Call:
    """One ``parallel_map``/``imap`` call as the backend sees it."""

    fn: Callable[[Any], Any]
    retry: RetryPolicy
    timeout: float | None
    #: What to pickle for a worker process (a decorated function pickles by reference).
    portable: object = None
    #: True when the items come from a list or tuple made before the call: one object holds the
    #: same contents for all the items that refer to it (its large buffers can be sent once).
    stored_items: bool = False


class Backend(ABC):
    """A pool of workers of one kind, reused across calls."""

    name: ClassVar[str]
    #: True for a backend that runs a chunk inside ``submit``, under a time budget: the result
    #: may hold fewer values than items (see ``run_chunk``), and the engine requeues the rest.
    runs_inline: ClassVar[bool] = False

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def prepare(self, call: Call) -> object:
        """Ready ``call`` for submission (e.g. pickle the function once); raise before any work."""
        return call

    @abstractmethod
    def submit(self, prepared: Any, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        """Run one chunk whose first item has input index ``start``."""

    def warm_workers(self) -> int:
        """Workers already started and idle or busy: no start-up cost to pay for them."""
        return 0

    def abort(self) -> None:
        """Stop running work as fast as possible (Ctrl-C): kill what can be killed."""
        self.shutdown(wait=False)

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Release the workers; a later submit on a fresh backend starts new ones."""


class InlineBackend(Backend):
    """A backend that runs each chunk in the caller, inside ``submit``."""

    runs_inline = True

    @abstractmethod
    def submit_after(
        self, prepared: Any, items: Sequence[Any], start: int, done: list[Any]
    ) -> Future[ChunkResult]:
        """Like ``submit``, appending the values to ``done``, the results of the items just
        before ``start``, so that two long result lists need not be joined (see ``run_chunk``)."""


def settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> bool:
    """Complete ``future`` unless it is already done (timed out, cancelled); True if it was set."""
    if future.done():
        return False
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except Exception:  # InvalidStateError: another thread settled it first
        return False
    return True
