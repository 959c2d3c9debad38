"""Tracebacks that show the user's code: smartpool's own frames (and the pickler's) left out.

An error about the user's objects (something that cannot be pickled, a function that raised
under ``smartpool advise``) is read by someone who wants to see their own lines; twenty frames
through smartpool's modules bury them, and say nothing they can act on.
"""

from __future__ import annotations

import os
import pickle
import types
from pathlib import Path

#: Where smartpool's own code lives (its frames are left out)...
SMARTPOOL_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
#: ...and the standard library's pickler (its frames say only that pickling failed).
PICKLE_FILES = frozenset(
    str(Path(pickle.__file__).resolve().parent / name) for name in ("pickle.py", "copyreg.py")
)


def is_internal(filename: str) -> bool:
    """Whether a frame of ``filename`` is smartpool's, cloudpickle's or the pickler's own."""
    if filename.startswith("<frozen "):  # runpy, importlib: how the program was started
        return True
    path = str(Path(filename).resolve()) if os.path.isabs(filename) else filename
    return (
        path.startswith(SMARTPOOL_DIR)
        or path in PICKLE_FILES
        or f"{os.sep}cloudpickle{os.sep}" in path
    )


def users_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` with only the frames of the user's code, in order (None if none is left)."""
    kept: list[types.TracebackType] = []
    while tb is not None:
        if not is_internal(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    rebuilt: types.TracebackType | None = None
    for entry in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


def only_users_frames(error: BaseException) -> BaseException:
    """``error``, and the errors chained to it, keeping only the user's frames; returns it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = users_frames(current.__traceback__)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return error
