"""Large buffers (NumPy arrays and the like) travel to workers through shared memory.

Pickle protocol 5 hands big buffers out of the stream (``_serialize.dumps(..., large)``). Each one
is written once into a file in ``/dev/shm`` (memory, not disk); the worker maps the file
copy-on-write and unpickles straight from the mapping, so the array it sees is never copied
again, and stays writable without touching the caller's data. The caller unlinks the files once
the chunk is settled, however it ends (a chunk retried after a crash maps them again).
"""

from __future__ import annotations

import functools
import itertools
import mmap
import os
import pickle
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_counter = itertools.count()


def export(buffers: Sequence[pickle.PickleBuffer]) -> tuple[str, ...]:
    """Write each buffer to its own shared-memory file; return their paths.

    Copying is the whole cost, and ``os.write`` releases the GIL: several buffers are written
    by several threads at once.
    """
    paths = tuple(
        os.path.join(_DIRECTORY, f"smartpool-{os.getpid()}-{next(_counter)}") for _ in buffers
    )
    try:
        if len(buffers) > 1 and sum(b.raw().nbytes for b in buffers) >= PARALLEL_BYTES:
            list(_writers().map(_write, paths, buffers))
        else:
            for path, buffer in zip(paths, buffers, strict=True):
                _write(path, buffer)
    except BaseException:
        discard(paths)
        raise
    return paths


#: Below this many bytes in all, buffers are written one after the other.
PARALLEL_BYTES = 16 << 20


def _write(path: str, buffer: pickle.PickleBuffer) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        view = buffer.raw()
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
    finally:
        os.close(fd)


@functools.cache
def _writers() -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor  # first large export only: not free

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ThreadPoolExecutor(max_workers=max(2, cores or 1), thread_name_prefix="smartpool-copy")


def attach(paths: Sequence[str]) -> list[memoryview]:
    """Map each file copy-on-write; a mapping lives as long as the arrays made from it."""
    views: list[memoryview] = []
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            mapping = mmap.mmap(
                fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE
            )
        finally:
            os.close(fd)
        views.append(memoryview(mapping))
    return views


def discard(paths: Sequence[str]) -> None:
    """Remove files a worker did not get to (it died, or the call was cancelled)."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
