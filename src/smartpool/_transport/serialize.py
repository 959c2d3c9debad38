"""Turning functions, items and results into bytes, with errors that say what cannot travel.

cloudpickle is used both ways: it pickles importable functions by reference and everything else
(lambdas, closures, functions and classes defined in ``__main__``) by value. When pickling fails,
:mod:`.culprit` names the part that cannot travel (``lock`` inside a closure rather than the
whole function) and what to do about it, and the error's chain keeps the pickler's own message
but not its frames.
"""

from __future__ import annotations

import functools
import io
import pickle
import types
from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .._errors import SerializationError
from . import culprit
from .frames import users_frames

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
    data: bytes | None
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=callback)
    except Exception:  # cloudpickle may manage (called below: its error is not chained to this)
        data = None
    if data is None or b"__main__" in data:
        return cloud_dumps(obj, large)
    return data


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


def dump_function(fn: Callable[..., Any], backend: str = "process") -> bytes:
    """Pickle the function once per call; raise :class:`SerializationError` naming the culprit
    (and the ``backend`` it was pickled for)."""
    try:
        return dumps(fn)
    except Exception as exc:
        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        raise SerializationError(
            f"the function {name!r} cannot be pickled for the {backend} backend: "
            f"{_explained(fn, exc, 'function')}"
        ) from _pickler_frames_dropped(exc)


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
        failed = exc  # (the offending item is looked for outside: its error is not chained to this)
    for offset, item in enumerate(items):
        try:
            dumps(item)
        except Exception as item_exc:
            role: culprit.Role = "result" if what.startswith("result") else "item"
            raise SerializationError(
                f"{what} {start + offset} ({type(item).__qualname__}) cannot be pickled: "
                f"{_explained(item, item_exc, role)}"
            ) from _pickler_frames_dropped(item_exc)
    raise SerializationError(
        f"{what}s {start}..{start + len(items) - 1}: {_reason(failed)}"
    ) from _pickler_frames_dropped(failed)


def _explained(obj: object, exc: BaseException, role: culprit.Role) -> str:
    """Where in ``obj`` the part that cannot be pickled sits, and what to do about it."""
    found = culprit.find(obj)
    if found is None:  # it pickles when taken apart: say what the pickler said
        return f"{_reason(exc)}. {culprit.advice(obj, role)}"
    return f"{found.path}. {culprit.advice(found.leaf, role)}"


def _pickler_frames_dropped(exc: BaseException) -> BaseException:
    """The pickler's error for the chain: its message, and the frames of the user's code it
    ran (a ``__reduce__`` that raised), not the pickler's own."""
    return exc.with_traceback(users_frames(exc.__traceback__))


def describe_unpicklable(obj: object, depth: int = 4) -> str | None:
    """Return a path like ``closure variable 'lock' -> _thread.lock``, or None if all is well."""
    found = culprit.find(obj, depth)
    return None if found is None else found.path


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
