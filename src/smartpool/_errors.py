"""The error tree: one root, a few precise leaves.

Every error smartpool raises itself derives from :class:`SmartpoolError`; errors raised by the
user's function are re-raised as their own type (see ``_remote``), never wrapped, unless they
cannot travel back from a worker, in which case they arrive as :class:`RemoteError`.
"""

from __future__ import annotations

import concurrent.futures
import pickle
from concurrent.futures.process import BrokenProcessPool
from typing import Any

#: ``concurrent.futures.TimeoutError`` is the builtin ``TimeoutError`` from Python 3.11 on; before
#: that it is a class of its own, which :class:`TaskTimeoutError` derives from too.
_FUTURES_TIMEOUT: tuple[type[Exception], ...] = tuple(
    {concurrent.futures.TimeoutError, TimeoutError} - {TimeoutError}
)


class SmartpoolError(Exception):
    """Root of every error raised by smartpool itself."""


class SerializationError(SmartpoolError, TypeError, pickle.PicklingError):
    """A function, item or result cannot be pickled to cross into or out of a worker process.

    The message names the offending object's type and where it sits ("the function", "item 3",
    "result of item 3"), and what to do about it. It is also a ``pickle.PicklingError``, as
    ``ProcessPoolExecutor`` raises in this case.
    """


class NotUnpickledError(SerializationError, BrokenProcessPool):
    """What was pickled could not be rebuilt on the other side (in the worker: the function or
    the items; in the caller: the results or the exception).

    Unpickling runs code of its own (imports, ``__reduce__``, ``__setstate__``); its exception is
    the ``__cause__``. This is a :class:`SerializationError`, and also a ``BrokenProcessPool``,
    which ``ProcessPoolExecutor`` raises in these cases (here the pool stays usable).
    """


class _ItemError(SmartpoolError):
    """An error about one item of a call, carrying the results computed before it."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.completed: dict[int, Any] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes do not survive the default exception pickling.
        return (_rebuild, (type(self), str(self), self.__dict__))


class WorkerCrashedError(_ItemError, BrokenProcessPool):
    """A worker process died (``os._exit``, a signal, the OOM killer) while running an item.

    It is also a ``concurrent.futures.process.BrokenProcessPool``, so code written for
    ``ProcessPoolExecutor`` keeps catching it; unlike there, the pool stays usable (the dead
    worker is replaced).

    Attributes:
        index: index of the first item of the chunk the worker was running, if known.
        exitcode: the process exit code; negative for a signal (``-9`` is SIGKILL).
        completed: results already computed, as ``{index: value}``; nothing finished is lost.
    """

    def __init__(
        self, message: str, *, index: int | None = None, exitcode: int | None = None
    ) -> None:
        super().__init__(message, index=index)
        self.exitcode = exitcode


class TaskTimeoutError(_ItemError, TimeoutError, *_FUTURES_TIMEOUT):  # type: ignore[misc]
    """An item ran longer than the ``timeout=`` given to the call.

    It is also a ``concurrent.futures.TimeoutError`` (the builtin ``TimeoutError`` from Python
    3.11 on) on every supported Python.

    On the process backend the worker is killed and replaced; on the thread backend the thread is
    abandoned (threads cannot be killed) and the caller gets this error at the deadline.

    Attributes:
        index: index of the item that overran.
        timeout: the per-item limit in seconds.
        completed: results already computed, as ``{index: value}``.
    """

    def __init__(
        self, message: str, *, index: int | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(message, index=index)
        self.timeout = timeout


class InitializerError(SmartpoolError):
    """A worker's ``initializer=`` raised: the call stops, and the error it raised is the cause.

    The workers it set up are never used again (they belong to the failed call alone), so the
    next call starts afresh.

    Attributes:
        initializer: the initializer's qualified name.

    Example:
        >>> import smartpool
        >>> def connect() -> None:
        ...     raise ConnectionError("database is down")
        >>> try:
        ...     smartpool.parallel_map(abs, [1, 2], backend="thread", initializer=connect)
        ... except smartpool.InitializerError as error:
        ...     print(error.initializer, "->", repr(error.__cause__))
        connect -> ConnectionError('database is down')
    """

    def __init__(self, message: str, *, initializer: str = "") -> None:
        super().__init__(message)
        self.initializer = initializer

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__))


class RemoteError(SmartpoolError):
    """An exception raised in a worker that could not be pickled back to the caller.

    Attributes:
        type_name: qualified name of the original exception type, e.g. ``"mymod.DbError"``.
        message: ``str()`` of the original exception.
        remote_traceback: the worker-side traceback, formatted as text.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))

    def __str__(self) -> str:
        return (
            f"{self.type_name}: {self.message}\n\n"
            f"(the original exception could not be pickled; its worker traceback follows)\n"
            f"{self.remote_traceback}"
        )


class ResourceLimitError(SmartpoolError, OSError):
    """smartpool could not start a worker process or thread: this process, its user or the
    machine ran out of what that takes (open files, processes or threads, memory).

    Raised by the call that needed the worker (its chunks fail with it; the pool stays usable,
    so the next call works once the limit is raised). The message names the resource, where its
    limit can be read (``resource.getrlimit``) and the fix (``ulimit``, a smaller
    ``max_workers``). It is also an ``OSError`` carrying the original ``errno`` (``EMFILE``,
    ``ENFILE``, ``EAGAIN`` or ``ENOMEM``), so code that handles those keeps working.

    Attributes:
        resource: what ran out: ``"open files"``, ``"open files (system-wide)"``,
            ``"processes or threads"`` or ``"memory"``.
        limit: the soft limit in force when it happened (``RLIMIT_NOFILE`` or ``RLIMIT_NPROC``),
            or None where no such limit applies or it is unlimited.
    """

    def __init__(
        self,
        message: str,
        *,
        errno: int | None = None,
        resource: str = "",
        limit: int | None = None,
    ) -> None:
        super().__init__(errno, message)
        self.resource = resource
        self.limit = limit

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_os_error, (type(self), self.args, self.__dict__))


def _rebuild_os_error(
    cls: type[ResourceLimitError], args: tuple[Any, ...], state: dict[str, Any]
) -> ResourceLimitError:
    err = cls.__new__(cls)
    OSError.__init__(err, *args)
    err.__dict__.update(state)
    return err


def _rebuild(cls: type[SmartpoolError], message: str, state: dict[str, Any]) -> SmartpoolError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


# Shown and pickled as ``smartpool.SerializationError``, the name users import and catch, not by
# the private module that defines it (``smartpool`` exports each of these).
for _public in (
    SmartpoolError,
    SerializationError,
    WorkerCrashedError,
    TaskTimeoutError,
    RemoteError,
    ResourceLimitError,
):
    _public.__module__ = "smartpool"
del _public
