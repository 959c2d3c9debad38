"""The serial backend: chunks run inline in the calling thread when submitted."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

from .._task import ChunkResult, run_chunk
from ._base import Backend, Call


class SerialBackend(Backend):
    name = "serial"

    def submit(self, prepared: Call, items: Sequence[object], start: int) -> Future[ChunkResult]:
        future: Future[ChunkResult] = Future()
        future.set_running_or_notify_cancel()
        future.set_result(run_chunk(prepared.fn, items, start, prepared.retry))
        return future

    def shutdown(self, wait: bool = True) -> None:
        return None
