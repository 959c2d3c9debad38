"""In a worker process: the steps a function reports (``smartpool.report_progress``) sent to
the caller while its chunk runs.

Counts are added up and sent at most every ``SEND_INTERVAL_SECONDS`` (the first at once), the
rest just before the chunk's reply, so a function reporting a million steps costs a few
messages. Only chunks whose caller shows progress ask for them (``Chunk.report``).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from .._work.reporting import reporting_to
from . import protocol


class Sink(Protocol):
    """Where steps are written: a worker process's channel to the caller, or a queue."""

    def send_bytes(self, data: bytes, /) -> None: ...


#: Send reported steps at most this often while a chunk runs.
SEND_INTERVAL_SECONDS = 0.05


class StepSender:
    """Context manager around one chunk: ``report_progress`` in it sends steps on ``conn``.

    A thread the function started may still report after the chunk ended: the sender is closed
    by then and drops it, so nothing is written into the middle of the next message. The lock
    keeps two such threads from interleaving their messages.
    """

    def __init__(self, conn: Sink) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._pending = 0
        self._sent = -SEND_INTERVAL_SECONDS  # the first report goes at once
        self._open = True
        self._scope = reporting_to(self)

    def __call__(self, n: int) -> None:
        with self._lock:
            if not self._open:
                return
            self._pending += n
            now = time.monotonic()
            if now - self._sent >= SEND_INTERVAL_SECONDS:
                self._sent = now
                self._send()

    def _send(self) -> None:
        steps, self._pending = self._pending, 0
        try:
            self._conn.send_bytes(protocol.encode_steps(steps))
        except OSError:
            pass  # the caller is gone: the worker notices and exits

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._scope.__exit__()
        with self._lock:
            self._open = False
            if self._pending:
                self._send()
