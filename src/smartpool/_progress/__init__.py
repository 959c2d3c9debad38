"""Progress for ``progress=``: a run's events turned into :class:`ProgressEvent` s and shown.

The layer sits on top of a run: :func:`observers_for` gives the observers an entry point hands
to ``_api.start`` (or to a :class:`~smartpool._run.run.Run`), and nothing below knows about
bars. Inside a worker (a nested call) it gives none: only the outermost call draws.
"""

from __future__ import annotations

from .._options import Options
from .._run.events import Observer
from .._work import context
from .displays import display_for
from .tracker import Tracker


def observers_for(options: Options) -> tuple[Observer, ...]:
    """The observers that show the progress ``options.progress`` asks for (none when off, and
    none inside a worker); raises ImportError for a display that is not installed."""
    if options.progress is False or context.in_worker():
        return ()
    return (Tracker(display_for(options.progress)),)


__all__ = ["observers_for"]
