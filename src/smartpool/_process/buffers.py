"""Large buffers (NumPy arrays and the like) travel to workers through shared memory.

Pickle protocol 5 hands big buffers out of the stream (``_serialize.dumps(..., large)``). Each one
is written once into a file in ``/dev/shm`` (memory, not disk); the worker maps the file
copy-on-write and unpickles straight from the mapping, so the array it sees is never copied
again, and stays writable without touching the caller's data. The caller unlinks the files once
the chunk is settled, however it ends (a chunk retried after a crash maps them again).

File names are ``smartpool-<pid>-<64 random bits>``, made with ``O_EXCL``: another program can
neither guess a name in advance nor have smartpool write into its file, and a name already taken
is left alone and another one tried. smartpool only ever removes files it made.

Within one call over a list or tuple, a buffer that several items (or chunks) share is written
once (:class:`Exports`): the items were all made before the call, so the same object holds the
same contents for every one of them. Items from a generator get no such reuse: a generator may
refill one buffer between items.

A file whose chunk is settled, and whose worker has let go of every array made from it (see
:mod:`.mappings`), is kept for a few seconds and written over by the next buffer of its size
(:mod:`.spares`): a new file costs twice as much to write. What a file holds is always written
anew; only its pages are reused.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import pickle
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .spares import spares

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor


def _directory() -> str:
    if os.path.isdir("/dev/shm"):
        return "/dev/shm"
    import tempfile  # only here: it imports shutil, random and more (~2 ms at a first map)

    return tempfile.gettempdir()


DIRECTORY = _directory()


def file_prefix(pid: int) -> str:
    """The start of the name of every buffer file process ``pid`` makes (a random part follows)."""
    return f"smartpool-{pid}-"


#: Hex digits of the random part of a file name: 64 bits, which nobody can guess in advance.
NAME_DIGITS = 16
#: New names tried when the first already exists (someone else's file, left alone) before the
#: export gives up with ``FileExistsError``.
NAME_ATTEMPTS = 8


def is_buffer_file(name: str, pid: int) -> bool:
    """Whether ``name`` has the form of a buffer file process ``pid`` made."""
    prefix = file_prefix(pid)
    rest = name[len(prefix) :]
    return (
        name.startswith(prefix)
        and len(rest) == NAME_DIGITS
        and all(c in "0123456789abcdef" for c in rest)
    )


def export(buffers: Sequence[pickle.PickleBuffer]) -> tuple[str, ...]:
    """Write each buffer to its own shared-memory file; return their paths.

    Copying is the whole cost, and ``os.write`` releases the GIL: several buffers are written
    by several threads at once. A kept file of the same size is written over rather than a new
    one made; when shared memory is full, the kept files are removed and the writing tried
    once more.
    """
    try:
        return _export(buffers)
    except OSError as exc:
        if exc.errno != errno.ENOSPC or not spares.drop():
            raise
    return _export(buffers)


def _export(buffers: Sequence[pickle.PickleBuffer]) -> tuple[str, ...]:
    #: The files this export made or took over: removed if it fails. Never any other file.
    ours: list[str] = []

    def put(buffer: pickle.PickleBuffer) -> str:
        path = spares.take(buffer.raw().nbytes)
        if path is not None:
            ours.append(path)
            if _write_over(path, buffer):
                return path
            ours.remove(path)  # removed meanwhile (by hand, say): the name is not ours any more
        return _write_new(buffer, ours)

    futures: list[Future[str]] = []
    try:
        if len(buffers) > 1 and sum(b.raw().nbytes for b in buffers) >= PARALLEL_BYTES:
            futures = [_writers().submit(put, buffer) for buffer in buffers]
            return tuple(future.result() for future in futures)
        return tuple(put(buffer) for buffer in buffers)
    except BaseException:
        if futures:
            from concurrent.futures import wait

            for future in futures:
                future.cancel()
            wait(futures)  # no writer may still be making a file once they are removed
        discard(ours)
        raise


def _new_path() -> str:
    """A fresh, unpredictable name: another program cannot make it first, nor guess ours."""
    random = os.urandom(NAME_DIGITS // 2).hex()
    return os.path.join(DIRECTORY, f"{file_prefix(os.getpid())}{random}")


def _write_new(buffer: pickle.PickleBuffer, ours: list[str]) -> str:
    """Write ``buffer`` to a new file of a name nobody else uses; return its path."""
    for _ in range(NAME_ATTEMPTS):
        path = _new_path()
        try:
            _write(path, buffer)
        except FileExistsError:  # not ours: left alone, and another name tried
            continue
        ours.append(path)
        return path
    raise FileExistsError(
        errno.EEXIST, f"{NAME_ATTEMPTS} new file names were all taken already", DIRECTORY
    )


#: Below this many bytes in all, buffers are written one after the other.
PARALLEL_BYTES = 16 << 20


def _write(path: str, buffer: pickle.PickleBuffer) -> None:
    """Make the file ``path`` and write ``buffer`` into it; ``FileExistsError`` (and nothing
    touched) if the name is taken. A file this made is removed again if the writing fails."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        view = buffer.raw()
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
    os.close(fd)


