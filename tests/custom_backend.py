"""A backend registered by a test, as a third party would add one: one class, one registration."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, ClassVar

from smartpool._backends.thread import ThreadBackend
from smartpool._work.task import Call, ChunkResult, run_chunk

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


class HeadHeldBackend(ThreadBackend):
    """Threads, but the chunk holding item 0 starts only once released: when ``enough`` other
    chunks were submitted after it (``released_by_progress``), else after ``deadline`` seconds.
    A long first chunk, without timing: what a run submits meanwhile is counted."""

    name = "head-held"
    enough: int | None = None
    deadline = 30.0
    released = threading.Event()
    others = 0  # chunks submitted after item 0's
    others_at_release = -1
    released_by_progress = False
    _lock = threading.Lock()
    _waiters: ClassVar[list[threading.Thread]] = []

    @classmethod
    def reset(cls, enough: int | None, deadline: float) -> None:
        cls.enough, cls.deadline = enough, deadline
        cls.released = threading.Event()
        cls.others, cls.others_at_release, cls.released_by_progress = 0, -1, False

    @classmethod
    def join(cls) -> None:
        for waiter in cls._waiters:
            waiter.join()
        cls._waiters.clear()

    def submit(
        self,
        prepared: Call,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        cls = type(self)
        if start != 0:
            with cls._lock:
                cls.others += 1
                if (
                    cls.enough is not None
                    and cls.others >= cls.enough
                    and not cls.released.is_set()
                ):
                    cls.released_by_progress, cls.others_at_release = True, cls.others
                    cls.released.set()
            return super().submit(prepared, items, start, future)
        future = Future() if future is None else future

        def later() -> None:
            if not cls.released.wait(cls.deadline):
                with cls._lock:
                    cls.others_at_release = cls.others
                    cls.released.set()
            ThreadBackend.submit(self, prepared, items, start, future)

        waiter = threading.Thread(target=later, name="head-held")
        cls._waiters.append(waiter)
        waiter.start()
        return future


class DoneAtOnceBackend(ThreadBackend):
    """Runs each chunk in the caller inside ``submit`` (not registered as inline), so every
    chunk is done by the time the run looks at it; counts the chunks submitted."""

    name = "done-at-once"
    submitted = 0

    def submit(
        self,
        prepared: Call,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        future = Future() if future is None else future
        type(self).submitted += 1
        if future.set_running_or_notify_cancel():
            future.set_result(run_chunk(prepared.fn, items, start))
        return future
