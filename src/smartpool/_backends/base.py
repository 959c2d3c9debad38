"""The one interface every backend implements: prepare a call, submit chunks, get Futures.

A backend knows how to run :func:`smartpool._work.task.run_chunk` somewhere (inline, on a
thread, in a worker process). It decides nothing: the planner chose it and a run drives it. What
the planner and the run need to know about a backend are its :class:`BackendTraits`, plain data
kept by the registry, so that neither imports a backend to reason about it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any, ClassVar

from .._work.setup import WorkerSetup
from .._work.task import Call, ChunkResult, settle


@dataclass(frozen=True)
class BackendTraits:
    """What a backend is like, as far as planning and running a call are concerned."""

    #: Chunks run in the caller, inside ``submit``, under a time budget (see ``InlineBackend``).
    runs_inline: bool
    #: Running work can be stopped: per-item timeouts are enforced and a cancelled run's chunks
    #: are stopped (worker processes are killed and replaced). Otherwise running work is abandoned.
    can_kill: bool
    #: The function, items and results cross a process boundary (they must pickle).
    needs_pickling: bool
    #: Work per chunk the adaptive sizer aims at: long enough to hide the cost of a round trip.
    chunk_seconds: float
    #: Chunks kept in flight per worker, so that a worker never waits for the next one.
    window_per_worker: int = 2
    #: Chunks complete only when the caller waits on their Futures (``smartpool.testing``'s
    #: scheduled backend): a run then waits through the Futures themselves, not through its
    #: own (cheaper) count of completed chunks.
    completes_when_waited: bool = False


class Backend(ABC):
    """A pool of workers of one kind, reused across calls through leases (see ``registry``)."""

    name: ClassVar[str]

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def prepare(self, call: Call) -> object:
        """Ready ``call`` for submission (e.g. pickle the function once); raise before any work."""
        return call

    @abstractmethod
    def submit(
        self,
        prepared: Any,
        items: Sequence[Any],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        """Run one chunk whose first item has input index ``start``; complete ``future`` (a new
        one if None) with its :class:`ChunkResult`, and return it.

        The Future stays PENDING until a worker takes the chunk, which calls its
        ``set_running_or_notify_cancel()`` (and skips the chunk if that returns False): a caller
        may pass a subclass that learns then that its work started.
        """

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        """Stop the given chunks of a cancelled run: those not started never start; running ones
        are stopped where the backend can kill (``can_kill``), else abandoned; each ends
        cancelled or failed with :class:`concurrent.futures.CancelledError`."""
        for future in futures:
            if not future.cancel():
                settle(future, error=CancelledError())

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        """Construction arguments taken from the configuration when a lease gives none."""
        return {}

    @classmethod
    def worker_setup(cls, setup: WorkerSetup) -> WorkerSetup | None:
        """The part of ``setup`` this backend's pools use (None: nothing, so they need no
        setting of their own): the initializer, which every kind of worker runs."""
        return setup if setup.initializer is not None else None

    @classmethod
    def get_ready(cls, settings: dict[str, Any]) -> bool:
        """Called in the caller while its other threads wait (between a probe's items): start
        what lets a pool of this kind, made with ``settings``, start its workers later from
        another thread at no lasting cost; False if it cannot (then only a pool already running
        is used from another thread)."""
        return False

    @classmethod
    def release_resources(cls) -> None:
        """Free what every pool of this kind shares (a fork server, kept files), at shutdown."""
        return None

    def chunk_limit(self) -> int | None:
        """The most items a chunk may hold on this pool (None: any number)."""
        return None

    def warm_workers(self) -> int:
        """Workers already started and idle or busy: no start-up cost to pay for them."""
        return 0

    @classmethod
    def runs_function(cls, fn: Callable[..., Any]) -> bool:
        """Whether ``fn`` can run on this backend at all, checked before automatic routing picks
        it (the interpreter backend: whether ``fn``'s modules load in a subinterpreter)."""
        return True

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Release the workers; a later submit on a fresh backend starts new ones."""


class InlineBackend(Backend):
    """A backend that runs each chunk in the caller, inside ``submit``."""

    @abstractmethod
    def submit_after(
        self, prepared: Any, items: Sequence[Any], start: int, done: list[Any]
    ) -> Future[ChunkResult]:
        """Like ``submit``, appending the values to ``done``, the results of the items just
        before ``start``, so that two long result lists need not be joined (see ``run_chunk``)."""
