"""A worker's mappings of shared-memory files, kept from one chunk to the next while unchanged.

Mapping a file costs more than reading it: the kernel sets up every page on first touch (for 8 MiB,
two to three times as long as summing it). The caller writes a new buffer over a kept file of its
size (see ``spares``), so the next chunk often names a file this worker has mapped before; the
mapping is then used again, its pages already in place, and shows what the caller wrote last.

Two things would make an old mapping wrong, and both are checked after every chunk, before the
worker replies (a mapping that fails either check is not kept):

* something still uses it (an array the function kept): the mapping is left to it, and the
  caller is told (``let_go`` returns False), so that the file is never written over;
* the function wrote into its array: the worker's mapping is copy-on-write, so those pages now
  hold the worker's own copies, which would hide what the caller writes next. The page flags in
  ``/proc/self/pagemap`` tell such private copies from the file's pages.

Where either check cannot be made (no ``/proc/self/pagemap``, no ``ctypes``, a free-threaded
interpreter whose reference counts do not tell), every mapping is closed after its chunk, as
files are mapped anew each time. Mappings of files the caller has removed are closed (by
:meth:`Mappings.sweep`, which the worker also calls while idle), so that their memory is given
back.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

#: At most this many mappings are kept, the least recently used closed first.
MAX_KEPT = 256
#: Kept mappings whose file is gone are looked for at most this often (a ``stat`` each).
SWEEP_SECONDS = 0.1
#: An idle worker looks for them this often.
IDLE_SWEEP_SECONDS = 1.0

_PAGE = mmap.PAGESIZE
#: For the top byte of a pagemap entry: 1 if the page is a private copy (present and not a file
#: page: bit 63 set, bit 61 clear) or swapped out (bit 62; only private copies swap here).
_PRIVATE_COPY = bytes(1 if b & 0x40 or (b & 0x80 and not b & 0x20) else 0 for b in range(256))


class Mappings:
    """The mappings one worker process keeps (see the module's documentation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the kept mappings: the idle sweep runs on another thread
        self._kept: dict[str, tuple[mmap.mmap, int]] = {}  # path -> (mapping, its address)
        self._in_use: list[tuple[str, mmap.mmap, int]] = []
        self._pagemap: int | None = None
        self._enabled: bool | None = None
        self._swept = 0.0

    def attach(self, paths: Sequence[str]) -> list[memoryview]:
        """A view of each file, mapped copy-on-write (or the mapping kept from an earlier
        chunk); hand them to :meth:`let_go` once the chunk is done."""
        self.sweep(SWEEP_SECONDS)
        views: list[memoryview] = []
        for path in paths:
            with self._lock:
                kept = self._kept.pop(path, None)
            mapping, address = kept if kept is not None else (_map(path), 0)
            self._in_use.append((path, mapping, address))
            views.append(memoryview(mapping))
        return views

    def let_go(self, views: list[memoryview]) -> bool:
        """Release the chunk's views; keep each mapping that passes both checks. Returns False
        if something still uses one of them (its file must then never be written over)."""
        for view in views:
            view.release()
        views.clear()
        entries, self._in_use = self._in_use, []
        free = True
        for index in range(len(entries)):
            if _refs(entries, index) > _UNUSED_REFS:  # an array made from it is still alive
                free = False
                continue
            path, mapping, address = entries[index]
            if not self.enabled():
                mapping.close()
                continue
            if not address:
                address = _address(mapping)
            if address and not self._copied_any(address, len(mapping)):
                with self._lock:
                    self._kept[path] = (mapping, address)
            else:
                mapping.close()
        with self._lock:
            extra = [
                self._kept.pop(next(iter(self._kept))) for _ in range(len(self._kept) - MAX_KEPT)
            ]
        for mapping, _ in extra:
            mapping.close()
        return free

    def enabled(self) -> bool:
        """Whether mappings can be kept here (both checks can be made)."""
        if self._enabled is None:
            self._enabled = _refcounts_tell() and self._open_pagemap()
        return self._enabled

    def _open_pagemap(self) -> bool:
        try:
            self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
            os.pread(self._pagemap, 8, 0)
            import ctypes  # for ``_address``; missing on some builds

            del ctypes
        except (OSError, ImportError):
            return False
        return True

    def _copied_any(self, address: int, size: int) -> bool:
        """Whether any page from ``address`` on is a private copy (the function wrote there)."""
        assert self._pagemap is not None
        pages = (size + _PAGE - 1) // _PAGE
        try:
            entries = os.pread(self._pagemap, pages * 8, address // _PAGE * 8)
        except OSError:
            return True
        if len(entries) < pages * 8:
            return True
        return b"\x01" in entries[7::8].translate(_PRIVATE_COPY)

    def sweep(self, unless_within: float = 0.0) -> None:
        """Close the kept mappings of files the caller has removed (their memory is held for as
        long as they are mapped), unless that was looked at ``unless_within`` seconds ago."""
        now = time.monotonic()
        with self._lock:
            if not self._kept or now - self._swept < unless_within:
                return
            self._swept = now
            paths = list(self._kept)
        gone = [path for path in paths if not os.path.exists(path)]
        with self._lock:
            closing = [self._kept.pop(path) for path in gone if path in self._kept]
        for mapping, _ in closing:
            mapping.close()


def _refs(entries: list[tuple[str, mmap.mmap, int]], index: int) -> int:
    """References to the mapping of ``entries[index]``, as ``sys.getrefcount`` counts them: the
    entry's own, and more for each object made from it that is still alive."""
    return sys.getrefcount(entries[index][1])


def _unused_refs() -> int:
    """What :func:`_refs` counts for a mapping that only its entry holds, measured the same way
    once: the count of references on the interpreter's stack changes between versions."""
    entries = [("", mmap.mmap(-1, mmap.PAGESIZE), 0)]
    unused = _refs(entries, 0)
    entries[0][1].close()
    return unused


#: What :func:`_refs` counts for a mapping nothing else uses.
_UNUSED_REFS = _unused_refs()


def _map(path: str) -> mmap.mmap:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


def _address(mapping: mmap.mmap) -> int:
    """Where ``mapping`` starts in this process's memory (0 if it cannot be told)."""
    import ctypes

    try:
        window: Any = ctypes.c_char.from_buffer(mapping)
    except (TypeError, ValueError):
        return 0
    address = ctypes.addressof(window)
    del window  # gives the export back: the mapping could not be closed while it lives
    return address


def _refcounts_tell() -> bool:
    """Reference counts tell whether anything still uses a mapping, except on a free-threaded
    interpreter (deferred and biased counts)."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_gil_enabled is None or bool(is_gil_enabled())
