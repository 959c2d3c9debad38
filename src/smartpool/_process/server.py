"""The fork server: a single-threaded process that forks worker processes on request.

Forking from a process with threads is unsafe (a lock held by another thread stays held in the
child), and smartpool's caller runs threads. So workers are forked from this server instead, which
never starts a thread. The server is itself forked from the caller when the caller is still
single-threaded (cheap: no interpreter start), or else started as a fresh interpreter.

Requests on the control socket (a SOCK_SEQPACKET pair, one pickled tuple per datagram, numbered,
with file descriptors passed alongside): ``(n, "spawn")`` + the worker's socket -> pid;
``(n, "status", pid)`` -> exit code (negative: signal); ``(n, "kill", pid)`` -> exit code;
``(n, "bye")`` -> True, before the caller closes the socket on purpose. Each answer is the datagram
``(n, answer)``. When the caller goes away the server kills its workers and exits; when it went
away without saying bye (it was killed, even by SIGKILL), the server also removes the caller's
large-buffer files (see ``buffers``), which nobody else would.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import socket
import stat
import sys
import time

from .signals import ignore_sigint

_MAX_FDS = 4
_KEEP_STATUSES = 1024


def serve(ctrl: socket.socket) -> None:
    """Answer requests until the caller closes the control socket; never returns."""
    ignore_sigint()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    children: set[int] = set()
    statuses: dict[int, int] = {}
    caller, farewell = os.getppid(), False
    try:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(ctrl, 65536, _MAX_FDS)
            except OSError:
                break
            if not msg:
                break
            number, *request = pickle.loads(msg)
            if request[0] == "bye":
                farewell = True
                ctrl.send(pickle.dumps((number, True)))
                break
            if request[0] == "spawn":
                answer: object = _spawn(ctrl, fds, children)
            elif request[0] == "kill":
                answer = _kill(request[1], children, statuses)
            else:
                answer = _status(request[1], children, statuses)
            for fd in fds:
                os.close(fd)
            ctrl.send(pickle.dumps((number, answer)))
            _reap(children, statuses)
    finally:
        gone = time.time()
        _end_children(children)
        if not farewell:
            _remove_buffer_files(caller, before=gone)
        os._exit(0)


def _remove_buffer_files(caller: int, before: float) -> None:
    """Remove the large-buffer files of a caller that died: named as its files are, owned by its
    user and made ``before`` (a program the caller exec'd keeps its pid, and may already have made
    new ones)."""
    from .buffers import DIRECTORY, is_buffer_file  # only now: the server imports little

    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return
    for name in names:
        if is_buffer_file(name, caller):
            path = os.path.join(DIRECTORY, name)
            try:
                found = os.lstat(path)
                if found.st_uid == os.getuid() and found.st_mtime <= before:
                    os.unlink(path)
            except OSError:
                pass


#: When the caller goes away, its workers see their sockets close and exit by themselves (after
#: letting go of shared objects); those still running after this long are killed.
EXIT_GRACE_SECONDS = 1.0


def _end_children(children: set[int]) -> None:
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    while children and time.monotonic() < deadline:
        for pid in list(children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                children.discard(pid)
        if children:
            time.sleep(0.005)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _spawn(ctrl: socket.socket, fds: list[int], children: set[int]) -> object:
    """Fork a worker on the socket passed in ``fds``: its pid, or ``(errno, strerror)`` when
    this server is out of descriptors (the socket did not arrive) or processes. The caller raises
    that for the call, and the server goes on serving the workers it has."""
    if not fds:
        return (errno.EMFILE, os.strerror(errno.EMFILE))
    try:
        pid = _fork_worker(ctrl, fds[0])
    except OSError as exc:
        return (exc.errno, exc.strerror)
    children.add(pid)
    return pid


def _fork_worker(ctrl: socket.socket, worker_fd: int) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            ctrl.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            from . import worker

            worker.main(worker_fd)
        finally:
            os._exit(1)
    return pid


def _status(pid: int, children: set[int], statuses: dict[int, int]) -> int | None:
    if pid in statuses:
        return statuses.pop(pid)
    if pid not in children:
        return None
    deadline = time.monotonic() + 2.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:  # a worker that closed its socket but won't exit
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
        time.sleep(0.001)


def _kill(pid: int, children: set[int], statuses: dict[int, int]) -> int | None:
    if pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return _status(pid, children, statuses)


def _reap(children: set[int], statuses: dict[int, int]) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            statuses[pid] = os.waitstatus_to_exitcode(status)
    while len(statuses) > _KEEP_STATUSES:
        statuses.pop(next(iter(statuses)))


def drop_shared_descriptors(keep: int) -> None:
    """In a server forked from the caller: let go of the caller's pipes and sockets.

    Otherwise the long-lived server would hold the write end of, say, a subprocess's stdin, and
    that subprocess would never see end-of-file. Each pipe or socket descriptor (other than stdio
    and ``keep``) is pointed at /dev/null instead of closed, so its number is never reused under
    a Python object that still refers to it. Regular files and terminals stay as they are.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd <= 2 or fd in (keep, devnull):
                continue
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.dup2(devnull, fd, inheritable=False)
    except FileNotFoundError:  # pragma: no cover - no /proc: leave descriptors alone
        pass
    finally:
        os.close(devnull)


def main_from_exec() -> None:
    """Entry point when the server is started as a fresh interpreter (``python -c``)."""
    fd = int(sys.argv[1])
    ctrl = socket.socket(fileno=fd)
    serve(ctrl)
