"""Exceptions that cross a process boundary with their real frames.

A worker turns an exception into bytes with :func:`dump_exception` (tblib makes its traceback,
cause and context picklable); the caller rebuilds it with :func:`load_exception` and gets the
original type and args back, ``__traceback__`` holding the worker's frames. An exception that cannot
make the trip arrives as :class:`~smartpool.RemoteError` with its formatted traceback instead.
"""

from __future__ import annotations

import importlib
import pickle
import traceback
from types import TracebackType
from typing import Any, cast

from .._errors import RemoteError


def add_note(exc: BaseException, note: str) -> None:
    """Attach a PEP 678 note (``__notes__`` is set by hand on Python 3.10)."""
    found: object = getattr(exc, "__notes__", None)
    if isinstance(found, list):
        cast("list[str]", found).append(note)
        return
    try:
        exc.__notes__ = [note]  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exotic exceptions with __slots__
        pass


def drop_first_frame(exc: BaseException) -> None:
    """Start the traceback at the user's function, not at smartpool's call site."""
    tb: TracebackType | None = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        exc.__traceback__ = tb.tb_next


def qualified_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    if module in (None, "builtins"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def dump_exception(exc: BaseException) -> bytes:
    """Serialize ``exc`` with its traceback chain; fall back to a :class:`RemoteError`."""
    from .serialize import cloud_dumps

    # tblib registers picklers for the exception's types and its traceback (untyped module).
    pickling_support: Any = importlib.import_module("tblib.pickling_support")
    try:
        pickling_support.install(exc)
        data = cloud_dumps(exc, reducers=_FLAT_TRACEBACKS)
        pickle.loads(data)  # prove it rebuilds here, not as a confusing error in the caller
    except Exception:
        data = cloud_dumps(_as_remote_error(exc))
    return data


def _reduce_traceback(tb: TracebackType) -> tuple[Any, tuple[list[tuple[Any, int]]]]:
    """A traceback as a flat list of (frame, line) pairs.

    tblib pickles a traceback as nested objects, one level per frame, and pickling stops at a
    depth near the recursion limit: the traceback of a RecursionError could never travel. A
    list pickles at any length.
    """
    tblib: Any = importlib.import_module("tblib")
    frames: list[tuple[Any, int]] = []
    current: TracebackType | None = tb
    while current is not None:
        frames.append((tblib.Frame(current.tb_frame), current.tb_lineno))
        current = current.tb_next
    return (_rebuild_traceback, (frames,))


def _rebuild_traceback(frames: list[tuple[Any, int]]) -> TracebackType | None:
    """The traceback :func:`_reduce_traceback` took apart, with stand-in frames (as tblib's)."""
    tblib: Any = importlib.import_module("tblib")
    head: Any = None
    for frame, lineno in reversed(frames):  # build from the innermost frame out, no recursion
        link = object.__new__(tblib.Traceback)
        link.tb_frame, link.tb_lineno, link.tb_next = frame, lineno, head
        head = link
    return None if head is None else cast("TracebackType", head.as_traceback())


_FLAT_TRACEBACKS = ((TracebackType, _reduce_traceback),)


def load_exception(data: bytes) -> BaseException:
    """Rebuild an exception made by :func:`dump_exception`."""
    exc = pickle.loads(data)
    if not isinstance(exc, BaseException):  # pragma: no cover - protocol violation
        raise TypeError(f"expected a pickled exception, got {type(exc).__name__}")
    return exc


def _as_remote_error(exc: BaseException) -> RemoteError:
    try:
        message = str(exc)
    except Exception:
        message = f"<str() of {type(exc).__name__} failed>"
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        text = "<traceback could not be formatted>"
    remote = RemoteError(qualified_name(type(exc)), message, text)
    for note in getattr(exc, "__notes__", None) or ():
        if isinstance(note, str):
            add_note(remote, note)
    return remote