def _write_over(path: str, buffer: pickle.PickleBuffer) -> bool:
    """Write ``buffer`` over a kept file of its size, through the caller's mapping of it (its
    pages are already there, and after the first time, mapped). False if the file is gone."""
    try:
        mapping = spares.mapping(path)
    except FileNotFoundError:  # removed meanwhile (by hand, say)
        return False
    _copy_into(mapping, buffer.raw())
    return True


def _copy_with_gil(destination: mmap.mmap, source: memoryview) -> None:
    destination[:] = source


def _load_copy() -> Callable[[mmap.mmap, memoryview], None]:
    """The C copy if it was built and not disabled (``SMARTPOOL_PURE_PYTHON=1``), which lets
    other threads run while it copies; else the same copy, holding the GIL."""
    if os.environ.get("SMARTPOOL_PURE_PYTHON", "") not in ("", "0"):
        return _copy_with_gil
    try:
        from ._copy import copy_into
    except ImportError:  # not built: no C compiler at install
        return _copy_with_gil
    return copy_into


_copy_into = _load_copy()


@functools.cache
def _writers() -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor  # first large export only: not free

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ThreadPoolExecutor(max_workers=max(2, cores or 1), thread_name_prefix="smartpool-copy")


@dataclass
class _File:
    path: str
    #: The object whose buffer the file holds: kept alive, so its id is not reused meanwhile.
    owner: object
    #: (id of the owner, bytes): how a later chunk finds the file.
    key: tuple[int, int]
    #: Chunks in flight that use the file.
    users: int
    #: False once a chunk that used it was settled without its worker letting go of it.
    reusable: bool = True


class Exports:
    """The shared-memory files of one call. With ``reuse``, a buffer already in a file that a
    chunk in flight still uses is not written again; a file goes once its last chunk is settled.
    """

    def __init__(self, reuse: bool) -> None:
        self._reuse = reuse
        self._lock = threading.Lock()
        self._by_buffer: dict[tuple[int, int], _File] = {}
        self._by_path: dict[str, _File] = {}

    def export(self, large: Sequence[pickle.PickleBuffer]) -> tuple[str, ...]:
        """Like :func:`export`; every path returned must be given back to :meth:`release`."""
        if not self._reuse:
            return export(large)
        paths: list[str] = []
        fresh: list[int] = []
        with self._lock:
            for index, buffer in enumerate(large):
                view = buffer.raw()
                known = self._by_buffer.get((id(view.obj), view.nbytes))
                if known is not None and known.owner is view.obj:
                    known.users += 1
                    paths.append(known.path)
                else:
                    fresh.append(index)
                    paths.append("")
        try:
            written = export([large[i] for i in fresh])
        except BaseException:
            self.release([path for path in paths if path])
            raise
        with self._lock:
            for index, path in zip(fresh, written, strict=True):
                view = large[index].raw()
                file = _File(path, view.obj, (id(view.obj), view.nbytes), users=1)
                self._by_buffer.setdefault(file.key, file)
                self._by_path[path] = file
                paths[index] = path
        return tuple(paths)

    def releaser(self, paths: tuple[str, ...]) -> Callable[[bool], None]:
        """A callable that gives ``paths`` back to :meth:`release` on its first call only (a
        task is settled by its pool and, cancelled, by its Future: each may call it)."""
        box = [paths]

        def release_once(reusable: bool) -> None:
            try:
                taken = box.pop()  # atomic: of two threads calling at once, one gets the paths
            except IndexError:
                return
            self.release(taken, reusable)

        return release_once

    def release(self, paths: Sequence[str], reusable: bool = False) -> None:
        """The chunk that used ``paths`` is settled; the files nobody else uses are kept for
        reuse if every worker that used them let go of them (``reusable``), else removed."""
        if not self._reuse:
            settled(paths, reusable)
            return
        gone: list[str] = []
        kept: list[str] = []
        with self._lock:
            for path in paths:
                file = self._by_path.get(path)
                if file is None:
                    continue
                file.users -= 1
                file.reusable = file.reusable and reusable
                if file.users == 0:
                    del self._by_path[path]
                    if self._by_buffer.get(file.key) is file:
                        del self._by_buffer[file.key]
                    (kept if file.reusable else gone).append(path)
        settled(kept, True)
        discard(gone)


def settled(paths: Sequence[str], reusable: bool) -> None:
    """The chunk that used ``paths`` is settled: keep them for reuse, or remove them."""
    if not reusable:
        discard(paths)
        return
    spares.keep(paths)


def discard(paths: Sequence[str]) -> None:
    """Remove files a worker did not get to (it died, or the call was cancelled)."""
    for path in paths:
        spares.unmap(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
