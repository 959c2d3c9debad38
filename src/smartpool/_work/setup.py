"""Per-worker setup and state: ``initializer=``, ``max_tasks_per_child=`` and ``worker_state()``.

A :class:`WorkerSetup` is a backend setting (the registry passes it to the backend's constructor):
it says what every worker of the pool runs before its first item. Each worker, whatever it is
(the caller for the serial backend, a pool thread, a worker process), owns one
:class:`WorkerSlot`: its private state dict and whether its initializer ran. The backend makes
the slot current around each chunk (:meth:`WorkerSlot.running`), so :func:`worker_state` is the
same call everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .._errors import InitializerError, SerializationError
from .._transport.remote import drop_first_frame
from .._transport.serialize import dump_function, dumps
from . import context


@dataclass(frozen=True)
class WorkerSetup:
    """What each worker of a pool runs first, and how long a worker process lives.

    A pool set up by one call's initializer is never given to another (the registry leases
    such pools privately); without one, equal setups share warm pools.
    """

    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    #: Items after which a worker process is replaced (None: never; no effect on threads).
    max_tasks_per_child: int | None = None

    @property
    def private(self) -> bool:
        """Whether its pools must be private: workers that ran an initializer belong to it."""
        return self.initializer is not None


class WorkerSlot:
    """One worker's state dict, and the outcome of its initializer (run once, on first use)."""

    def __init__(self, setup: WorkerSetup | None) -> None:
        self.setup = setup
        self.state: dict[str, Any] = {}
        self._ran = False
        self._failed: InitializerError | None = None

    def ready(self) -> InitializerError | None:
        """Run the initializer if it has not run in this worker; its error, if it failed (then
        and on every later chunk: a worker whose setup failed runs nothing)."""
        if not self._ran:
            self._ran = True
            setup = self.setup
            if setup is not None and setup.initializer is not None:
                self._failed = _run_initializer(setup.initializer, setup.initargs)
        return self._failed

    @contextmanager
    def running(self) -> Generator[InitializerError | None, None, None]:
        """Make this slot the current worker's for the block; yields :meth:`ready`'s outcome."""
        previous = getattr(_current, "slot", None)
        _current.slot = self
        try:
            yield self.ready()
        finally:
            _current.slot = previous


def _run_initializer(
    initializer: Callable[..., object], args: tuple[Any, ...]
) -> InitializerError | None:
    try:
        initializer(*args)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and context.may_be_ctrl_c():
            raise
        drop_first_frame(exc)
        name = str(getattr(initializer, "__qualname__", None) or repr(initializer))
        error = InitializerError(
            f"the initializer {name}() failed in a worker ({type(exc).__name__}: {exc}); "
            "no item ran on that worker",
            initializer=name,
        )
        error.__cause__ = exc
        return error
    return None


def dump_setup(setup: WorkerSetup, backend: str) -> bytes:
    """``setup`` pickled for workers in another process or interpreter; a
    :class:`SerializationError` naming the initializer or its arguments, before any worker
    starts, when it cannot be."""
    assert setup.initializer is not None
    dump_function(setup.initializer, backend)
    try:
        return dumps(setup)
    except Exception as exc:
        raise SerializationError(
            f"the initargs of {getattr(setup.initializer, '__qualname__', setup.initializer)} "
            f"cannot be pickled for the {backend} backend: {type(exc).__name__}: {exc}"
        ) from exc


_current = threading.local()


def worker_state() -> dict[str, Any]:
    """A dict private to the worker running this code: a pool thread, a worker process, or the
    caller (for the serial backend and outside any call).

    Put what a worker sets up once and reuses for every item there (a connection, a loaded
    model), typically from ``initializer=``. The same code works on every backend. Workers set up
    by one call's initializer are never reused by another call, so a call with an initializer
    starts from an empty dict; otherwise a reused worker keeps what earlier calls put in it.

    Example:
        >>> import smartpool
        >>> def connect(url: str) -> None:
        ...     smartpool.worker_state()["db"] = f"connection to {url}"
        >>> def query(n: int) -> str:
        ...     return f"{smartpool.worker_state()['db']}: {n}"
        >>> smartpool.parallel_map(query, [1, 2], backend="thread", initializer=connect,
        ...                        initargs=("db://x",))
        ['connection to db://x: 1', 'connection to db://x: 2']
    """
    slot: WorkerSlot | None = getattr(_current, "slot", None)
    if slot is None:
        slot = _current.slot = WorkerSlot(None)
    return slot.state
