"""What a dying worker says: faulthandler's report of a fatal signal, off the caller's stderr.

A worker killed by SIGSEGV (a C extension's bug), SIGABRT (a failed C assertion), SIGBUS, SIGFPE or
SIGILL can still have faulthandler print the Python stack it died in. Printed on stderr, which
workers share with their caller, it lands in the caller's output: a test suite that checks crashes
fills its log with them. So, by default, each worker's faulthandler writes into a memory file of
its own, which the caller made and handed over on the worker's socket (``SCM_RIGHTS``, once, right
after the init message); when the worker dies of a signal, the pool reads the file and adds the
report to the ``WorkerCrashedError`` as a note. The file goes when both ends are closed: nothing
is left behind, however either side ends.

``SMARTPOOL_FAULTHANDLER`` (read by the caller at each worker start) chooses otherwise: ``stderr``
prints the report on stderr as it happens (for debugging), ``off`` turns faulthandler off in the
workers; ``note`` is the default.
"""

from __future__ import annotations

import faulthandler
import os
import socket
import sys
import warnings

from .._transport.remote import add_note

#: The environment variable that chooses where a dying worker's report goes.
ENV = "SMARTPOOL_FAULTHANDLER"
MODES = ("note", "stderr", "off")
#: At most this much of a report reaches the note (a report holds one thread's stack, 100 frames
#: at most: a few kilobytes).
MAX_REPORT_BYTES = 16 * 1024

#: The one-byte message that follows the init message, by mode (``note`` carries the file).
_MESSAGES = {"note": b"n", "stderr": b"e", "off": b"o"}


def mode() -> str:
    """Where reports go, from the environment; an unknown value is warned about and ignored."""
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return "note"
    if value not in MODES:
        warnings.warn(
            f"{ENV}={value!r} is not one of {', '.join(repr(m) for m in MODES)}; using 'note'",
            RuntimeWarning,
            stacklevel=2,
        )
        return "note"
    return value


def new_file(chosen: str) -> int | None:
    """In the caller: a memory file for a new worker's report (None if not ``note`` or where
    there are no memory files)."""
    if chosen != "note" or not hasattr(os, "memfd_create"):
        return None
    try:
        return os.memfd_create("smartpool-crash-report", os.MFD_CLOEXEC)
    except OSError:  # pragma: no cover - out of descriptors: the worker goes without
        return None


def hand_over(conn_fd: int, chosen: str, report: int | None) -> None:
    """In the caller: tell the worker on ``conn_fd`` where its reports go (with the file)."""
    message = _MESSAGES["off" if chosen == "note" and report is None else chosen]
    sock = socket.socket(fileno=conn_fd)
    try:
        socket.send_fds(sock, [message], [] if report is None else [report])
    finally:
        sock.detach()


def take_over(conn_fd: int) -> None:
    """In a worker: point faulthandler where the caller said. EOFError if the caller is gone."""
    sock = socket.socket(fileno=conn_fd)
    try:
        message, fds, _, _ = socket.recv_fds(sock, 1, 1)
    finally:
        sock.detach()
    if not message:
        raise EOFError("the caller closed the worker's socket")
    for fd in fds:
        os.set_inheritable(fd, False)  # not into programs the function runs
    if message == _MESSAGES["note"] and fds:
        faulthandler.enable(file=fds[0], all_threads=False)  # the thread that died is enough
    elif message == _MESSAGES["stderr"]:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    else:  # "off", or the caller's own faulthandler, inherited: never onto the caller's stderr
        faulthandler.disable()


def add_to(error: BaseException, report: int | None) -> None:
    """In the caller, once the worker is dead: add what its faulthandler wrote (the Python stack
    it died in), if anything, to ``error`` as a note."""
    text = "" if report is None else read(report)
    if text:
        add_note(error, f"smartpool: the worker's faulthandler report:\n{text}")


def read(report: int) -> str:
    """What the faulthandler of the worker given ``report`` wrote, if anything."""
    try:
        data = os.pread(report, MAX_REPORT_BYTES, 0)
    except OSError:  # pragma: no cover - the file is ours and open: nothing to report then
        return ""
    return _without_callers_frames(data.decode("utf-8", "replace").strip())


def _without_callers_frames(report: str) -> str:
    """Drop the frames below the worker's entry point: a forked worker still holds the stack it
    was forked from (the caller's, or the fork server's), which says nothing about the crash."""
    lines = report.splitlines()
    entry = f'{os.sep}_process{os.sep}worker.py", line '
    for index, line in enumerate(lines):
        if entry in line and line.endswith(" in main"):
            end = index + 1
            while end < len(lines) and lines[end].startswith("  File "):
                end += 1
            return "\n".join(lines[: index + 1] + lines[end:])
    return report
