"""The displays ``progress=`` names: a tqdm bar, a rich bar, a log line a second, a callable.

Each is a callable receiving :class:`ProgressEvent` s; it opens on the first, and closes on the
last (``finished``), which a run sends also when it fails or is interrupted. The bar counts the
items completed (done or failed); the time left shown is smartpool's estimate (see ``tracker``),
which follows a change of plan, not the bar library's own.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .._options import ProgressChoice
from .._progress_event import ProgressEvent

#: The "log" display writes at most one line per this many seconds (and one at the end).
LOG_INTERVAL_SECONDS = 1.0
_EXTRA = "pip install 'smartpool[progress]'"


def display_for(choice: ProgressChoice) -> Callable[[ProgressEvent], object]:
    """A new display for one call; ImportError when the named bar library is not installed."""
    if callable(choice):
        return choice
    kind = choice if isinstance(choice, str) else _best_installed()
    if kind == "log":
        return LogLine()
    if not _installed(kind):
        raise ImportError(f"progress={kind!r} needs the {kind} package: {_EXTRA}")
    return TqdmBar() if kind == "tqdm" else RichBar()


def _best_installed() -> str:
    """What ``progress=True`` shows: tqdm's bar if installed, else rich's, else log lines."""
    for kind in ("tqdm", "rich"):
        if _installed(kind):
            return kind
    return "log"


def _installed(module: str) -> bool:
    return module in sys.modules or importlib.util.find_spec(module) is not None


def describe(event: ProgressEvent) -> str:
    """What the bars show beside the count: where the call runs, failures, steps, time left."""
    parts = [f"{event.backend} x{event.workers}"]
    if event.failed:
        parts.append(f"{event.failed} failed")
    if event.retried:
        parts.append(f"{event.retried} retried")
    if event.steps:
        parts.append(f"{event.steps} steps")
    if event.eta is not None and not event.finished:
        parts.append(f"eta {format_seconds(event.eta)}")
    return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class TqdmBar:
    """tqdm's automatic bar: a widget in a notebook, a text bar in a terminal."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._shown = 0

    def __call__(self, event: ProgressEvent) -> None:
        if self._bar is None:
            if event.finished and event.done + event.failed == 0:
                return  # ended before it began (an iterator closed unused): nothing to show
            from tqdm.auto import tqdm

            counted = "{l_bar}{bar}| {n_fmt}/{total_fmt}" if event.total is not None else "{n_fmt}"
            self._bar = tqdm(
                total=event.total, unit="item", bar_format=counted + " items [{elapsed}{postfix}]"
            )
        count = event.done + event.failed
        self._bar.set_postfix_str(describe(event), refresh=False)
        self._bar.update(count - self._shown)
        self._shown = count
        if event.finished:
            self._bar.close()


class RichBar:
    """rich's bar, on stderr."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        if self._progress is None:
            if event.finished and event.done + event.failed == 0:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task("smartpool", total=event.total, info="")
        self._progress.update(self._task, completed=event.done + event.failed, info=describe(event))
        if event.finished:
            self._progress.stop()


class LogLine:
    """One line on stderr at most every ``LOG_INTERVAL_SECONDS``, and one when the call ends:
    readable in CI logs, where a bar redrawn in place is not."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._last = time.monotonic()

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if not event.finished and now - self._last < LOG_INTERVAL_SECONDS:
            return
        self._last = now
        if event.finished and event.done + event.failed == 0 and event.total != 0:
            return  # ended before it began
        stream = self._stream or sys.stderr
        count = event.done + event.failed
        of = "" if event.total is None else f"/{event.total}"
        percent = f" ({count / event.total:.0%})" if event.total else ""
        state = "finished" if event.finished else "running"
        stream.write(
            f"smartpool: {count}{of} items{percent} {state} in "
            f"{format_seconds(event.elapsed)}, {describe(event)}\n"
        )
        stream.flush()
