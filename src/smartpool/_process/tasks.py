"""A chunk on its way to a worker process, and the ways it ends: settled with the worker's result,
or failed because the worker was lost (crashed, overran its deadline, or the pool shut down).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from .._errors import TaskTimeoutError, WorkerCrashedError
from .._work.task import ChunkResult, RetryPolicy, settle
from . import buffers
from .protocol import Chunk


@dataclass
class Task:
    """One chunk on its way to a worker."""

    future: Future[ChunkResult]
    fn_key: int
    fn_bytes: bytes
    items_bytes: bytes
    start: int
    n_items: int
    retry: RetryPolicy
    #: ``retry`` pickled by value for the worker (empty: no retries).
    retry_bytes: bytes
    timeout: float | None
    #: Runs so far, counting the current one; above 1 after a crash or timeout was retried.
    attempts: int = 1
    #: Shared-memory files holding the items' large buffers (see ``buffers``).
    buffer_paths: tuple[str, ...] = ()
    #: Gives those files back once the task is settled (safe to call more than once): with True
    #: when its worker let go of them (they may be reused), else False (they are removed). By
    #: default they are settled by ``buffers.settled``.
    release_buffers: Callable[[bool], None] | None = None
    #: Set when the task's run was cancelled while a worker ran it: the manager kills the worker.
    cancelled: bool = False
    #: Receives the steps the function reports while it runs (None: the worker sends none).
    report: Callable[[int], None] | None = None
    #: BLAS/OpenMP threads for the worker's libraries; 0: leave them as they are.
    inner_threads: int = 0

    def describe_items(self) -> str:
        last = self.start + self.n_items - 1
        return f"item {self.start}" if self.n_items == 1 else f"items {self.start}..{last}"

    def chunk(self, with_function: bool) -> Chunk:
        """The message that runs this task; the function's bytes only ``with_function``."""
        fn_bytes = self.fn_bytes if with_function else b""
        return Chunk(
            self.fn_key,
            fn_bytes,
            self.start,
            self.retry_bytes,
            self.items_bytes,
            self.buffer_paths,
            self.report is not None,
            self.inner_threads,
        )


def settle_task(
    task: Task,
    result: ChunkResult | None = None,
    error: BaseException | None = None,
    reusable: bool = False,
) -> None:
    """Complete a task's Future, having first given back its shared-memory files (kept for reuse
    if its worker let go of them, else removed): whoever waits on the Future may check for
    leftovers the moment it wakes."""
    if task.release_buffers is not None:
        task.release_buffers(reusable)
    else:
        buffers.settled(task.buffer_paths, reusable)
    settle(task.future, result, error)


def loss_error(task: Task, pid: int | None, exitcode: int | None, timed_out: bool) -> Exception:
    """The error ``task`` fails with when its worker ``pid`` is lost: it overran its deadline
    (``timed_out``), the pool shut down under it (``pid`` None), or it died with ``exitcode``."""
    items = task.describe_items()
    if timed_out:
        return TaskTimeoutError(
            f"{items} did not finish within timeout={task.timeout} s; worker process {pid} was "
            "killed and will be replaced",
            index=task.start,
            timeout=task.timeout,
        )
    if pid is None:
        return WorkerCrashedError(
            f"{items} did not finish: smartpool's process pool was shut down (smartpool.shutdown() "
            "or interpreter exit) while the call still used it",
            index=task.start,
        )
    return WorkerCrashedError(
        f"worker process {pid} died while running {items}: {describe_exit(exitcode)}",
        index=task.start,
        exitcode=exitcode,
    )


def describe_exit(exitcode: int | None) -> str:
    """How a worker ended, in words: "killed by SIGSEGV", "exited with code 3"."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with code {exitcode}"
