"""Messages between the caller and a worker: length-prefixed bytes over one socket.

This is the small part of ``multiprocessing.connection`` the pool needs (``send_bytes``,
``recv_bytes``, ``wait``), without importing ``multiprocessing``: that import alone is a sizeable
share of the first process call's cost.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from collections.abc import Sequence

_HEADER = struct.Struct("!Q")  # the payload's length
_CHUNK = 1 << 20  # read at most this much per system call into the growing buffer


class Channel:
    """One end of a worker's socket, owning the file descriptor."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        if self._fd < 0:
            raise OSError("channel is closed")
        return self._fd

    def send_bytes(self, data: bytes) -> None:
        """Send one message (blocking until the socket took all of it)."""
        parts = [memoryview(_HEADER.pack(len(data))), memoryview(data)]
        while parts:
            sent = os.writev(self.fileno(), parts)
            while parts and sent >= len(parts[0]):
                sent -= len(parts[0])
                parts.pop(0)
            if parts and sent:
                parts[0] = parts[0][sent:]

    def recv_bytes(self) -> bytes | bytearray:
        """Receive one whole message; EOFError if the other end closed (or died)."""
        (size,) = _HEADER.unpack(self._read_exactly(_HEADER.size))
        return self._read_exactly(size)

    def _read_exactly(self, size: int) -> bytes | bytearray:
        fd = self.fileno()
        first = os.read(fd, size)
        if len(first) == size:
            return first
        if not first and size:
            raise EOFError("the other end of the channel closed")
        buffer = bytearray(size)
        view = memoryview(buffer)
        view[: len(first)] = first
        got = len(first)
        while got < size:
            n = os.readv(fd, [view[got : got + _CHUNK]])
            if n == 0:
                raise EOFError("the other end of the channel closed mid-message")
            got += n
        return buffer  # not copied into bytes: pickle reads a bytearray as well

    def shut_down(self) -> None:
        """End the conversation from this side: what the other end sent before is still read,
        then end-of-file, even while some other process holds a copy of the other end (a child
        the worker forked). Both ends stay open until closed."""
        if self._fd < 0:
            return  # closed: nothing more to read
        sock = socket.socket(fileno=self._fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not connected any more: reads see end-of-file already
        finally:
            sock.detach()

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass


def keep_from_children(fd: int) -> None:
    """Keep a worker's socket ``fd`` out of the processes its tasks start.

    A child that held a copy would keep the socket open after the worker died, hiding the crash
    from the caller, and could write into the worker's stream. So ``fd`` is not passed on by
    ``exec``, and in a child made by ``os.fork`` (a daemon, ``multiprocessing``'s fork) it is
    pointed at /dev/null: closed, its number could be reused under the worker's ``Channel``.
    """
    os.set_inheritable(fd, False)

    def in_child() -> None:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd, inheritable=False)
        finally:
            os.close(devnull)

    os.register_at_fork(after_in_child=in_child)


def wait(objects: Sequence[Channel | int], timeout: float | None) -> list[Channel | int]:
    """The channels (or raw fds) that are readable or hung up, waiting up to ``timeout``."""
    poller = select.poll()
    by_fd: dict[int, Channel | int] = {}
    for obj in objects:
        fd = obj if isinstance(obj, int) else obj.fileno()
        by_fd[fd] = obj
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return [by_fd[fd] for fd, _ in poller.poll(ms)]
