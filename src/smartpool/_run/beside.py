"""The worker processes a run lends its probe, and how the run joins what ran there to what ran
in the caller.

While the probe times a long first item in the caller, further items run on worker processes
(see ``_routing.beside``, which decides when; this module is the run's side: the lease, the
pickled function, the chunks in flight). Every chunk sent is listed with the run at once, so a
cancel, an error or Ctrl-C stops it like any other. Once the probe is done, the caller's values
are listed among them as settled chunks, in input order, and the run goes on from there.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from .. import _config
from .._backends import registry
from .._backends.base import Backend
from .._errors import SerializationError
from .._options import Options
from .._routing import planner
from .._routing.cost import cpu_count
from .._routing.probe import ProbeRun
from .._work.task import Call, ChunkResult
from .flight import Entry, with_note
from .inner import InnerThreads

#: Where the caller's own chunks say they ran.
IN_CALLER = "the caller (probe)"


class Processes:
    """Worker processes for the items a probe sends elsewhere (``_routing.beside.Elsewhere``):
    the pool a plan on processes would use (so its workers stay the same), leased on the first
    send and held by the run until it ends."""

    def __init__(
        self,
        fn: Callable[..., Any],
        call: Call,
        options: Options,
        listed: Callable[[Entry], None],
        adopt: Callable[[registry.Lease], bool],
    ) -> None:
        """``listed`` lists a chunk sent with the run; ``adopt`` hands the run a lease to hold
        (False: the run has ended, and the lease was let go)."""
        self._fn, self._call, self._options = fn, call, options
        self._listed, self._adopt = listed, adopt
        self.workers = self.slots = 0  # known once ready
        self.backend: Backend | None = None
        self._prepared: object = None
        self._sent_call: Call | None = None
        self._may_start = False  # get_ready: the pool may start its workers from the sender

    @classmethod
    def for_run(
        cls,
        fn: Callable[..., Any],
        call: Call,
        options: Options,
        listed: Callable[[Entry], None],
        adopt: Callable[[registry.Lease], bool],
    ) -> Processes | None:
        """The run's processes, or None when work for processes goes to an attached Dask
        cluster. (Nothing is leased unless items are sent: most probes send none.)"""
        return None if _config.cluster() is not None else cls(fn, call, options, listed, adopt)

    def caller_threads(self) -> int | None:
        """The BLAS threads the caller keeps while the probe may send items beside its own: its
        share of the cores, as each worker process has (None: nothing can be sent, no limit).

        Unlimited, the caller's BLAS pool would take every core while the workers compute on
        them too: scikit-learn fits probed that way ran twice as long as on loky's workers."""
        cores, workers = self._beside_caller()
        if workers < 2 or registry.warm_workers("process") == 0:
            return None
        return max(1, cores // workers)

    def _beside_caller(self) -> tuple[int, int]:
        """The usable cores, and how many of them the caller and the workers may use at once."""
        cores = cpu_count(self._options.max_cpus)
        return cores, min(self._options.max_workers or cores, cores)

    def get_ready(self) -> bool:
        """In the caller, between the probe's first and second items, while its other threads
        wait: let the sender start worker processes if none runs yet (the fork server forked
        now, the process machinery imported here rather than on the sending thread, where it
        would hold the GIL while the caller's item is timed)."""
        if self._beside_caller()[1] < 2:
            return False
        self._may_start = registry.warm_workers("process") > 0 or registry.get_ready("process")
        return self._may_start

    def ready(self) -> bool:
        """Lease the pool and pickle the function, on the probe's sending thread. False if no
        core is usable beside the caller's (or ``max_workers=1``), or no worker process runs
        yet and ``get_ready`` did not make starting them cheap: the first one started here,
        while the caller runs the item, would have the fork server started as a fresh
        interpreter rather than forked from the caller (see ``_process.forkserver``), for good;
        the run starts it as usual."""
        cores = cpu_count(self._options.max_cpus)
        self.workers = min(
            self._options.max_workers or cores, planner.MAX_PROCESSES_PER_CORE * cores
        )
        self.slots = min(cores, self.workers) - 1
        if self.slots < 1 or (registry.warm_workers("process") == 0 and not self._may_start):
            return False
        lease = registry.lease("process", self.workers, setup=self._call.setup)
        if not self._adopt(lease):
            return False
        on_processes = replace(self._options, backend="process", max_workers=self.workers)
        plan = planner.make_plan(self._fn, on_processes, hint=None, n_items=None)
        call = InnerThreads.call_for(self._call, plan)
        try:
            self._prepared = lease.backend.prepare(call)
        except SerializationError:  # the plan finds that out, and says so
            return False
        self.backend, self._sent_call = lease.backend, call
        return True

    def send(self, items: Sequence[Any], start: int) -> Future[ChunkResult]:
        assert self.backend is not None
        future: Future[ChunkResult] = Future()
        self.backend.submit(self._prepared, items, start, future)  # raises before any work
        # (Listed as a chunk of no item to learn from: the probe measured the calls, and an
        # item's time here may hold the worker's own first-call cost.)
        self._listed(Entry(start, 0, future, self.backend))
        return future

    def prepared_for(self, backend: Backend, call: Call) -> object:
        """The function as pickled for ``backend``, if it is the pool items were sent to and
        ``call`` the same; else None."""
        if backend is self.backend and call == self._sent_call:
            return self._prepared
        return None

    def reason(self, probe: ProbeRun) -> str:
        """What happened, for the plan's reasons."""
        sent = len(probe.sent)
        return (
            f"while the probe timed items in the caller (the first a long one, holding the GIL), "
            f"{sent} more item{'s' * (sent > 1)} ran on {self.workers} worker processes meanwhile: "
            "their results are kept"
        )

    def join(
        self, probe: ProbeRun, pending: deque[Entry], lock: threading.Lock
    ) -> Iterator[list[Any]]:
        """List the caller's values of ``probe`` among the chunks it sent (``pending``, guarded
        by ``lock``) as settled chunks, in input order. If an item failed in the caller, hand
        out the values before it and raise its error instead."""
        assert self.backend is not None
        entries = joined(probe, self.backend)
        if probe.failed is not None:
            yield from up_to_failure([*entries, *pending], probe.failed)
        with lock:
            entries.extend(pending)
            pending.clear()
            pending.extend(sorted(entries, key=lambda e: e.start))


def joined(probe: ProbeRun, backend: Backend) -> list[Entry]:
    """The caller's values of ``probe`` as settled chunks (of no item to learn from)."""
    entries: list[Entry] = []
    at = 0
    for start, count in probe.segments:
        future: Future[ChunkResult] = Future()
        future.set_result(ChunkResult(start, probe.values[at : at + count], None, 0.0, IN_CALLER))
        entries.append(Entry(start, 0, future, backend))
        at += count
    return entries


def up_to_failure(entries: Sequence[Entry], failed: ChunkResult) -> Iterator[list[Any]]:
    """The values of ``entries`` (in input order) before the probe's failing item, then its
    error; or the error of an item before it that failed elsewhere."""
    for entry in sorted(entries, key=lambda e: e.start):
        if entry.start >= failed.error_index:
            break
        result = entry.future.result()
        if result.values:
            yield result.values
        if result.error is not None:
            raise with_note(result, entry.backend.name)
    raise with_note(failed, "serial")
