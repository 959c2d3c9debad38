"""The serial backend: chunks run inline in the calling thread when submitted."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from .._work.setup import WorkerSetup, WorkerSlot
from .._work.task import Call, ChunkResult, describe_worker, run_chunk
from . import registry
from .base import InlineBackend

#: A chunk run inline stops after this many times its target duration; the engine queues the
#: rest of its items again, so a cost jump is noticed (and re-planned) within milliseconds.
BUDGET_FACTOR = 5


class SerialBackend(InlineBackend):
    """Runs chunks in the caller, which is then the pool's one worker: with a ``setup``, its
    initializer runs once in the caller, and ``worker_state()`` is this pool's own dict."""

    name = "serial"

    def __init__(self, workers: int, setup: WorkerSetup | None = None) -> None:
        super().__init__(workers)
        self._slot = None if setup is None else WorkerSlot(setup)

    def submit(
        self,
        prepared: Call,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        return self._run(prepared, items, start, None, future)

    def submit_after(
        self, prepared: Call, items: Sequence[object], start: int, done: list[Any]
    ) -> Future[ChunkResult]:
        return self._run(prepared, items, start, done)

    def _run(
        self,
        prepared: Call,
        items: Sequence[object],
        start: int,
        done: list[Any] | None,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        future = Future() if future is None else future
        if not future.set_running_or_notify_cancel():
            return future
        budget = BUDGET_FACTOR * registry.traits(self.name).chunk_seconds
        if self._slot is None:
            future.set_result(run_chunk(prepared.fn, items, start, prepared.retry, budget, done))
            return future
        with self._slot.running() as failed:
            if failed is not None:
                values = [] if done is None else done
                result = ChunkResult(start - len(values), values, failed, 0.0, describe_worker())
            else:
                result = run_chunk(prepared.fn, items, start, prepared.retry, budget, done)
        future.set_result(result)
        return future

    def shutdown(self, wait: bool = True) -> None:
        return None
