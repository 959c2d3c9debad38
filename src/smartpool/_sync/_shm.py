"""Named shared-memory blocks with named semaphores: the storage under every primitive.

A :class:`Handle` is one process's attachment to a block. The block starts with a header
(magic, kind, semaphore bounds, a table of the attached processes' tokens) followed by the
primitive's own int64 words and an optional byte area. Lifetime rules:

* The creator registers the names with ``multiprocessing.resource_tracker`` so that a creator
  killed outright still gets its names unlinked; attaching processes never register.
* Every attaching process enters its token in the table. A process detaches when its last
  reference to the handle goes away (``weakref.finalize``, which also runs at interpreter exit);
  it unlinks the names if no *other live* process is in the table. Dead entries do not count, so
  workers that end with ``os._exit`` (never detaching) do not keep a block alive.
* At interpreter exit the creator unlinks regardless: processes still attached keep their
  mappings, only new attachments fail.
* A process that inherits a handle through ``fork`` is not in the table and never unlinks; nor
  does a subinterpreter that attaches (its process's main interpreter holds the entry).

Mutations of the header and the slow paths of the primitives run under the block's *meta lock*:
a process-local ``threading.Lock`` plus a POSIX record lock (``fcntl.lockf``) on the block's file
descriptor. The kernel drops record locks of a process that dies, so the meta lock itself can
never be abandoned.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import mmap
import os
import secrets
import sys
import threading
import weakref
from multiprocessing import resource_tracker
from types import TracebackType
from typing import Any

from ._proc import current_token, is_alive, on_fork_in_child

# CPython's private C modules behind multiprocessing.synchronize and shared_memory; untyped.
_multiprocessing: Any = importlib.import_module("_multiprocessing")
_posixshmem: Any = importlib.import_module("_posixshmem")
SemLock = Any


def _in_subinterpreter() -> bool:
    """Whether this code runs in a subinterpreter (Python 3.14+'s interpreter backend)."""
    if sys.version_info < (3, 14):
        return False
    interpreters: Any = importlib.import_module("concurrent.interpreters")
    return bool(interpreters.get_current().id != interpreters.get_main().id)


#: Running in a subinterpreter. The user table holds one entry per process (its token), so
#: objects attached here neither enter it nor leave it: leaving would drop the entry of this
#: process's main interpreter, which shares the token, and unlink a block still in use.
SUBINTERPRETER = _in_subinterpreter()

MAGIC = 0x5350_5359_4E43_0001  # "SPSYNC" + layout version
_MAGIC, _KIND, _GONE, _NWORDS, _NSEMS = range(5)
_SEM_MAX = 5  # words 5..7 hold up to three semaphore maxvalues
_USERS = 8  # words 8..39: tokens of attached processes (0: free)
NUSERS = 32
HEADER_WORDS = _USERS + NUSERS
SEM_VALUE_MAX: int = _multiprocessing.SemLock.SEM_VALUE_MAX
_SEMAPHORE = 1  # SemLock kind: counting semaphore (the recursive kind is per process only)
PREFIX = "smartpool-"


class BlockGoneError(FileNotFoundError):
    """The named object no longer exists: every process using it let go of it."""


class MetaLock:
    """Cross-process mutex for rare slow paths; released by the kernel if its holder dies."""

    __slots__ = ("_fd", "_mutex")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._mutex = threading.Lock()

    def reset_after_fork(self) -> None:
        """Forget a thread-level hold inherited from the parent (record locks are not inherited)."""
        self._mutex = threading.Lock()

    def __enter__(self) -> None:
        self._mutex.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()


class _Resources:
    """What a handle must give back when it dies; held by the finalizer, not by the handle."""

    def __init__(self, name: str, fd: int, mm: mmap.mmap, sems: tuple[SemLock, ...]) -> None:
        self.name = name
        self.fd = fd
        self.mm = mm
        self.raw = memoryview(mm)
        self.sems = sems
        self.pid = os.getpid()
        self.tracked = False
        self.meta = MetaLock(fd)

    def sem_names(self) -> list[str]:
        return [s.name for s in self.sems]

    def close(self, words: memoryview) -> None:
        """Detach: leave the user table, unlink if no other live user remains, unmap."""
        if os.getpid() != self.pid:
            return  # inherited through fork: the parent's attachment, not ours
        if SUBINTERPRETER and not self.tracked:
            self._unmap(words)  # the table entry, if any, is this process's main interpreter's
            return
        with self.meta:
            me = current_token()
            others = False
            for i in range(_USERS, _USERS + NUSERS):
                if words[i] == me:
                    words[i] = 0
                elif words[i] != 0 and not others:
                    others = is_alive(words[i])
            if not others or (self.tracked and _exiting):
                words[_GONE] = 1
                _unlink_quietly(self.name, self.sem_names())
            elif self.tracked:  # others still use it: if they all die without letting go,
                _handed_off[self.name] = self.sem_names()  # sweep_orphans() removes it
        if self.tracked:
            resource_tracker.unregister(self.name, "shared_memory")
            for sem in self.sem_names():
                resource_tracker.unregister(sem, "semaphore")
        self._unmap(words)

    def _unmap(self, words: memoryview) -> None:
        try:
            words.release()
            self.raw.release()
            self.mm.close()
        except BufferError:  # a view is still exported somewhere; the GC will unmap
            pass
        os.close(self.fd)


#: Blocks this process created and left while others still used them.
_handed_off: dict[str, list[str]] = {}


def sweep_orphans() -> None:
    """Remove blocks this process created whose remaining users all died without detaching.

    A worker killed by a signal (a timeout, the OOM killer) cannot detach; the engine calls this
    when it has lost workers and when it shuts its pools down.
    """
    for name, sems in list(_handed_off.items()):
        try:
            fd = _posixshmem.shm_open(name, os.O_RDWR, 0o600)
        except FileNotFoundError:
            _handed_off.pop(name, None)
            continue
        try:
            with contextlib.closing(mmap.mmap(fd, HEADER_WORDS * 8)) as mm:
                meta = MetaLock(fd)
                with meta:
                    words = memoryview(mm).cast("q")
                    try:
                        users = [words[i] for i in range(_USERS, _USERS + NUSERS) if words[i]]
                        if not any(is_alive(token) for token in users):
                            words[_GONE] = 1
                            _unlink_quietly(name, sems)
                            _handed_off.pop(name, None)
                    finally:
                        words.release()
        finally:
            os.close(fd)


def _unlink_quietly(name: str, sems: list[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        _posixshmem.shm_unlink(name)
    for sem in sems:
        with contextlib.suppress(FileNotFoundError):
            _multiprocessing.sem_unlink(sem)


class Handle:
    """One process's attachment to a named block: int64 ``words``, a byte area, semaphores."""

    __slots__ = (
        "__weakref__",
        "_finalizer",
        "_res",
        "kind",
        "local",
        "local_lock",
        "meta",
        "name",
        "raw",
        "sems",
        "words",
    )

    def __init__(self, res: _Resources, kind: int, nwords: int) -> None:
        self._res = res
        self.name = res.name
        self.kind = kind
        self.sems = res.sems
        self.meta = res.meta
        self.raw = res.raw
        self.words = res.raw[: nwords * 8].cast("q")
        #: Per-process bookkeeping of the primitive (e.g. its slot), guarded by ``local_lock``.
        self.local: dict[int, int] = {}
        self.local_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, res.close, self.words)

    @classmethod
    def create(cls, kind: int, nwords: int, nbytes: int, sems: list[tuple[int, int]]) -> Handle:
        """Create a block with ``nwords`` int64 words (header included) then ``nbytes`` bytes."""
        assert nwords >= HEADER_WORDS and len(sems) <= 3
        size = max(nwords * 8 + nbytes, 8)
        res = _make_new(size, sems)
        handle = cls(res, kind, nwords)
        w = handle.words
        w[_KIND], w[_NWORDS], w[_NSEMS] = kind, nwords, len(sems)
        w[_USERS] = current_token()
        for i, (_, maxvalue) in enumerate(sems):
            w[_SEM_MAX + i] = maxvalue
        w[_MAGIC] = MAGIC
        resource_tracker.register(res.name, "shared_memory")
        for sem in res.sem_names():
            resource_tracker.register(sem, "semaphore")
        res.tracked = True
        _watch_exit()
        return handle

    @classmethod
    def attach(cls, name: str, kind: int) -> Handle:
        """Attach to an existing block by name; :class:`BlockGoneError` if it was released."""
        try:
            fd = _posixshmem.shm_open(name, os.O_RDWR, 0o600)
        except FileNotFoundError:
            raise BlockGoneError(_gone_message(name)) from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_WORDS * 8:
                raise BlockGoneError(_gone_message(name))
            mm = mmap.mmap(fd, size)
            header = memoryview(mm)[: HEADER_WORDS * 8].cast("q")
            me = current_token()
            try:
                with MetaLock(fd):
                    if header[_MAGIC] != MAGIC or header[_GONE]:
                        raise BlockGoneError(_gone_message(name))
                    if header[_KIND] != kind:
                        raise TypeError(f"shared object {name!r} is of another kind")
                    nwords, nsems = header[_NWORDS], header[_NSEMS]
                    sems = tuple(
                        _multiprocessing.SemLock._rebuild(
                            0, _SEMAPHORE, header[_SEM_MAX + i], f"{name}.s{i}"
                        )
                        for i in range(nsems)
                    )
                    for i in range(_USERS, _USERS + NUSERS):
                        if SUBINTERPRETER:
                            break  # one entry per process: its main interpreter's (see close)
                        if header[i] == 0 or header[i] == me or not is_alive(header[i]):
                            header[i] = me
                            break  # a full table leaves us out: we then never unlink
            finally:
                header.release()
        except BaseException:
            os.close(fd)
            raise
        return cls(_Resources(name, fd, mm, sems), kind, nwords)

    def after_fork_in_child(self) -> None:
        """Make the process-local locks usable in a forked child."""
        self.meta.reset_after_fork()
        self.local_lock = threading.Lock()


#: Random names tried for a new block before its creation fails with ``FileExistsError``.
NAME_ATTEMPTS = 8


def _make_new(size: int, sems: list[tuple[int, int]]) -> _Resources:
    """A new block under a random name (64 bits: nobody can guess it in advance)."""
    attempt = 1
    while True:
        try:
            return _make("/" + PREFIX + secrets.token_hex(8), size, sems)
        except FileExistsError:  # someone else's name: left alone, and another one tried
            if attempt == NAME_ATTEMPTS:
                raise
            attempt += 1


def _make(name: str, size: int, sems: list[tuple[int, int]]) -> _Resources:
    """Create the block ``name`` and its semaphores, all with ``O_EXCL``: a name already taken
    raises ``FileExistsError``, and only what this call made is removed again on failure."""
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    made: list[SemLock] = []
    try:
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size)
        for i, (value, maxvalue) in enumerate(sems):
            made.append(
                _multiprocessing.SemLock(_SEMAPHORE, value, maxvalue, f"{name}.s{i}", False)
            )
    except BaseException:
        os.close(fd)
        _unlink_quietly(name, [s.name for s in made])
        raise
    return _Resources(name, fd, mm, tuple(made))


def _gone_message(name: str) -> str:
    return (
        f"shared object {name!r} no longer exists: every process that used it has let go of it "
        "(keep a reference to the object in the creating process while others use it)"
    )


_live: weakref.WeakValueDictionary[str, Handle] = weakref.WeakValueDictionary()
_live_lock = threading.Lock()


def open_handle(name: str, kind: int) -> Handle:
    """This process's handle for ``name``: the live one if any, else a fresh attachment."""
    with _live_lock:
        handle = _live.get(name)
        if handle is None:
            handle = Handle.attach(name, kind)
            _live[name] = handle
        elif handle.kind != kind:
            raise TypeError(f"shared object {name!r} is of another kind")
        return handle


def new_handle(kind: int, nwords: int, nbytes: int, sems: list[tuple[int, int]]) -> Handle:
    """Create a block and record it as this process's handle for its name."""
    handle = Handle.create(kind, nwords, nbytes, sems)
    with _live_lock:
        _live[handle.name] = handle
    return handle


def release_all() -> None:
    """Detach every handle of this process now (a worker about to ``os._exit``).

    Each block is unlinked only if no other live process still uses it, as when a handle dies.
    """
    with _live_lock:
        handles = list(_live.values())
    for handle in handles:
        handle._finalizer()


_exiting = False
_exit_watched = False


def _watch_exit() -> None:
    """Note interpreter exit before ``weakref.finalize`` runs the remaining finalizers.

    ``atexit`` runs handlers in reverse order of registration; this one is registered after the
    first finalizer, hence after ``weakref.finalize``'s own handler, so it runs before it.
    """
    global _exit_watched
    if not _exit_watched:
        _exit_watched = True
        atexit.register(_mark_exiting)


def _mark_exiting() -> None:
    global _exiting
    _exiting = True


def _after_fork() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for handle in list(_live.values()):
        handle.after_fork_in_child()


on_fork_in_child(_after_fork)
