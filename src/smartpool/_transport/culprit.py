"""What cannot be pickled, where it sits, and what to do about it.

When pickling fails, :func:`find` walks into the object (closure cells, referenced globals,
attributes, container elements) to the part that cannot travel, so an error points at ``lock``
inside a closure rather than at the whole function; :func:`advice` says what to do about that
part: a ``threading.Lock`` has its ``smartpool.Lock``, a generator returned by the function
should be a list, a coroutine awaited, an open file opened where it is used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

#: Whose object failed to pickle: the function (and what it captures), an item, or a result.
Role = Literal["function", "item", "result"]

#: threading's primitives and the smartpool ones that work across processes instead.
_THREADING_TWINS = {
    "_thread.lock": "Lock",
    "_thread.RLock": "RLock",
    "threading.RLock": "RLock",
    "threading._RLock": "RLock",
    "threading.Semaphore": "Semaphore",
    "threading.BoundedSemaphore": "BoundedSemaphore",
    "threading.Event": "Event",
}
#: Modules whose objects hold something of this process: an open file, a socket, a connection.
_OS_RESOURCE_MODULES = frozenset(
    {"_io", "io", "socket", "_socket", "ssl", "_ssl", "sqlite3", "select", "mmap"}
)


@dataclass(frozen=True)
class Culprit:
    """The part of an object that cannot be pickled."""

    #: How to reach it, e.g. ``closure variable 'lock' -> _thread.lock object``.
    path: str
    #: The object itself.
    leaf: object


def find(obj: object, depth: int = 4) -> Culprit | None:
    """The part of ``obj`` that cannot be pickled, or None if all of it can."""
    walked = _walk(obj, depth, set())
    if walked is None:
        return None
    steps, leaf = walked
    return Culprit(" -> ".join([*steps, f"{_type_name(leaf)} object"]), leaf)


def advice(leaf: object, role: Role) -> str:
    """What to do about ``leaf``, which cannot be pickled, found in the ``role`` object."""
    kind = _type_name(leaf)
    twin = _THREADING_TWINS.get(kind)
    if twin is not None:
        return (
            f"A threading.{twin} works within one process only: use smartpool.{twin}(), which "
            "works the same between threads and worker processes, or backend='thread'."
        )
    if kind.startswith("multiprocessing.synchronize."):
        name = type(leaf).__qualname__
        return (
            f"A multiprocessing.{name} reaches only the processes that inherit it when "
            f"multiprocessing starts them: use smartpool.{name}(), which is passed to "
            "smartpool's workers like any argument."
        )
    if kind.startswith("threading."):  # Condition, Barrier: no twin
        return (
            f"A {kind} works within one process only: use smartpool.Lock, smartpool.Event or "
            "smartpool.Semaphore, which work between worker processes, or backend='thread'."
        )
    if inspect.isgenerator(leaf) or inspect.isasyncgen(leaf):
        return {
            "result": "A generator cannot be pickled: return a list of its values (return "
            "list(...)) for the result to travel back from a worker process.",
            "item": "A generator cannot be pickled: pass its values (a list or a tuple) as the "
            "item instead.",
            "function": "A generator cannot be pickled: create it inside the function.",
        }[role]
    if inspect.iscoroutine(leaf):
        return (
            "A coroutine cannot be pickled, and smartpool calls functions without awaiting "
            "what they return: map a plain function that runs the coroutine (asyncio.run(...)), "
            "or run coroutines together with asyncio.gather."
        )
    if type(leaf).__module__ in _OS_RESOURCE_MODULES:
        return (
            "Objects that hold OS resources (open files, sockets, database connections) belong "
            "to the process that opened them: "
            + (
                "return what you read from them, not the objects, or use backend='thread'."
                if role == "result"
                else "open them inside the function (a worker may keep one in a module-level "
                "cache), or use backend='thread'."
            )
        )
    return (
        "Objects sent to or from a worker process are pickled: use plain data, make this type "
        "picklable (__reduce__ or __getstate__), create it inside the function, or use "
        "backend='thread'."
    )


def _type_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _picklable(obj: object) -> bool:
    from .serialize import dumps  # (serialize reports with this module's findings)

    try:
        dumps(obj)
    except Exception:
        return False
    return True


def _stops_here(obj: object) -> bool:
    """Objects named as they are, not by the lock or file inside them (a Semaphore, not its
    Condition's lock; a generator, not its frame)."""
    module = type(obj).__module__
    return (
        module in ("threading", "multiprocessing.synchronize")
        or inspect.isgenerator(obj)
        or inspect.isasyncgen(obj)
        or inspect.iscoroutine(obj)
    )


def _children(obj: object) -> list[tuple[str, object]]:
    kids: list[tuple[str, object]]
    if isinstance(obj, functools.partial):
        kids = [("partial function", obj.func)]
        kids += [(f"partial argument {i}", a) for i, a in enumerate(obj.args)]
        kids += [(f"partial keyword {k!r}", v) for k, v in obj.keywords.items()]
        return kids
    self_obj = getattr(obj, "__self__", None)
    if self_obj is not None and getattr(obj, "__func__", None) is not None:
        return [("bound instance", self_obj), ("method", obj.__func__)]  # type: ignore[attr-defined]
    code = getattr(obj, "__code__", None)
    if code is not None:
        kids = []
        cells = getattr(obj, "__closure__", None) or ()
        for name, cell in zip(code.co_freevars, cells, strict=False):
            try:
                kids.append((f"closure variable {name!r}", cell.cell_contents))
            except ValueError:  # empty cell
                continue
        fn_globals = getattr(obj, "__globals__", {})
        kids += [(f"global {n!r}", fn_globals[n]) for n in code.co_names if n in fn_globals]
        kids += [
            (f"default {i}", d) for i, d in enumerate(getattr(obj, "__defaults__", None) or ())
        ]
        return kids
    if isinstance(obj, dict):
        return [(f"key {k!r}", v) for k, v in cast("dict[object, object]", obj).items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"element {i}", v) for i, v in enumerate(cast("Iterable[object]", obj))]
    state: object = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        return [(f"attribute {k!r}", v) for k, v in cast("dict[object, object]", state).items()]
    return []


def _walk(obj: object, depth: int, seen: set[int]) -> tuple[list[str], object] | None:
    if id(obj) in seen or _picklable(obj):
        return None
    seen.add(id(obj))
    if depth > 0 and not _stops_here(obj):
        for label, child in _children(obj):
            sub = _walk(child, depth - 1, seen)
            if sub is not None:
                return [label, *sub[0]], sub[1]
    return [], obj
