"""Learning where a function's calls run best from the calls themselves (``Executor.submit``).

An executor's calls arrive one at a time: there is no batch of items to probe in the caller.
So the first calls of a function nobody measured yet run on threads, and each reports the time
it took (less any time its thread was queued for a core: a busy machine, not waiting) and the
CPU time its thread used (the chunk's own figures, measured where it ran). Once
:data:`LEARN_CALLS` calls were seen, their measurement is kept for the function, as a probe's
would be, and the planner routes its later calls from it.

The GIL is not sampled here (``releases_gil`` stays unknown, so CPU-heavy calls count as
holding it). Calls that waited for the GIL behind other threads look less CPU-bound than they
are: the figures are a lower bound on CPU use, which errs towards threads.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from .measurement import Measurement
from .memory import recall, remember

#: Calls of a function timed before its measurement is kept.
LEARN_CALLS = 3

_seen: weakref.WeakKeyDictionary[Any, tuple[int, float, float]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def needs_learning(fn: Callable[..., Any], backend: str, hint: str | None) -> bool:
    """Whether calls of ``fn`` should be timed: automatic routing, no hint, nothing kept."""
    return backend == "auto" and hint is None and recall(fn) is None


def observe(fn: Callable[..., Any], seconds: float, cpu_seconds: float) -> Measurement | None:
    """Count one call of ``fn`` that took ``seconds`` (not counting time queued for a core),
    ``cpu_seconds`` of its thread's CPU.

    Returns the measurement once enough calls were seen (it is then kept for ``fn``), else None.
    """
    key = getattr(fn, "__func__", fn)
    with _lock:
        try:
            calls, total, cpu = _seen.get(key, (0, 0.0, 0.0))
        except TypeError:  # not weak-referenceable: never learned, stays on threads
            return None
        calls, total, cpu = calls + 1, total + seconds, cpu + cpu_seconds
        if calls < LEARN_CALLS:
            _seen[key] = (calls, total, cpu)
            return None
        _seen.pop(key, None)
    measurement = Measurement(
        call_seconds=total / calls,
        cpu_fraction=min(1.0, cpu / total) if total > 0 else 1.0,
        releases_gil=None,
        picklable=None,
        transfer_seconds=0.0,
        samples=calls,
        doubt=f"learned from {calls} calls on threads",
    )
    remember(fn, measurement)
    return measurement
