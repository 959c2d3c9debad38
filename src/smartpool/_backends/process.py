"""The process backend: chunks run in worker processes; functions and items go by cloudpickle."""

from __future__ import annotations

import errno
import itertools
import pickle
import warnings
from collections.abc import Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from .. import _config
from .._process import buffers
from .._process.pool import ProcessPool, Task
from .._transport.serialize import dump_function, dump_items, dumps
from .._work.setup import WorkerSetup, dump_setup
from .._work.task import NO_RETRY, Call, ChunkResult
from .base import Backend

_keys = itertools.count(1)


@dataclass(frozen=True)
class _Prepared:
    call: Call
    fn_key: int
    fn_bytes: bytes
    retry_bytes: bytes
    #: This call's large buffers in shared memory.
    exports: buffers.Exports


class ProcessBackend(Backend):
    """Chunks on a :class:`ProcessPool`; a ``setup`` goes to each worker as it starts (its
    initializer runs there before the first chunk) and bounds the items a worker runs."""

    name = "process"

    def __init__(self, workers: int, start_method: str, setup: WorkerSetup | None = None) -> None:
        super().__init__(workers)
        self.start_method = start_method
        self._setup_bytes = (
            b"" if setup is None or setup.initializer is None else dump_setup(setup, "process")
        )
        self._max_tasks = None if setup is None else setup.max_tasks_per_child
        self._pool = self._new_pool()
        self._keys: dict[bytes, int] = {}

    def _new_pool(self) -> ProcessPool:
        return ProcessPool(self.workers, self.start_method, self._setup_bytes, self._max_tasks)

    @classmethod
    def worker_setup(cls, setup: WorkerSetup) -> WorkerSetup | None:
        return setup  # max_tasks_per_child too: worker processes are replaced

    def chunk_limit(self) -> int | None:
        return self._max_tasks

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {"start_method": _config.start_method()}

    @classmethod
    def get_ready(cls, settings: dict[str, Any]) -> bool:
        # Workers forked by the fork server start from any thread; started later, with threads
        # running, the server would be a fresh interpreter for good. ("fork" would fork the
        # caller while it runs an item; "spawn" costs a fresh interpreter per worker.)
        if settings.get("start_method") != "forkserver":
            return False
        from .._process import launcher

        return launcher.server_if_cheap()

    @classmethod
    def release_resources(cls) -> None:
        from .._process import launcher, pool, spares

        launcher.stop_server()
        spares.spares.drop()  # large-buffer files kept for reuse
        pool.sweep_shared_objects()

    def prepare(self, call: Call) -> _Prepared:
        fn_bytes = dump_function(call.portable)  # type: ignore[arg-type]  # SerializationError here, before any work
        key = self._keys.get(fn_bytes)
        if key is None:  # the same function pickled again keeps its key: workers keep it loaded
            if len(self._keys) > 256:
                self._keys.clear()
            key = self._keys[fn_bytes] = next(_keys)
        # By value: retry_on may name exception classes the worker cannot import (from __main__).
        retry_bytes = b"" if call.retry == NO_RETRY else dumps(call.retry)
        return _Prepared(call, key, fn_bytes, retry_bytes, buffers.Exports(call.stored_items))

    def submit(
        self,
        prepared: _Prepared,
        items: Sequence[object],
        start: int,
        future: Future[ChunkResult] | None = None,
    ) -> Future[ChunkResult]:
        future = Future() if future is None else future
        call = prepared.call
        large: list[pickle.PickleBuffer] = []
        items_bytes = dump_items(items, start, large=large)
        try:
            paths = prepared.exports.export(large)
        except OSError as exc:  # shared memory full (a container's 64 MB): the pipe still works
            _warn_no_shared_memory(exc)
            items_bytes, paths = dump_items(items, start), ()
        release = prepared.exports.releaser(paths)
        if paths:
            future.add_done_callback(lambda _: release(False))  # cancelled: never reused
        task = Task(
            future,
            prepared.fn_key,
            prepared.fn_bytes,
            items_bytes,
            start,
            len(items),
            call.retry,
            prepared.retry_bytes,
            call.timeout,
            buffer_paths=paths,
            release_buffers=release,
            report=call.report,
            inner_threads=call.inner_threads or 0,
        )
        if self._pool.closed:  # broken by a failure in its manager: start afresh
            self._pool = self._new_pool()
        self._pool.submit(task)
        return future

    def warm_workers(self) -> int:
        return self._pool.live_workers

    def cancel(self, futures: Collection[Future[ChunkResult]]) -> None:
        self._pool.cancel(futures)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


#: The errors that mean shared memory is too small (the advice below fixes only those).
_OUT_OF_SPACE = (errno.ENOSPC, errno.ENOMEM, errno.EDQUOT)


def _warn_no_shared_memory(exc: OSError) -> None:
    advice = (
        " Give the machine or container more shared memory (e.g. docker run --shm-size=1g) to "
        "avoid it."
        if exc.errno in _OUT_OF_SPACE
        else ""
    )
    warnings.warn(
        f"smartpool could not put large arguments in shared memory ({buffers.DIRECTORY}: {exc}); "
        f"they go to the workers through the pipe instead, copied once more.{advice}",
        RuntimeWarning,
        stacklevel=2,
    )
