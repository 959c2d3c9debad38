"""The caller's side of the fork server (the server itself is ``server``).

One fork server per caller, started on first use and again if it dies: forked from the caller
while nothing else runs there (cheap, and it shares the caller's imported modules), else started
as a fresh interpreter. Workers are forked from it on request, so a "forkserver" start costs one
fork of a small, single-threaded process, however many threads the caller runs.
"""

from __future__ import annotations

import itertools
import os
import pickle
import socket
import sys
import threading
import warnings
from collections.abc import Set
from typing import TYPE_CHECKING, cast

from .._work import deadline
from .._work.spare_threads import spare
from . import descriptors
from .descriptors import close_owned, flush_std_streams

if TYPE_CHECKING:
    import subprocess  # imported where a process is started with it: the import is not free

# This file is smartpool/_process/forkserver.py: the folder holding the smartpool package is three
# up. A fresh interpreter is told to look there, not to import the package to find the file.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


class ForkServer:
    """The caller's handle on the fork server process (see ``server``).

    Requests and answers are single datagrams on a SOCK_SEQPACKET pair, each answer tagged with
    its request's number: a request interrupted between send and receive (Ctrl-C) leaves a stale
    answer behind, which the next request recognises and skips instead of reading as its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        with descriptors.fork_lock:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            descriptors.owned_fds.update((ours.fileno(), theirs.fileno()))
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
            forked = single_threaded(also_harmless=waiting)
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
                f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
                "from smartpool._process.server import main_from_exec; main_from_exec()"
            )
            import subprocess

            self._popen = subprocess.Popen(
                [sys.executable, "-c", code, str(theirs.fileno())], pass_fds=[theirs.fileno()]
            )
            self.pid = self._popen.pid

    def spawn(self, child_sock: socket.socket) -> int:
        """Have the server fork a worker on ``child_sock`` (passed over); the worker's pid."""
        pid = self.request(("spawn",), fds=[child_sock.fileno()])
        if isinstance(pid, tuple):  # refused (errno, strerror): out of descriptors or processes
            raise OSError(*cast("tuple[int, str]", pid))
        assert isinstance(pid, int)
        return pid

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
                self.dead = True  # the next server() starts a new one
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
_server_instance: ForkServer | None = None


def server() -> ForkServer:
    """The running fork server, started on first use and again if it died."""
    global _server_instance
    with _server_lock:
        dead, instance = None, _server_instance
        if instance is not None and instance.dead:
            dead, instance = instance, None
        if instance is None:
            instance = _server_instance = ForkServer()
    if dead is not None:
        dead.stop()  # reap it
    return instance


def ensure_server() -> None:
    """Start the fork server now if it is not running yet."""
    server()


def server_if_cheap() -> bool:
    """Whether the fork server runs, started now if it can be forked from this process (no
    thread runs but harmless ones): never a fresh interpreter, which would serve every later
    worker without the caller's imported modules."""
    with _server_lock:
        instance = _server_instance
    if instance is not None and not instance.dead:
        return True
    with spare.quiet() as waiting:
        if not single_threaded(also_harmless=waiting):
            return False
    try:
        server()
    except OSError:  # out of descriptors or processes: a pool's first worker will say so
        return False
    return True


def stop_server() -> None:
    """Stop the fork server if one runs (at exit, after the pools shut down)."""
    global _server_instance
    with _server_lock:
        running, _server_instance = _server_instance, None
    if running is not None:
        running.stop()


def forget_server() -> None:
    """In a forked child: the parent's server handle is not ours to use or stop."""
    global _server_instance, _server_lock
    _server_instance = None
    _server_lock = threading.Lock()


def single_threaded(also_harmless: Set[int] = frozenset()) -> bool:
    """Whether forking now is safe: no thread but this one, or only smartpool's deadline
    watcher (``_deadline``), which only ever waits on its own condition or ends an iterator,
    and threads in ``also_harmless`` (probe threads kept waiting for work)."""
    harmless = ({deadline.watcher.native_id} | set(also_harmless)) - {None}
    try:
        tasks = {int(tid) for tid in os.listdir("/proc/self/task")}
    except FileNotFoundError:  # pragma: no cover - no /proc
        return threading.active_count() == 1 + len(harmless)
    return len(tasks - harmless) == 1


os.register_at_fork(after_in_child=forget_server)
