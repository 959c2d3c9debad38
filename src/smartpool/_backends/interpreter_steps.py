"""Steps reported in the interpreter backend's interpreters, carried back to the caller.

A function calls ``smartpool.report_progress`` in a subinterpreter; the count crosses back on an
interpreters queue, as ``(key, message)`` pairs, and a thread in the caller hands each count to
the run of the chunk that reported it.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any

_keys = itertools.count(1)


class Steps:
    """The steps functions report (``smartpool.report_progress``) in the pool's interpreters,
    back in the caller: ``queue`` (an interpreters queue) carries ``(key, message)`` pairs, read
    by a thread that hands each count to the reporting chunk's run. A chunk's last pair says it
    is over, so its steps are all counted before its result is handed out (as from a worker
    process, whose steps come on the same pipe before its reply)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._chunks: dict[int, tuple[Future[Any], Callable[[int], None], threading.Event]] = {}
        self._reader = threading.Thread(
            target=self._read, name="smartpool-interpreter-steps", daemon=True
        )
        self._reader.start()

    @contextlib.contextmanager
    def reporting(
        self, future: Future[Any], report: Callable[[int], None]
    ) -> Generator[int, None, None]:
        """Around the call of the chunk whose Future is ``future``: its key, and (after the
        call) a wait for its last steps."""
        key = next(_keys)
        over = threading.Event()
        with self._lock:
            self._chunks[key] = (future, report, over)
        try:
            yield key
            over.wait()  # the interpreter put the chunk's end (after its steps) before it returned
        finally:
            with self._lock:
                self._chunks.pop(key, None)

    def _read(self) -> None:
        from .._process import protocol

        while True:
            key, data = self.queue.get()
            if key == 0:  # closed
                return
            with self._lock:
                entry = self._chunks.get(key)
            if entry is None:
                continue
            future, report, over = entry
            if not data:
                over.set()
            elif not future.done():  # (a timed-out or cancelled chunk's count no more)
                steps = protocol.decode_reply(data)
                assert isinstance(steps, int)
                report(steps)

    def close(self) -> None:
        self.queue.put((0, b""))
