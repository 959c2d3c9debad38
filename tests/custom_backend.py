"""A backend registered by a test, as a third party would add one: one class, one registration."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from smartpool._backends.thread import ThreadBackend
from smartpool._work.task import Call, ChunkResult

#: (workers, first index, items) of every chunk the backend was given.
submitted: list[tuple[int, int, int]] = []


class RecordingBackend(ThreadBackend):
    """Threads, noting every chunk it runs."""

    name = "recording"

    def __init__(self, workers: int, label: str = "") -> None:
        super().__init__(workers)
        self.label = label

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {"label": "default"}

    def submit(
        self,
        prepared: Call,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        submitted.append((self.workers, start, len(items)))
        return super().submit(prepared, items, start, future)
