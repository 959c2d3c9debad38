"""Out of resources: turning a failed start of a worker into an error that says what to do.

Starting a worker process takes a few file descriptors in the caller (its socket, a pidfd, a
crash-report file) and a process; starting a worker thread takes a thread and its stack. With a
low ``ulimit -n`` or ``ulimit -u``, or in a small container, that fails with a bare ``OSError:
[Errno 24] Too many open files`` or ``RuntimeError: can't start new thread``, far from the
``max_workers`` that asked for it. :func:`as_resource_error` turns those into a
:class:`~smartpool.ResourceLimitError` naming the resource, where its limit is read and the fix;
the pools fail the chunks that waited for the worker with it, and stay usable.
"""

from __future__ import annotations

import errno
import resource
import threading

from .._errors import ResourceLimitError, SmartpoolError

#: ``str()`` of the RuntimeError that ``threading.Thread.start`` raises when the system refuses
#: a thread (``pthread_create`` failed: ``EAGAIN``, out of threads or of memory for its stack).
_NO_THREAD = "can't start new thread"

#: A suggested ``ulimit -n`` when raising the open-files limit.
_SUGGESTED_OPEN_FILES = 4096


def start_error(exc: BaseException, what: str, workers: int) -> SmartpoolError:
    """The error for the chunks that waited on ``what``, which could not start because of
    ``exc``: a :class:`ResourceLimitError` when something ran out, else a plain
    :class:`SmartpoolError` naming the cause."""
    error = as_resource_error(exc, what, workers)
    if error is not None:
        return error
    other = SmartpoolError(f"smartpool could not start {what}: {type(exc).__name__}: {exc}")
    other.__cause__ = exc
    return other


def start_thread(thread: threading.Thread, what: str) -> None:
    """Start one of smartpool's own helper threads (``what``: "the input reader", say); when
    the system refuses it, raise a :class:`ResourceLimitError` that says so, not a bare
    ``RuntimeError``."""
    try:
        thread.start()
    except RuntimeError as exc:
        raise start_error(exc, what, 1) from exc


def as_resource_error(exc: BaseException, what: str, workers: int) -> ResourceLimitError | None:
    """``exc``, raised while starting ``what`` (e.g. "a worker process") for a pool of up to
    ``workers``, as a :class:`ResourceLimitError`; None if it is not about running out."""
    if isinstance(exc, ResourceLimitError):
        return exc
    if isinstance(exc, RuntimeError) and _NO_THREAD in str(exc):
        code = errno.EAGAIN
    elif isinstance(exc, OSError) and exc.errno in _EXPLAIN:
        code = exc.errno
    else:
        return None
    resource_name, limit, advice = _EXPLAIN[code]()
    fewer = (
        f"or pass a smaller max_workers (this pool may start {workers})"
        if workers > 1
        else "or run fewer calls at once"
    )
    error = ResourceLimitError(
        f"smartpool could not start {what}: {advice}, {fewer}.",
        errno=code,
        resource=resource_name,
        limit=limit,
    )
    error.__cause__ = exc
    return error


def _soft_limit(which: int) -> tuple[int | None, str]:
    """The soft limit of ``which`` (None if unlimited or unknown), and how it reads in Python."""
    name = {resource.RLIMIT_NOFILE: "RLIMIT_NOFILE", resource.RLIMIT_NPROC: "RLIMIT_NPROC"}[which]
    try:
        soft, hard = resource.getrlimit(which)
    except (OSError, ValueError):  # pragma: no cover - every Linux has both
        return None, f"resource.getrlimit(resource.{name})"
    shown = ", ".join("unlimited" if v == resource.RLIM_INFINITY else str(v) for v in (soft, hard))
    return (
        None if soft == resource.RLIM_INFINITY else soft,
        f"resource.getrlimit(resource.{name}) gives ({shown})",
    )


def _open_files() -> tuple[str, int | None, str]:
    limit, reading = _soft_limit(resource.RLIMIT_NOFILE)
    at_most = "" if limit is None else f" at most {limit}"
    suggested = max(_SUGGESTED_OPEN_FILES, 2 * (limit or 0))
    return (
        "open files",
        limit,
        f"too many open files (EMFILE): this process may hold{at_most} file descriptors "
        f"({reading}) and each worker process needs 3 of them in the caller. Raise the limit "
        f"(`ulimit -n {suggested}` in the shell that starts Python, or "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard)) in the program, up to its hard "
        "limit), close files the program no longer needs",
    )


def _system_files() -> tuple[str, int | None, str]:
    return (
        "open files (system-wide)",
        None,
        "the system's table of open files is full (ENFILE; its size is in "
        "/proc/sys/fs/file-max). Close files in other programs, raise fs.file-max "
        "(`sysctl -w fs.file-max=...`)",
    )


def _processes() -> tuple[str, int | None, str]:
    limit, reading = _soft_limit(resource.RLIMIT_NPROC)
    return (
        "processes or threads",
        limit,
        "the system refused a new process or thread (EAGAIN): this user has too many of them "
        f"({reading}; `ulimit -u`; in a container, /sys/fs/cgroup/pids.max), or no memory is "
        "left for a thread's stack (`ulimit -v`, RLIMIT_AS). Raise the limit, end processes or "
        "threads the program no longer needs",
    )


def _memory() -> tuple[str, int | None, str]:
    return (
        "memory",
        None,
        "out of memory (ENOMEM). Free memory, raise the address-space limit (`ulimit -v`, "
        "RLIMIT_AS) or the container's memory",
    )


_EXPLAIN = {
    errno.EMFILE: _open_files,
    errno.ENFILE: _system_files,
    errno.EAGAIN: _processes,
    errno.ENOMEM: _memory,
}
