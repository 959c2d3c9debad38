"""The serial backend: chunks run inline in the calling thread when submitted."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from .._work.task import Call, ChunkResult, run_chunk
from . import registry
from .base import InlineBackend

#: A chunk run inline stops after this many times its target duration; the engine queues the
#: rest of its items again, so a cost jump is noticed (and re-planned) within milliseconds.
BUDGET_FACTOR = 5


class SerialBackend(InlineBackend):
    name = "serial"

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
        future.set_result(run_chunk(prepared.fn, items, start, prepared.retry, budget, done))
        return future

    def shutdown(self, wait: bool = True) -> None:
        return None
