"""Starting worker processes: "forkserver" (default), "spawn" and "fork".

Each start method returns a :class:`WorkerProcess`: a pid, a connected socket, and ways to kill
it and learn its exit code. Workers never re-import the caller's ``__main__`` (functions from
``__main__`` travel by value through cloudpickle), so scripts without a ``__main__`` guard are safe.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import socket
import sys
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Set
from typing import TYPE_CHECKING, Protocol, cast

from .._work import deadline
from .._work.spare_threads import spare
from . import crash_reports
from .channel import Channel

if TYPE_CHECKING:
    import subprocess  # imported where a process is started with it: the import is not free
from .signals import sigint_blocked

# This file is smartpool/_process/launcher.py: the folder holding the smartpool package is three up.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


class WorkerProcess(ABC):
    """A started worker: its pid, the parent's end of its socket, and a descriptor that becomes
    readable when the process exits (``sentinel``; None where pidfds are not available)."""

    def __init__(self, pid: int, conn: Channel) -> None:
        self.pid = pid
        self.conn = conn
        #: The caller's end of the worker's crash report file, if it has one (``crash_reports``).
        self.report: int | None = None
        self.sentinel = _open_pidfd(pid)

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
        with _fork_lock:  # as close_owned does
            fd, self.sentinel = self.sentinel, None
            if fd is None:
                return False
            owned_fds.discard(fd)
            os.close(fd)
        return True

    @abstractmethod
    def kill(self) -> int | None:
        """Kill the worker (SIGKILL) and return its exit code."""

    @abstractmethod
    def exitcode(self) -> int | None:
        """Wait briefly for a worker that is exiting; its exit code (negative: killed by signal)."""


#: Descriptors smartpool itself holds in the caller (worker sockets, the server's control socket,
#: wake-up pipes). A worker forked straight from the caller closes them all, or it would keep other
#: workers' sockets open and they would never see their parent hang up.
owned_fds: set[int] = set()

#: Held while a socket pair is made and registered in ``owned_fds``, and while a "fork" worker
#: reads ``owned_fds`` and forks: otherwise a worker forked by one thread could inherit, untracked,
#: the caller's end of a socket another thread just made, and that worker would then never see
#: its caller hang up (each keeping the other alive at shutdown).
_fork_lock = threading.Lock()


class _Closable(Protocol):
    def fileno(self) -> int: ...
    def close(self) -> None: ...


def owned_pipe() -> tuple[int, int]:
    """A new pipe, listed in ``owned_fds`` as it is made (see ``_fork_lock``)."""
    with _fork_lock:
        read, write = os.pipe()
        owned_fds.update((read, write))
    return read, write


def close_owned(*objects: int | _Closable) -> None:
    """Close descriptors listed in ``owned_fds`` and drop them from it, as one step.

    Under ``_fork_lock``: a "fork" worker started by another thread between the two would inherit
    the descriptor without knowing it was ours, and keep it open. With a worker's end of a socket,
    that worker's crash would then never show as end-of-file, and its chunk would wait for ever.
    """
    with _fork_lock:
        for obj in objects:
            if isinstance(obj, int):
                owned_fds.discard(obj)
                os.close(obj)
            else:
                try:
                    owned_fds.discard(obj.fileno())
                except (OSError, ValueError):
                    continue  # closed already
                obj.close()


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), listed in ``owned_fds``; None without them
    (not Linux 5.3+, or refused by a sandbox): crashes are then seen by the socket alone.

    A "fork" or "spawn" worker is our child, unreaped, so its pid names it. A fork server's worker
    that died at once may be reaped already: then pidfd_open fails (no sentinel), or, were its
    pid reused within that instant, the sentinel watches a stranger; either way the socket
    still shows the crash, as without pidfds.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:  # pragma: no cover - not Linux
        return None
    with _fork_lock:
        try:
            fd: int = pidfd_open(pid)
        except OSError:  # pragma: no cover - old kernel, seccomp
            return None
        owned_fds.add(fd)
    return fd


def init_message() -> bytes:
    """What a new worker needs first: the import path, and the module-level shared objects
    (``smartpool.Lock()`` and friends) it must attach to rather than create anew."""
    init: dict[str, object] = {"sys_path": list(sys.path), "cwd": os.getcwd()}
    sync = sys.modules.get("smartpool._sync")
    if sync is not None:
        init["sync_state"] = sync.export_state()
    return pickle.dumps(init)


def start_worker(method: str) -> WorkerProcess:
    """Start one worker with ``method`` ("forkserver", "spawn" or "fork")."""
    with _fork_lock:
        parent_sock, child_sock = socket.socketpair()
        owned_fds.update((parent_sock.fileno(), child_sock.fileno()))
    try:
        with sigint_blocked():
            proc = _start(method, parent_sock, child_sock)
    except BaseException:  # out of descriptors or processes, say: keep nothing of it
        close_owned(parent_sock)
        raise
    finally:
        close_owned(child_sock)
    try:
        proc.conn.send_bytes(init_message())
        reports = crash_reports.mode()
        with _fork_lock:  # listed as it is made, as the sockets are
            proc.report = crash_reports.new_file(reports)
            owned_fds.update(() if proc.report is None else (proc.report,))
        crash_reports.hand_over(proc.conn.fileno(), reports, proc.report)
    except BaseException:
        proc.kill()
        proc.close()
        raise
    return proc


def _start(method: str, parent_sock: socket.socket, child_sock: socket.socket) -> WorkerProcess:
    if method == "forkserver":
        server = _server()
        try:
            return server.spawn(parent_sock, child_sock)
        except OSError:
            if not server.dead:  # refused: out of descriptors or processes
                raise
            return _server().spawn(parent_sock, child_sock)  # it died: once more with a new one
    if method == "spawn":
        return _SpawnedWorker.start(parent_sock, child_sock)
    return _ForkedWorker.start(parent_sock, child_sock)


def _connection(sock: socket.socket) -> Channel:
    return Channel(sock.detach())


# -- forkserver ---------------------------------------------------------------------------------


class _ServerWorker(WorkerProcess):
    def __init__(self, server: _ForkServer, pid: int, conn: Channel) -> None:
        super().__init__(pid, conn)
        self._server = server

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


class _ForkServer:
    """The caller's handle on the fork server process (see ``server``).

    Requests and answers are single datagrams on a SOCK_SEQPACKET pair, each answer tagged with
    its request's number: a request interrupted between send and receive (Ctrl-C) leaves a stale
    answer behind, which the next request recognises and skips instead of reading as its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        with _fork_lock:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            owned_fds.update((ours.fileno(), theirs.fileno()))
        self._ctrl = ours
        self.dead = False
        self._popen: subprocess.Popen[bytes] | None = None
        try:
            self._launch(ours, theirs)
        except BaseException:  # out of descriptors or processes, say: keep nothing of it
            close_owned(ours)
            raise
        finally:
            close_owned(theirs)

    def _launch(self, ours: socket.socket, theirs: socket.socket) -> None:
        """Start the server on ``theirs``: forked if this process is single-threaded, else
        ``python -c``."""
        with spare.quiet() as waiting:  # kept probe threads stay waiting through the fork
            forked = _single_threaded(also_harmless=waiting)
            if forked:
                from . import server  # imported here, not in the child: a fork child never imports

                flush_std_streams()
                with warnings.catch_warnings():
                    # Python 3.12+ warns about forking with threads; the only others that can
                    # exist here are the deadline watcher and waiting probe threads, which hold
                    # nothing the server needs.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.pid = os.fork()
                if self.pid == 0:  # the server: forked while nothing else ran, so fork is safe
                    try:
                        ours.close()
                        server.drop_shared_descriptors(keep=theirs.fileno())
                        server.serve(theirs)
                    finally:
                        os._exit(1)
        if not forked:
            code = (
                f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
                "from smartpool._process.server import main_from_exec; main_from_exec()"
            )
            import subprocess

            self._popen = subprocess.Popen(
                [sys.executable, "-c", code, str(theirs.fileno())], pass_fds=[theirs.fileno()]
            )
            self.pid = self._popen.pid

    def spawn(self, parent_sock: socket.socket, child_sock: socket.socket) -> WorkerProcess:
        pid = self.request(("spawn",), fds=[child_sock.fileno()])
        if isinstance(pid, tuple):  # refused (errno, strerror): out of descriptors or processes
            raise OSError(*cast("tuple[int, str]", pid))
        assert isinstance(pid, int)
        return _ServerWorker(self, pid, _connection(parent_sock))

    def request(self, request: tuple[object, ...], fds: list[int] | None = None) -> object:
        """Send ``request`` and return the server's answer; OSError once the server is gone."""
        with self._lock:
            if self.dead:
                raise OSError("smartpool's fork server exited unexpectedly")
            number = next(self._ids)
            try:
                socket.send_fds(self._ctrl, [pickle.dumps((number, *request))], fds or [])
                while True:
                    data = self._ctrl.recv(65536)
                    if not data:
                        raise OSError("smartpool's fork server exited unexpectedly")
                    answered, answer = pickle.loads(data)
                    if answered == number:
                        return answer
            except OSError:
                self.dead = True  # the next _server() starts a new one
                raise

    def stop(self) -> None:
        """Close the control socket: the server kills any worker left and exits."""
        try:
            self.request(("bye",))  # on purpose: nothing of ours for the server to clean up
        except OSError:
            pass
        with self._lock:
            self.dead = True
            if self._ctrl.fileno() != -1:
                close_owned(self._ctrl)
        if self._popen is not None:
            self._popen.wait(timeout=10)
        else:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


