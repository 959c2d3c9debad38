"""Routing decisions kept per function for the life of the process, so a function is probed once.

Keys are weak: a function that goes away takes its decision with it. A bound method is kept by
its underlying function, so all instances share one measurement.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from .measurement import Measurement

_memory: weakref.WeakKeyDictionary[Any, Measurement] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()


def recall(fn: Callable[..., Any]) -> Measurement | None:
    """The measurement kept from an earlier probe of ``fn`` in this process, if any."""
    with _memory_lock:
        try:
            return _memory.get(getattr(fn, "__func__", fn))
        except TypeError:  # not weak-referenceable, so never remembered
            return None


def remember(fn: Callable[..., Any], measurement: Measurement) -> None:
    with _memory_lock:
        try:
            _memory[getattr(fn, "__func__", fn)] = measurement
        except TypeError:
            pass


def forget(fn: Callable[..., Any] | None = None) -> None:
    """Drop the routing decision kept for ``fn`` (or for every function): the next call probes.

    Example:
        >>> import smartpool
        >>> smartpool.forget()
    """
    with _memory_lock:
        if fn is None:
            _memory.clear()
        else:
            _memory.pop(getattr(fn, "__func__", fn), None)
