"""What the caller's context carries into a worker: its ``contextvars``, and single calls.

A thread worker runs ``fn`` in a copy of the caller's :class:`contextvars.Context`, as
``asyncio.to_thread`` does (``loop.run_in_executor`` does not). A worker process cannot share a
Context, so the caller's context variables travel by name: each variable found as a module
attribute in the caller (its home, ``module.attribute``), whose value pickles, is looked up by
that name in the worker and set there, in a fresh context for the call. A variable with no home
(made in a function, in ``__main__``, or as a class attribute) or whose value does not pickle
stays behind.

This module is imported by worker processes: it imports nothing heavy.
"""

from __future__ import annotations

import contextvars
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeGuard, cast

from .._transport.serialize import dumps

#: One variable to set in a worker process: (module, attribute, value).
CarriedVar = tuple[str, str, Any]

_homes: dict[contextvars.ContextVar[Any], tuple[str, str]] = {}
_homes_lock = threading.Lock()
#: ``len(sys.modules)`` when the modules were last searched for context variables.
_searched_modules = -1


def capture_vars() -> tuple[CarriedVar, ...]:
    """The caller's context variables that can be set again in a worker process."""
    context = contextvars.copy_context()
    if not context:
        return ()
    carried: list[CarriedVar] = []
    for var, value in context.items():
        home = _home_of(var)
        if home is None or not _pickles(value):
            continue
        carried.append((home[0], home[1], value))
    return tuple(carried)


def _home_of(var: contextvars.ContextVar[Any]) -> tuple[str, str] | None:
    global _searched_modules
    with _homes_lock:
        home = _homes.get(var)
        if home is not None or len(sys.modules) == _searched_modules:
            return home
        _searched_modules = len(sys.modules)
        for name, module in list(sys.modules.items()):
            if name in ("__main__", "__mp_main__") or cast(object, module) is None:
                continue
            try:
                attributes = list(vars(module).items())
            except TypeError:  # a module-like object without a __dict__
                continue
            for attribute, value in attributes:
                if _is_var(value):
                    _homes.setdefault(value, (name, attribute))
        return _homes.get(var)


def _is_var(value: object) -> TypeGuard[contextvars.ContextVar[Any]]:
    return isinstance(value, contextvars.ContextVar)


def _pickles(value: object) -> bool:
    try:
        dumps(value)
    except Exception:
        return False
    return True


def set_carried(carried: tuple[CarriedVar, ...]) -> None:
    """In the worker process: set each carried variable in the current context."""
    for module, attribute, value in carried:
        var: object = getattr(importlib.import_module(module), attribute, None)
        if _is_var(var):
            var.set(value)


class InContext:
    """``fn(item)`` run in a copy of the caller's context (on a thread), one copy per item."""

    __slots__ = ("context", "fn")

    def __init__(self, fn: Callable[[Any], Any], context: contextvars.Context) -> None:
        self.fn, self.context = fn, context

    def __call__(self, item: Any) -> Any:
        return self.context.copy().run(self.fn, item)


class WithVars:
    """``fn(item)`` run in a worker process with the caller's carried variables set."""

    __slots__ = ("carried", "fn")

    def __init__(self, fn: Callable[[Any], Any], carried: tuple[CarriedVar, ...]) -> None:
        self.fn, self.carried = fn, carried

    def __call__(self, item: Any) -> Any:
        return contextvars.Context().run(self._run, item)

    def _run(self, item: Any) -> Any:
        set_carried(self.carried)
        return self.fn(item)


#: A single call on a thread: (fn, args, kwargs, the caller's context copied at submit).
ThreadCall = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], contextvars.Context]
#: A single call in a worker process: (fn, args, kwargs, the caller's carried variables).
ProcessCall = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], tuple[CarriedVar, ...]]


def call_on_thread(packed: ThreadCall) -> Any:
    """Run one submitted call in the caller's context (each submit has its own copy)."""
    fn, args, kwargs, context = packed
    return context.run(fn, *args, **kwargs)


def call_in_process(packed: ProcessCall) -> Any:
    """Run one submitted call in a fresh context holding the caller's carried variables."""
    fn, args, kwargs, carried = packed
    if not carried:
        return fn(*args, **kwargs)
    return contextvars.Context().run(_set_and_call, fn, args, kwargs, carried)


def _set_and_call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    carried: tuple[CarriedVar, ...],
) -> Any:
    set_carried(carried)
    return fn(*args, **kwargs)


def call_batch(fn: Callable[..., Any], batch: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """Several calls of ``fn`` sent together (``Executor.map(..., chunksize=n)``)."""
    return [fn(*args) for args in batch]
