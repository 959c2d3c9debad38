"""``@cpu_bound`` and ``@io_bound``: hints that route work, on a function that still calls inline.

The decorated object keeps the wrapped function's name, docstring and signature
(``inspect.signature`` works) and adds ``.map``, ``.imap`` and ``.submit``, and for asyncio
``.amap``, ``.aimap`` and ``.asubmit``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from typing_extensions import Unpack

from . import _aio, _api
from ._options import MapOptions, Options
from ._routing.planner import Hint

P = ParamSpec("P")
R = TypeVar("R")


class TaskFunction(Generic[P, R]):
    """A function with a routing hint and default options; calling it still runs it inline."""

    _smartpool_wrapped: Callable[P, R]
    _smartpool_hint: Hint | None
    _smartpool_options: Options

    def __init__(self, fn: Callable[P, R], hint: Hint | None, options: Options) -> None:
        functools.update_wrapper(self, fn)
        self._smartpool_wrapped = fn
        self._smartpool_hint = hint
        self._smartpool_options = options

    @property
    def hint(self) -> Hint | None:
        """``"cpu"``, ``"io"``, or None (smartpool measures and decides)."""
        return self._smartpool_hint

    @property
    def options(self) -> Options:
        """The defaults given to the decorator."""
        return self._smartpool_options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._smartpool_wrapped(*args, **kwargs)

    def map(self, iterable: Iterable[Any], /, **options: Unpack[MapOptions]) -> list[R]:
        """``parallel_map(self, iterable, **options)``; each option given here overrides the
        decorator's, even one equal to smartpool's default (``ordered=True``)."""
        return _api.parallel_map(self._as_map_function(), iterable, **options)

    def imap(
        self, iterable: Iterable[Any], /, **options: Unpack[MapOptions]
    ) -> _api.ResultIterator[R]:
        """``imap(self, iterable, **options)``, options as for :meth:`map`."""
        return _api.imap(self._as_map_function(), iterable, **options)

    def _as_map_function(self) -> Callable[[Any], R]:
        # One argument per item: the signature ``P`` cannot say so, the call sites do.
        return cast("Callable[[Any], R]", self)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Run one call on the hinted backend; returns a ``concurrent.futures.Future``."""
        return _api.submit(self, *args, **kwargs)

    async def amap(self, iterable: Iterable[Any], /, **options: Unpack[MapOptions]) -> list[R]:
        """``await smartpool.amap(self, iterable, **options)``: :meth:`map` for asyncio."""
        return await _aio.amap(self._as_map_function(), iterable, **options)

    def aimap(self, iterable: Iterable[Any], /, **options: Unpack[MapOptions]) -> AsyncIterator[R]:
        """``smartpool.aimap(self, iterable, **options)``: :meth:`imap` for asyncio."""
        return _aio.aimap(self._as_map_function(), iterable, **options)

    async def asubmit(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await smartpool.asubmit(self, *args, **kwargs)``: :meth:`submit` for asyncio."""
        return await _aio.asubmit(self, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<smartpool task {self._name()} hint={self._smartpool_hint}>"

    def _name(self) -> str:
        return str(getattr(self, "__qualname__", type(self).__qualname__))

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference when importable (cheap, and the worker gets the module's real object);
        # otherwise by value, the wrapped function travelling through cloudpickle.
        module, name = self.__module__, self._name()
        if module != "__main__" and "<locals>" not in name:
            try:
                found: object = importlib.import_module(module)
                for part in name.split("."):
                    found = getattr(found, part)
            except (ImportError, AttributeError):
                found = None
            if found is self:
                return (_load_by_name, (module, name))
        return (
            TaskFunction,
            (self._smartpool_wrapped, self._smartpool_hint, self._smartpool_options),
        )


def _load_by_name(module: str, qualname: str) -> object:
    found: object = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


class RoutingDecorator:
    """``@cpu_bound``, ``@io_bound`` and ``@auto``: bare, or called with default options.

    One class serves the three, which differ only in the hint they attach.
    """

    def __init__(self, hint: Hint | None, name: str, doc: str) -> None:
        self._hint: Hint | None = hint
        self.__name__ = self.__qualname__ = name
        self.__doc__ = doc
        self.__module__ = "smartpool"

    @overload
    def __call__(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...
    @overload
    def __call__(
        self, /, **options: Unpack[MapOptions]
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...
    def __call__(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        opts = Options().merged(options)

        def wrap(f: Callable[..., Any]) -> TaskFunction[..., Any]:
            if not callable(f):
                raise TypeError(f"@{self.__name__} decorates a callable, got {type(f).__name__}")
            return TaskFunction(f, self._hint, opts)

        return wrap(fn) if fn is not None else wrap

    def __repr__(self) -> str:
        return f"<smartpool decorator {self.__name__}>"


cpu_bound = RoutingDecorator(
    "cpu",
    "cpu_bound",
    """Mark ``fn`` as CPU-bound: ``.map`` and ``parallel_map`` run it on worker processes.

    Example:
        >>> import smartpool
        >>> @smartpool.cpu_bound
        ... def square(n: int) -> int:
        ...     return n * n
        >>> square(4), square.map([1, 2, 3], backend="thread")
        (16, [1, 4, 9])
    """,
)

io_bound = RoutingDecorator(
    "io",
    "io_bound",
    """Mark ``fn`` as I/O-bound: ``.map`` and ``parallel_map`` run it on many threads.

    Example:
        >>> import smartpool
        >>> @smartpool.io_bound(max_workers=8)
        ... def fetch(key: str) -> str:
        ...     return key.upper()
        >>> fetch.map(["a", "b"])
        ['A', 'B']
    """,
)

auto = RoutingDecorator(
    None,
    "auto",
    """Let smartpool measure ``fn`` on its first items and route it (the probe, not a hint).

    Example:
        >>> import smartpool
        >>> @smartpool.auto
        ... def add_one(n: int) -> int:
        ...     return n + 1
        >>> add_one.map(range(5))
        [1, 2, 3, 4, 5]
    """,
)