_server_lock = threading.Lock()
_server_instance: _ForkServer | None = None


def _server() -> _ForkServer:
    """The running fork server, started on first use and again if it died."""
    global _server_instance
    with _server_lock:
        dead, instance = None, _server_instance
        if instance is not None and instance.dead:
            dead, instance = instance, None
        if instance is None:
            instance = _server_instance = _ForkServer()
    if dead is not None:
        dead.stop()  # reap it
    return instance


def ensure_server() -> None:
    """Start the fork server now if it is not running yet."""
    _server()


def stop_server() -> None:
    """Stop the fork server if one runs (at exit, after the pools shut down)."""
    global _server_instance
    with _server_lock:
        server, _server_instance = _server_instance, None
    if server is not None:
        server.stop()


def forget_server() -> None:
    """In a forked child: the parent's server handle is not ours to use or stop."""
    global _server_instance, _server_lock, _fork_lock
    _server_instance = None
    _server_lock = threading.Lock()
    _fork_lock = threading.Lock()
    owned_fds.clear()


def flush_std_streams() -> None:
    """Empty the caller's stdio buffers before a fork, or the child would write them out again."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _single_threaded(also_harmless: Set[int] = frozenset()) -> bool:
    """Whether forking now is safe: no thread but this one, or only smartpool's deadline
    watcher (``_deadline``), which only ever waits on its own condition or ends an iterator,
    and threads in ``also_harmless`` (probe threads kept waiting for work)."""
    harmless = ({deadline.watcher.native_id} | set(also_harmless)) - {None}
    try:
        tasks = {int(tid) for tid in os.listdir("/proc/self/task")}
    except FileNotFoundError:  # pragma: no cover - no /proc
        return threading.active_count() == 1 + len(harmless)
    return len(tasks - harmless) == 1


# -- spawn and fork -------------------------------------------------------------------------------


class _SpawnedWorker(WorkerProcess):
    def __init__(self, popen: subprocess.Popen[bytes], conn: Channel) -> None:
        super().__init__(popen.pid, conn)
        self._popen = popen

    @classmethod
    def start(cls, parent_sock: socket.socket, child_sock: socket.socket) -> _SpawnedWorker:
        fd = child_sock.fileno()
        code = (
            f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
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
        with _fork_lock:
            # Read before fork: the at-fork hook clears it in the child.
            inherited = [fd for fd in owned_fds if fd != child_sock.fileno()]
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


os.register_at_fork(after_in_child=forget_server)
