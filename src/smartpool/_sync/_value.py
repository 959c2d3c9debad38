"""``Value``: one picklable object shared by every thread and process, updated atomically.

The value is pickled as functions and items are (``_serialize``): plain pickle, or cloudpickle
for what exists only in this process (classes and functions of ``__main__``, lambdas), so that
any process can read it back.

The pickled value lives in one of two byte buffers; a version word says which (``version & 1``).
A writer (holding the value's :class:`RLock`) fills the *other* buffer and then publishes it with
a single store of ``version + 1``. Readers take no lock: they read the version, copy the active
buffer and retry if the version moved meanwhile. A writer that dies mid-write has only touched
the inactive buffer, so the last committed value survives intact.

Each process keeps the last value it read or wrote with its version, when that value is
immutable (numbers, strings, bytes, None): while the version has not moved, ``get`` returns it
without unpickling, and ``update`` starts from it. That keeps a shared counter's ``get`` and
``add`` within 2x of ``multiprocessing.Value``'s.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .._transport.serialize import dump_value, load_value
from ._base import SharedObject
from ._lock import RLock
from ._shm import HEADER_WORDS, Handle, new_handle, open_handle

T = TypeVar("T")

_KIND = 6
_VERSION = HEADER_WORDS
_LEN = HEADER_WORDS + 1  # lengths of buffer 0 and 1 at _LEN and _LEN + 1
_MAXB = HEADER_WORDS + 3
_NWORDS = HEADER_WORDS + 4
_DATA = _NWORDS * 8  # byte offset of buffer 0
DEFAULT_MAX_BYTES = 64 * 1024
#: Types (exactly, not subclasses) whose values may be handed out again: nobody can change them.
_IMMUTABLE = frozenset({int, float, complex, bool, str, bytes, type(None)})
_NO_CACHE: tuple[int, Any] = (-1, None)
#: What ``add`` writes on its shortest path (pickled as is, size checked).
_NUMBERS = frozenset({int, float, complex, bool})


class Value(SharedObject, Generic[T]):
    """A shared value of any picklable object, at most ``max_bytes`` once pickled.

    ``get()`` returns a copy of the current value, ``set(v)`` replaces it, ``update(fn)`` applies
    ``fn`` to the current value and stores the result atomically (returning it), and ``add(n)`` is
    ``update(lambda v: v + n)``. Updates from all threads and processes are serialized by
    :meth:`get_lock`, a :class:`RLock`; a new value that does not fit raises ValueError and
    leaves the old one in place.

    Example::

        done = smartpool.Value(0)

        def task(x):
            done.add(1)
            return x * x

        smartpool.parallel_map(task, range(100), backend="process")
        assert done.get() == 100
    """

    __slots__ = ("_cache", "_h", "_lock", "_max", "_raw", "_w")

    def __init__(self, initial: T, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self._init_shared(initial, max_bytes)

    def _create(self, initial: T, max_bytes: int) -> None:
        data = self._encode(initial, max_bytes)
        handle = new_handle(_KIND, _NWORDS, 2 * max_bytes, [])
        handle.words[_MAXB] = max_bytes
        self._bind(handle, RLock())
        self._write(data)

    def _attach(self, state: tuple[str, RLock]) -> None:
        name, lock = state
        self._bind(open_handle(name, _KIND), lock)

    def _bind(self, handle: Handle, lock: RLock) -> None:
        self._h = handle
        self._w = handle.words
        self._raw = handle.raw
        self._max = handle.words[_MAXB]
        self._lock = lock
        #: (version, value) last read or written here, if the value is immutable.
        self._cache = _NO_CACHE

    def _state(self) -> tuple[str, RLock]:
        return (self._h.name, self._lock)

    @property
    def max_bytes(self) -> int:
        """Largest pickled size a value may have."""
        return int(self._max)

    def get_lock(self) -> RLock:
        """The lock serializing writers; hold it to make several operations one atomic step."""
        return self._lock

    def get(self) -> T:
        """A copy of the current value (lock-free)."""
        w = self._w
        cached = self._cache
        if w[_VERSION] == cached[0]:
            hit: T = cached[1]
            return hit
        while True:
            version = w[_VERSION]
            data = self._read(version)
            if w[_VERSION] == version:
                result: T = load_value(data)
                self._remember(version, result)
                return result

    def set(self, value: T) -> None:
        """Replace the value; ValueError (and no change) if it pickles to more than max_bytes."""
        data = self._encode(value, self._max)
        with self._lock:
            self._remember(self._write(data), value)

    def update(self, fn: Callable[[T], T]) -> T:
        """Atomically replace the value by ``fn(value)`` and return the new value.

        ``fn`` runs in the calling process while the value's lock is held; if it raises, or its
        result does not fit, the value is unchanged.
        """
        with self._lock:
            new = fn(self._current())
            self._remember(self._write(self._encode(new, self._max)), new)
            return new

    def add(self, n: Any) -> T:
        """Atomically add ``n`` to a numeric value and return the sum."""
        # update(lambda v: v + n), spelled out with no method call on the way for a number: a
        # shared counter's hot path, which multiprocessing.Value makes a few attribute accesses.
        with self._lock:
            w = self._w
            version = w[_VERSION]
            cached = self._cache
            current: Any = cached[1] if cached[0] == version else self._current()
            new: T = current + n
            if type(new) in _NUMBERS:
                data = pickle.dumps(new, pickle.HIGHEST_PROTOCOL)
                size = len(data)
                if size <= self._max:  # else _encode below raises, naming the size
                    version += 1
                    index = version & 1
                    start = _DATA + index * self._max
                    self._raw[start : start + size] = data
                    w[_LEN + index] = size
                    w[_VERSION] = version
                    self._cache = (version, new)
                    return new
            self._remember(self._write(self._encode(new, self._max)), new)
            return new

    def _current(self) -> T:
        """The current value (the caller holds the lock, so it cannot move meanwhile)."""
        version = self._w[_VERSION]
        cached = self._cache
        if cached[0] == version:
            hit: T = cached[1]
            return hit
        current: T = load_value(self._view(version))
        return current

    def _encode(self, value: T, max_bytes: int) -> bytes:
        if type(value) in _IMMUTABLE:  # never by value, never needs cloudpickle
            data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        else:
            data = dump_value(value)
        if len(data) > max_bytes:
            raise ValueError(
                f"value pickles to {len(data)} bytes but this Value holds at most {max_bytes} "
                "bytes; create it with a larger max_bytes="
            )
        return data

    def _read(self, version: int) -> bytes:
        """A copy of the bytes of ``version``'s buffer (a writer may overwrite it meanwhile)."""
        return bytes(self._view(version))

    def _view(self, version: int) -> memoryview:
        """``version``'s buffer in place: for a caller holding the lock (no writer can run)."""
        index = version & 1
        start = _DATA + index * self._max
        return self._raw[start : start + self._w[_LEN + index]]

    def _remember(self, version: int, value: T) -> None:
        self._cache = (version, value) if type(value) in _IMMUTABLE else _NO_CACHE

    def _write(self, data: bytes) -> int:
        """Fill the inactive buffer, then publish it with one store (caller holds the lock);
        return the new version."""
        w = self._w
        version = w[_VERSION] + 1
        index = version & 1
        start = _DATA + index * self._max
        self._raw[start : start + len(data)] = data
        w[_LEN + index] = len(data)
        w[_VERSION] = version
        return version

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} {self._h.name} {self.get()!r}>"
