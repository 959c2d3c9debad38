"""Starting worker processes: "forkserver" (default), "spawn" and "fork".

Each start method returns a :class:`WorkerProcess`: a pid, a connected socket, and ways to kill
it and learn its exit code. Workers never re-import the caller's ``__main__`` (functions from
``__main__`` travel by value through cloudpickle), so scripts without a ``__main__`` guard are safe.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from . import crash_reports, descriptors, protocol
from .channel import Channel
from .descriptors import close_owned, flush_std_streams, open_pidfd
from .forkserver import PACKAGE_PARENT, ForkServer, server
from .forkserver import server_if_cheap as server_if_cheap
from .forkserver import stop_server as stop_server  # with start_worker: the backend's one door
from .signals import sigint_blocked

if TYPE_CHECKING:
    import subprocess  # imported where a process is started with it: the import is not free


class WorkerProcess(ABC):
    """A started worker: its pid, the parent's end of its socket, and a descriptor that becomes
    readable when the process exits (``sentinel``; None where pidfds are not available)."""

    def __init__(self, pid: int, conn: Channel) -> None:
        self.pid = pid
        self.conn = conn
        #: The caller's end of the worker's crash report file, if it has one (``crash_reports``).
        self.report: int | None = None
        self.sentinel = open_pidfd(pid)

    def exited(self) -> None:
        """The sentinel fired: stop watching it, and shut the socket down from our side.

        The socket alone does not show a crash while a child the worker forked still holds its
        end; shut down, it yields what the worker sent before it died, then end-of-file.
        """
        if self._close_sentinel():  # else closed already: its socket ended first
            self.conn.shut_down()

    def close(self) -> None:
        """Close the parent's end of the socket: an idle worker exits when it sees that."""
        self._close_sentinel()
        report, self.report = self.report, None
        close_owned(self.conn, *([] if report is None else [report]))

    def _close_sentinel(self) -> bool:
        """Close the sentinel, once whoever calls; False if it was closed already."""
        with descriptors.fork_lock:  # as close_owned does
            fd, self.sentinel = self.sentinel, None
            if fd is None:
                return False
            descriptors.owned_fds.discard(fd)
            os.close(fd)
        return True

    @abstractmethod
    def kill(self) -> int | None:
        """Kill the worker (SIGKILL) and return its exit code."""

    @abstractmethod
    def exitcode(self) -> int | None:
        """Wait briefly for a worker that is exiting; its exit code (negative: killed by signal)."""


def start_worker(method: str, setup: bytes = b"") -> WorkerProcess:
    """Start one worker with ``method`` ("forkserver", "spawn" or "fork"); ``setup`` is the
    pool's pickled WorkerSetup (see ``protocol.Init``)."""
    with descriptors.fork_lock:
        parent_sock, child_sock = socket.socketpair()
        descriptors.owned_fds.update((parent_sock.fileno(), child_sock.fileno()))
    try:
        with sigint_blocked():
            proc = _start(method, parent_sock, child_sock)
    except BaseException:  # out of descriptors or processes, say: keep nothing of it
        close_owned(parent_sock)
        raise
    finally:
        close_owned(child_sock)
    try:
        proc.conn.send_bytes(protocol.encode_init(protocol.current_init(setup)))
        reports = crash_reports.mode()
        with descriptors.fork_lock:  # listed as it is made, as the sockets are
            proc.report = crash_reports.new_file(reports)
            descriptors.owned_fds.update(() if proc.report is None else (proc.report,))
        crash_reports.hand_over(proc.conn.fileno(), reports, proc.report)
    except BaseException:
        proc.kill()
        proc.close()
        raise
    return proc


def _start(method: str, parent_sock: socket.socket, child_sock: socket.socket) -> WorkerProcess:
    if method == "forkserver":
        running = server()
        try:
            return _ServerWorker.start(running, parent_sock, child_sock)
        except OSError:
            if not running.dead:  # refused: out of descriptors or processes
                raise
            # It died since its last use: once more with a new one.
            return _ServerWorker.start(server(), parent_sock, child_sock)
    if method == "spawn":
        return _SpawnedWorker.start(parent_sock, child_sock)
    return _ForkedWorker.start(parent_sock, child_sock)


def _connection(sock: socket.socket) -> Channel:
    return Channel(sock.detach())


# -- forkserver ---------------------------------------------------------------------------------


class _ServerWorker(WorkerProcess):
    """A worker forked by the fork server: killed and waited for by asking the server."""

    def __init__(self, server: ForkServer, pid: int, conn: Channel) -> None:
        super().__init__(pid, conn)
        self._server = server

    @classmethod
    def start(
        cls, server: ForkServer, parent_sock: socket.socket, child_sock: socket.socket
    ) -> _ServerWorker:
        return cls(server, server.spawn(child_sock), _connection(parent_sock))

    def kill(self) -> int | None:
        try:
            return self._server.request(("kill", self.pid))  # type: ignore[return-value]
        except OSError:  # the server died (killed, OOM): the worker is no child of ours to reap
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            return None

    def exitcode(self) -> int | None:
        try:
            return self._server.request(("status", self.pid))  # type: ignore[return-value]
        except OSError:
            return None


# -- spawn and fork -------------------------------------------------------------------------------


class _SpawnedWorker(WorkerProcess):
    def __init__(self, popen: subprocess.Popen[bytes], conn: Channel) -> None:
        super().__init__(popen.pid, conn)
        self._popen = popen

    @classmethod
    def start(cls, parent_sock: socket.socket, child_sock: socket.socket) -> _SpawnedWorker:
        fd = child_sock.fileno()
        code = (
            f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
            f"from smartpool._process.worker import main; main({fd})"
        )
        import subprocess

        popen = subprocess.Popen([sys.executable, "-c", code], pass_fds=[fd])
        return cls(popen, _connection(parent_sock))

    def kill(self) -> int | None:
        self._popen.kill()
        return self._popen.wait()

    def exitcode(self) -> int | None:
        import subprocess

        try:
            return self._popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return self.kill()


class _ForkedWorker(WorkerProcess):
    @classmethod
    def start(cls, parent_sock: socket.socket, child_sock: socket.socket) -> _ForkedWorker:
        with descriptors.fork_lock:
            # Read before fork: the at-fork hook clears it in the child.
            inherited = [fd for fd in descriptors.owned_fds if fd != child_sock.fileno()]
            flush_std_streams()
            pid = os.fork()
        if pid == 0:
            try:
                parent_sock.close()
                for fd in inherited:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                from . import worker

                worker.main(child_sock.detach())
            finally:
                os._exit(1)
        return cls(pid, _connection(parent_sock))

    def kill(self) -> int | None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.exitcode()

    def exitcode(self) -> int | None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status)
