"""The options of a call, in one place: their names and types, validation, and precedence.

A call's options come from layers (the call's keywords, each one explicit even when equal to
smartpool's default; ``config()`` scopes; a decorator's options; ``configure()``; the
environment; smartpool's defaults), stacked by ``_config.resolve``. :class:`MapOptions` types
the keywords for type checkers; :class:`Options` holds the resolved, validated values. Adding an
option is a field in each (``tests/test_config.py`` checks that the two agree).

This module is a leaf: it imports nothing from the rest of smartpool.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, TypedDict, cast

from ._progress_event import ProgressEvent

#: What a caller may pass as ``backend=``: "auto", or a registered backend's name.
BackendChoice = Literal["auto", "serial", "thread", "process", "interpreter", "dask"]
#: The valid ``backend=`` values: "auto" and every registered backend (the registry adds them).
BACKEND_NAMES: list[str] = ["auto"]
#: Registered backends that cannot run in this Python, with the reason (the registry adds them).
UNAVAILABLE_BACKENDS: dict[str, str] = {}
#: The display kinds ``progress=`` names (True picks the first one installed, "log" last).
PROGRESS_KINDS = ("tqdm", "rich", "log")
#: What a caller may pass as ``progress=``: off, on (the best display installed), a display, or a
#: callable receiving each :class:`ProgressEvent`.
ProgressChoice = bool | Literal["tqdm", "rich", "log"] | Callable[[ProgressEvent], object]
#: What a caller may pass as ``inner_threads=``: "auto", a number of threads, or None.
InnerThreadsChoice = Literal["auto"] | int | None


class MapOptions(TypedDict, total=False):
    """The keyword options of ``parallel_map``, ``imap``, ``.map``, ``.imap`` and the decorators.

    Example:
        >>> import smartpool
        >>> options: smartpool.MapOptions = {"backend": "thread", "max_workers": 4}
        >>> smartpool.parallel_map(abs, [-1, -2], **options)
        [1, 2]
    """

    #: "auto" (smartpool decides), "serial", "thread", "process", or "dask" (the attached cluster).
    backend: BackendChoice
    #: Workers to use; None: as many as the plan finds worth it.
    max_workers: int | None
    #: Items per chunk; None: sized from their measured cost.
    chunksize: int | None
    #: True: results in input order; False: in completion order.
    ordered: bool
    #: Seconds an item may run before it is stopped (:class:`TaskTimeoutError`); None: no limit.
    timeout: float | None
    #: How many times to re-run an item that raised one of ``retry_on``.
    retries: int
    #: The exception types that are retried.
    retry_on: type[BaseException] | tuple[type[BaseException], ...]
    #: Show progress: False, True (tqdm, else rich, else a log line a second), "tqdm", "rich",
    #: "log", or a callable receiving each :class:`ProgressEvent`.
    progress: ProgressChoice
    #: Use at most this many CPUs (None: all the affinity mask and cgroup quota allow).
    max_cpus: int | None
    #: BLAS/OpenMP threads in each worker: "auto" (the CPUs shared among the workers), a number,
    #: or None (leave the libraries' own settings alone).
    inner_threads: InnerThreadsChoice
    #: Run ``initializer(*initargs)`` once in each worker before its first item.
    initializer: Callable[..., object] | None
    #: The arguments of ``initializer``.
    initargs: tuple[Any, ...]
    #: Replace a worker process after it ran this many items; None: never (no effect on threads).
    max_tasks_per_child: int | None


@dataclass(frozen=True)
class Options:
    """What the caller asked for; validated on construction so bad input fails before any work."""

    backend: str = "auto"
    max_workers: int | None = None
    chunksize: int | None = None
    ordered: bool = True
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    progress: ProgressChoice = False
    max_cpus: int | None = None
    inner_threads: InnerThreadsChoice = "auto"
    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    max_tasks_per_child: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValueError(
                f"unknown backend {self.backend!r}; valid backends are: "
                + ", ".join(repr(b) for b in BACKEND_NAMES)
            )
        if self.backend in UNAVAILABLE_BACKENDS:
            raise ValueError(UNAVAILABLE_BACKENDS[self.backend])
        for name in ("max_workers", "chunksize", "max_tasks_per_child"):
            _check_count(name, getattr(self, name))
        if not isinstance(cast(object, self.ordered), bool):
            raise TypeError(f"ordered must be True or False, got {self.ordered!r}")
        timeout = cast(object, self.timeout)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
            if math.isnan(timeout) or not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
            if math.isinf(timeout):  # no deadline at all: the same as not setting one
                object.__setattr__(self, "timeout", None)
        if self.timeout is not None:
            if self.backend == "serial":
                raise ValueError(
                    "timeout= cannot be enforced on the serial backend (a running call cannot be "
                    "interrupted); use backend='thread' or 'process'"
                )
            if self.chunksize is not None and self.chunksize > 1:
                raise ValueError(
                    "timeout= applies to each item, so it needs chunksize=1 (or None); "
                    f"got chunksize={self.chunksize}"
                )
        retries = cast(object, self.retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        retry_on = cast(object, self.retry_on)
        kinds = cast("tuple[object, ...]", retry_on if isinstance(retry_on, tuple) else (retry_on,))
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in kinds):
            raise TypeError(f"retry_on must be exception types, got {retry_on!r}")
        object.__setattr__(self, "retry_on", kinds)
        _check_count("max_cpus", self.max_cpus)
        progress = cast(object, self.progress)
        if isinstance(progress, str) and progress not in PROGRESS_KINDS:
            raise ValueError(
                f"unknown progress display {progress!r}; valid ones are: True, False, "
                + ", ".join(repr(k) for k in PROGRESS_KINDS)
                + ", or a callable receiving smartpool.ProgressEvent"
            )
        if not (isinstance(progress, (bool, str)) or callable(progress)):
            raise TypeError(
                "progress must be True, False, 'tqdm', 'rich', 'log' or a callable receiving "
                f"smartpool.ProgressEvent, got {progress!r}"
            )
        inner = cast(object, self.inner_threads)
        if inner != "auto":
            _check_count("inner_threads", inner)
        self._check_initializer()

    def _check_initializer(self) -> None:
        initializer, initargs = cast(object, self.initializer), cast(object, self.initargs)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {initializer!r}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        if initargs and initializer is None:
            raise ValueError("initargs= is given without an initializer= to pass them to")

    def merged(self, given: Mapping[str, Any]) -> Options:
        """These options with ``given`` (keywords a caller passed) taking precedence."""
        check_names(given)
        return replace(self, **given) if given else self


def check_names(given: Mapping[str, Any]) -> None:
    """Refuse a misspelled option with the list of valid ones (the same error everywhere)."""
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"unexpected option(s) {', '.join(map(repr, unknown))}; valid options are: "
            + ", ".join(OPTION_NAMES)
        )


def _check_count(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        also = ", 'auto'" if name == "inner_threads" else ""
        raise TypeError(f"{name} must be an int{also} or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Options))
DEFAULTS = Options()
