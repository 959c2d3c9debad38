"""Shared-memory files kept after a call, to be written over by the next one instead of made anew.

Writing a large buffer into a new file in ``/dev/shm`` costs twice as much as writing it over an
old file of the same size: the kernel must find, zero and map every page of a new file first.
Programs that send large arrays to processes tend to do it again and again with arrays of the
same sizes, so the files of a settled chunk are kept here, by size, for a few seconds.

A file is only kept once the worker that used it has let go of every array made from it (the
worker says so in its reply; see ``mappings``): overwriting a file a worker still reads,
say an array a function put in a global, would change that array under it. Files are removed
after ``KEEP_SECONDS`` unused, by ``smartpool.shutdown()`` and at exit, and at once when shared
memory runs short; they never take more than half the free space of the file system.

The caller writes over a file through a mapping of its own, made on the file's first reuse and
kept with the file: copying into pages already mapped costs half of ``os.pwrite``.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from collections.abc import Sequence

from .._work import deadline

#: A file not written over within this many seconds is removed.
KEEP_SECONDS = 5.0
#: Kept files never take more than this share of the free space left in their file system.
MAX_SHARE_OF_FREE = 0.5


class Spares:
    """The kept files of this process, by size in bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: size -> [(path, when it was kept)], the most recently kept last.
        self._by_size: dict[int, list[tuple[str, float]]] = {}
        #: The deadline watcher's token for the next removal of unused files, or None.
        self._expiry: int | None = None
        #: path -> this process's shared, writable mapping of it (kept or in use).
        self._maps: dict[str, mmap.mmap] = {}

    def take(self, size: int) -> str | None:
        """A kept file of exactly ``size`` bytes, now the caller's to write over (or remove)."""
        with self._lock:
            kept = self._by_size.get(size)
            if not kept:
                return None
            path, _ = kept.pop()
            if not kept:
                del self._by_size[size]
            return path

    def mapping(self, path: str) -> mmap.mmap:
        """This process's writable mapping of ``path``, made (and faulted in) on first use.
        Raises ``OSError`` if the file cannot be opened."""
        with self._lock:
            mapping = self._maps.get(path)
        if mapping is None:
            fd = os.open(path, os.O_RDWR)
            try:
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                mapping = mmap.mmap(fd, 0, flags=flags)
            finally:
                os.close(fd)
            with self._lock:
                self._maps[path] = mapping
        return mapping

    def unmap(self, path: str) -> None:
        """Let go of this process's mapping of ``path``, if any (the file is being removed)."""
        with self._lock:
            mapping = self._maps.pop(path, None)
        if mapping is None:
            return
        try:
            mapping.close()
        except BufferError:  # a copy into it is still running (Ctrl-C cut its export short):
            pass  # it is unmapped once that copy lets go of it and the object is freed

    def keep(self, paths: Sequence[str]) -> None:
        """Keep ``paths`` (which no worker maps any more) for reuse, or remove those there is no
        room for."""
        if not paths:
            return
        try:
            room = _free_bytes(paths[0]) * MAX_SHARE_OF_FREE
        except OSError:
            room = 0.0
        sizes = [_size(path) for path in paths]
        gone: list[str] = []
        with self._lock:
            kept = self._bytes()
            for path, size in zip(paths, sizes, strict=True):
                if size > 0 and kept + size <= room:
                    self._by_size.setdefault(size, []).append((path, time.monotonic()))
                    kept += size
                else:
                    gone.append(path)
            if self._by_size and self._expiry is None:
                self._arm(KEEP_SECONDS)
        for path in gone:
            self.unmap(path)
            _remove(path)

    def drop(self, older_than: float | None = None) -> int:
        """Remove the kept files (those kept more than ``older_than`` seconds ago, if given);
        returns how many were removed."""
        limit = time.monotonic() - older_than if older_than is not None else float("inf")
        gone: list[str] = []
        with self._lock:
            if older_than is None and self._expiry is not None:
                deadline.watcher.disarm(self._expiry)
                self._expiry = None
            for size in list(self._by_size):
                kept = self._by_size[size]
                gone += [path for path, when in kept if when <= limit]
                kept[:] = [(path, when) for path, when in kept if when > limit]
                if not kept:
                    del self._by_size[size]
        for path in gone:
            self.unmap(path)
            _remove(path)
        return len(gone)

    def paths(self) -> set[str]:
        with self._lock:
            return {path for kept in self._by_size.values() for path, _ in kept}

    def forget(self) -> None:
        """In a forked child: the files are the parent's to remove, not this process's."""
        self._lock = threading.Lock()
        self._by_size.clear()
        self._expiry = None
        self._maps.clear()  # this process's copies of the parent's mappings go with it

    def expire(self) -> None:
        """On the deadline watcher's thread: remove the files unused for ``KEEP_SECONDS``, and
        come back while any are left. (Removing a file is brief: its pages are freed.)"""
        self.drop(older_than=KEEP_SECONDS)
        with self._lock:
            self._expiry = None
            if self._by_size:
                self._arm(KEEP_SECONDS / 2)

    def _arm(self, seconds: float) -> None:
        """(With the lock held.) Have the watcher call :meth:`expire` in ``seconds``."""
        self._expiry = deadline.watcher.call_at(time.perf_counter() + seconds, Spares.expire, self)

    def _bytes(self) -> int:
        return sum(size * len(kept) for size, kept in self._by_size.items())


def _free_bytes(path: str) -> int:
    stats = os.statvfs(os.path.dirname(path))
    return stats.f_bavail * stats.f_frsize


def _size(path: str) -> int:
    """The file's size in bytes; 0 if it is gone (nothing to keep)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


spares = Spares()
os.register_at_fork(after_in_child=spares.forget)
