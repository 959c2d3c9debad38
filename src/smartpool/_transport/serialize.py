"""Turning functions, items and results into bytes, with errors that say what cannot travel.

cloudpickle is used both ways: it pickles importable functions by reference and everything else
(lambdas, closures, functions and classes defined in ``__main__``) by value. When pickling fails,
:func:`describe_unpicklable` walks into the object (closure cells, referenced globals, attributes,
container elements) to name the part that cannot travel, so the error points at ``lock`` inside
a closure rather than at the whole function.
"""

from __future__ import annotations

import functools
import io
import pickle
import types
from collections import ChainMap
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, cast

from .._errors import SerializationError

_HINT = (
    "Objects that hold OS resources (locks, sockets, open files, database connections) cannot be "
    "sent to a worker process: create them inside the function, or use backend='thread'."
)


#: Buffers at least this large (NumPy arrays, bytearrays) leave the pickle when the caller
#: collects them: they travel through shared memory instead of being copied into the stream.
OUT_OF_BAND_BYTES = 1 << 20


def dumps(obj: object, large: list[pickle.PickleBuffer] | None = None) -> bytes:
    """Pickle ``obj`` for another process: plain pickle when it is enough, else cloudpickle.

    Plain pickle is several times faster and needs no cloudpickle import (a worker would pay
    ~10 ms for it). It is enough unless it fails (lambdas, closures, local classes) or refers to
    ``__main__``, which is not the same module in a worker; then cloudpickle sends by value.
    With ``large``, big buffers are appended to it instead of being copied into the result.
    """
    callback = None if large is None else _collector(large)
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=callback)
    except Exception:
        return cloud_dumps(obj, large)
    return data if b"__main__" not in data else cloud_dumps(obj, large)


#: Extra ``(type, reducer)`` pairs for one kind of payload, as in ``copyreg.pickle``.
Reducers = tuple[tuple[type, Callable[[Any], Any]], ...]


def cloud_dumps(
    obj: object, large: list[pickle.PickleBuffer] | None = None, reducers: Reducers = ()
) -> bytes:
    """Pickle ``obj`` with cloudpickle: what cannot be imported (lambdas...) goes by value.

    ``reducers`` override how objects of the given types are pickled, for this payload only
    (``_remote`` sends tracebacks flat, so that their depth does not matter).
    """
    buffer = io.BytesIO()
    callback = None if large is None else _collector(large)
    pickler = _pickler_class(reducers)
    pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=callback).dump(obj)
    return buffer.getvalue()


def _collector(large: list[pickle.PickleBuffer]) -> Callable[[pickle.PickleBuffer], bool]:
    large.clear()  # a failed first attempt may have collected some already

    def collect(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND_BYTES:
            return True  # small: stays in the stream
        large.append(buffer)
        return False

    return collect


@functools.cache
def _pickler_class(reducers: Reducers = ()) -> Any:
    """cloudpickle's Pickler, keeping each by-value function's real file name (and ``reducers``).

    cloudpickle >= 3.1.3 replaces ``co_filename`` with ``"<dynamic-code>"`` to make payloads
    deterministic; a worker's traceback would then lose its file names and source lines.
    """
    import cloudpickle

    base: Any = cloudpickle.Pickler
    table: Any = base.dispatch_table
    code_reduce = table[types.CodeType]

    def reduce_code(code: types.CodeType) -> tuple[Any, ...]:
        rebuild, args = code_reduce(code)
        return (_code_with_filename, (rebuild, args, code.co_filename))

    class Pickler(base):  # type: ignore[misc]
        dispatch_table: ClassVar[Any] = ChainMap(
            {types.CodeType: reduce_code, **dict(reducers)}, table
        )

    return Pickler


def _code_with_filename(
    rebuild: Callable[..., types.CodeType], args: tuple[Any, ...], filename: str
) -> types.CodeType:
    return rebuild(*args).replace(co_filename=filename)


def loads(data: bytes, buffers: Sequence[Any] = ()) -> Any:
    return pickle.loads(data, buffers=buffers)


#: Reading a ``smartpool.Value`` back: plain unpickling rebuilds cloudpickle's by-value objects.
load_value = pickle.loads


def dump_function(fn: Callable[..., Any]) -> bytes:
    """Pickle the function once per call; raise :class:`SerializationError` naming the culprit."""
    try:
        return dumps(fn)
    except Exception as exc:
        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        where = describe_unpicklable(fn)
        raise SerializationError(
            f"the function {name!r} cannot be pickled for the process backend: "
            f"{where or _reason(exc)}. {_HINT}"
        ) from exc


def dump_value(value: object) -> bytes:
    """Pickle the contents of a ``smartpool.Value`` as :func:`dumps` does (spelled out: a shared
    counter's ``add`` is a few microseconds); :class:`SerializationError` names the part that
    cannot be pickled."""
    try:
        data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        if b"__main__" not in data:
            return data
    except Exception:
        pass  # a lambda, a local class...: cloudpickle may manage
    try:
        return cloud_dumps(value)
    except Exception as exc:
        where = describe_unpicklable(value) or _reason(exc)
        raise SerializationError(
            f"a Value cannot hold this {type(value).__qualname__}: it cannot be pickled: {where}. "
            "A Value holds objects that can be copied to another process (no locks, sockets or "
            "open files)."
        ) from exc


def dump_items(
    items: Sequence[Any],
    start: int,
    what: str = "item",
    large: list[pickle.PickleBuffer] | None = None,
) -> bytes:
    """Pickle a chunk; on failure name the first offending element by its index in the input."""
    try:
        return dumps(items, large)
    except Exception as exc:
        for offset, item in enumerate(items):
            try:
                dumps(item)
            except Exception as item_exc:
                where = describe_unpicklable(item) or _reason(item_exc)
                raise SerializationError(
                    f"{what} {start + offset} ({type(item).__qualname__}) cannot be pickled: "
                    f"{where}. {_HINT}"
                ) from item_exc
        raise SerializationError(
            f"{what}s {start}..{start + len(items) - 1}: {_reason(exc)}"
        ) from exc


def describe_unpicklable(obj: object, depth: int = 4) -> str | None:
    """Return a path like ``closure variable 'lock' -> _thread.lock``, or None if all is well."""
    path = _walk(obj, depth, set())
    if path is None:
        return None
    *steps, leaf = path
    return " -> ".join([*steps, leaf])


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _picklable(obj: object) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True


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


def _walk(obj: object, depth: int, seen: set[int]) -> list[str] | None:
    if id(obj) in seen or _picklable(obj):
        return None
    seen.add(id(obj))
    if depth > 0:
        for label, child in _children(obj):
            sub = _walk(child, depth - 1, seen)
            if sub is not None:
                return [label, *sub]
    return [f"{type(obj).__module__}.{type(obj).__qualname__} object"]
