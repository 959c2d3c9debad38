"""Large buffers (NumPy arrays and the like) travel to workers through shared memory.

Pickle protocol 5 hands big buffers out of the stream (``_serialize.dumps(..., large)``). Each one
is written once into a file in ``/dev/shm`` (memory, not disk); the worker maps the file
copy-on-write and unpickles straight from the mapping, so the array it sees is never copied
again, and stays writable without touching the caller's data. The caller unlinks the files once
the chunk is settled, however it ends (a chunk retried after a crash maps them again).
"""

from __future__ import annotations

import itertools
import mmap
import os
import pickle
import tempfile
from collections.abc import Sequence

_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_counter = itertools.count()


def export(buffers: Sequence[pickle.PickleBuffer]) -> tuple[str, ...]:
    """Write each buffer to its own shared-memory file; return their paths."""
    paths = []
    try:
        for buffer in buffers:
            path = os.path.join(_DIRECTORY, f"smartpool-{os.getpid()}-{next(_counter)}")
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            paths.append(path)
            try:
                view = buffer.raw()
                written = 0
                while written < view.nbytes:
                    written += os.write(fd, view[written:])
            finally:
                os.close(fd)
    except BaseException:
        discard(paths)
        raise
    return tuple(paths)


def attach(paths: Sequence[str]) -> list[memoryview]:
    """Map each file copy-on-write; a mapping lives as long as the arrays made from it."""
    views = []
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
