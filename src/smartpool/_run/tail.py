"""The last chunks of an automatic run on worker processes, taken by the caller when no worker
has taken them yet and a round of workers would pass before one did.

Once the input is used up, the caller has nothing left to do but wait for results. When at
least as many chunks still wait for a worker as the run has workers, the last of them would
start only after every worker finished another, then run alone at the end while the other
cores idle (six items of ~70 ms on two cores, a first call: the workers started late, and the
last item began 70 ms after the caller's probe ended). The caller takes that chunk instead,
from the end of the queue, and runs it as the probe ran the first items: the function already
ran here, so nothing changes for it. With fewer waiting, a chunk starts as soon as a worker is
free, and one more in the caller would only share the workers' cores (three processes on two
cores took longer than two workers and the chunk after them: long items, traced, 266 ms
against ~248). A chunk's Future stays pending until a worker takes it (``Claimable``), so each
chunk runs in one place only.

Only where the caller's running a chunk changes nothing the call asked for: a plan made from a
probe (the function already ran in the caller), no ``timeout`` (a chunk here cannot be
stopped), no initializer or ``max_tasks_per_child`` (a worker of its own per item).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from .._options import Options
from .._routing.planner import Plan
from .._work import blas
from .._work.task import Call, ChunkResult, run_chunk, settle

#: Where a chunk the caller took says it ran.
IN_CALLER = "the caller (a last chunk no worker had taken yet)"


class Claimable(Future[ChunkResult]):
    """A chunk's Future that the caller can take (``claim``) while it is pending: a worker
    coming for it later finds it gone, as if it were cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self._claim_lock = threading.Lock()
        self._claimed = False

    def claim(self) -> bool:
        """Take the chunk for the caller: True if no worker had taken it (nor was it
        cancelled); it then runs nowhere else."""
        with self._claim_lock:
            if self._claimed or self.running() or self.done():
                return False
            if not super().set_running_or_notify_cancel():
                return False
            self._claimed = True
            return True

    def set_running_or_notify_cancel(self) -> bool:
        with self._claim_lock:
            if self._claimed:
                return False
            return super().set_running_or_notify_cancel()


class Tail:
    """The chunks of one plan that the caller may still take, the last submitted last."""

    def __init__(self, call: Call, workers: int) -> None:
        self._call, self._workers = call, workers
        self._chunks: deque[tuple[Claimable, Sequence[Any], int]] = deque()

    @classmethod
    def for_plan(cls, plan: Plan, options: Options, call: Call, probed: bool) -> Tail | None:
        """The tail of a run following ``plan`` (``probed``: made from the probe's items), or
        None where the caller takes no chunk."""
        if plan.backend != "process" or not cls.allowed(options, call, probed):
            return None
        return cls(call, plan.max_workers)

    @staticmethod
    def allowed(options: Options, call: Call, probed: bool) -> bool:
        """Whether the caller may take chunks of a run on worker processes (see the module)."""
        return (
            probed
            and options.timeout is None
            and call.setup is None
            and options.initializer is None
            and options.max_tasks_per_child is None
        )

    def future(self, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        """The Future to submit the chunk of ``items`` (from input index ``start``) with."""
        chunks = self._chunks
        while chunks and (chunks[0][0].running() or chunks[0][0].done()):
            chunks.popleft()  # taken (or over): its items are not kept
        future = Claimable()
        chunks.append((future, items, start))
        return future

    def run_one(self) -> bool:
        """Take the last chunk no worker has taken yet and run it here, if at least as many
        wait as the run has workers (see the module); False if none was taken."""
        chunks = self._chunks
        while chunks and (chunks[0][0].running() or chunks[0][0].done()):
            chunks.popleft()  # taken in order: what is left waits for a worker
        if len(chunks) < self._workers:
            return False
        future, items, start = chunks.pop()
        if not future.claim():
            return False  # (taken since: the next call looks again)
        with blas.limited(self._call.inner_threads):
            result = run_chunk(self._call.fn, items, start, self._call.retry)
        if result.error is not None:
            result.worker = IN_CALLER
        settle(future, result)  # (unless the run was cancelled meanwhile)
        return True
