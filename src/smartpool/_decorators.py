"""``@cpu_bound`` and ``@io_bound``: hints that route work, on a function that still calls inline.

The decorated object keeps the wrapped function's name, docstring and signature
(``inspect.signature`` works) and adds ``.map``, ``.imap`` and ``.submit``, and for asyncio
``.amap``, ``.aimap`` and ``.asubmit``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from typing_extensions import Unpack

from . import _aio, _api
from ._options import MapOptions, Options
from ._routing.planner import Hint

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T2 = TypeVar("T2")
T3 = TypeVar("T3")


class TaskFunction(Generic[P, R]):
    """A function with a routing hint and default options; calling it still runs it inline."""

    _smartpool_wrapped: Callable[P, R]
    _smartpool_hint: Hint | None
    _smartpool_options: Options
    _smartpool_given: dict[str, Any]

    def __init__(
        self,
        fn: Callable[P, R],
        hint: Hint | None,
        options: Options,
        given: Mapping[str, Any] | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self._smartpool_wrapped = fn
        self._smartpool_hint = hint
        self._smartpool_options = options
        # The options the decorator was given: a layer between config() scopes and configure().
        self._smartpool_given = dict(given or {})

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

    # ``self`` is typed as the callable it is, so that type checkers check the items against
    # the function's parameters (a ``TaskFunction[P, R]`` is invariant in ``P``).
    @overload
    def map(
        self: Callable[[T], R], iterable: Iterable[T], /, **options: Unpack[MapOptions]
    ) -> list[R]: ...
    @overload
    def map(
        self: Callable[[T, T2], R],
        iterable: Iterable[T],
        iterable2: Iterable[T2],
        /,
        **options: Unpack[MapOptions],
    ) -> list[R]: ...
    @overload
    def map(
        self: Callable[[T, T2, T3], R],
        iterable: Iterable[T],
        iterable2: Iterable[T2],
        iterable3: Iterable[T3],
        /,
        **options: Unpack[MapOptions],
    ) -> list[R]: ...
    @overload
    def map(
        self: Callable[..., R],
        iterable: Iterable[Any],
        iterable2: Iterable[Any],
        iterable3: Iterable[Any],
        iterable4: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        **options: Unpack[MapOptions],
    ) -> list[R]: ...
    def map(
        self: Callable[..., Any],
        iterable: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        **options: Any,
    ) -> list[Any]:
        """``parallel_map(self, iterable, *iterables, **options)``; each option given here
        overrides the decorator's, even one equal to smartpool's default (``ordered=True``)."""
        return _api.parallel_map(self, iterable, *iterables, **options)

    @overload
    def imap(
        self: Callable[[T], R],
        iterable: Iterable[T],
        /,
        *,
        with_index: Literal[False] = False,
        **options: Unpack[MapOptions],
    ) -> _api.ResultIterator[R]: ...
    @overload
    def imap(
        self: Callable[[T], R],
        iterable: Iterable[T],
        /,
        *,
        with_index: Literal[True],
        **options: Unpack[MapOptions],
    ) -> _api.ResultIterator[tuple[int, R]]: ...
    @overload
    def imap(
        self: Callable[[T, T2], R],
        iterable: Iterable[T],
        iterable2: Iterable[T2],
        /,
        *,
        with_index: Literal[False] = False,
        **options: Unpack[MapOptions],
    ) -> _api.ResultIterator[R]: ...
    @overload
    def imap(
        self: Callable[..., R],
        iterable: Iterable[Any],
        iterable2: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        with_index: bool = False,
        **options: Unpack[MapOptions],
    ) -> _api.ResultIterator[Any]: ...
    def imap(
        self: Callable[..., Any],
        iterable: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        with_index: bool = False,
        **options: Any,
    ) -> _api.ResultIterator[Any]:
        """``imap(self, iterable, *iterables, with_index=..., **options)``, options as for
        :meth:`map`."""
        return _api.imap(self, iterable, *iterables, with_index=with_index, **options)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Run one call on the hinted backend; returns a ``concurrent.futures.Future``."""
        return _api.submit(self, *args, **kwargs)

    async def amap(self, iterable: Iterable[Any], /, **options: Unpack[MapOptions]) -> list[R]:
        """``await smartpool.amap(self, iterable, **options)``: :meth:`map` for asyncio."""
        return await _aio.amap(self._one_argument(), iterable, **options)

    def aimap(self, iterable: Iterable[Any], /, **options: Unpack[MapOptions]) -> AsyncIterator[R]:
        """``smartpool.aimap(self, iterable, **options)``: :meth:`imap` for asyncio."""
        return _aio.aimap(self._one_argument(), iterable, **options)

    def _one_argument(self) -> Callable[[Any], R]:
        # One argument per item: the signature ``P`` cannot say so (unlike ``map``'s overloads,
        # an async method cannot type ``self`` as the callable), the call sites do.
        return cast("Callable[[Any], R]", self)

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
            (
                self._smartpool_wrapped,
                self._smartpool_hint,
                self._smartpool_options,
                self._smartpool_given,
            ),
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
            return TaskFunction(f, self._hint, opts, options)

        return wrap(fn) if fn is not None else wrap

    def __repr__(self) -> str:
        return f"<smartpool decorator {self.__name__}>"


cpu_bound = RoutingDecorator(
    "cpu",
    "cpu_bound",
    """Mark ``fn`` as CPU-bound: ``.map`` and ``parallel_map`` run it on worker processes.

    Use it bare (``@cpu_bound``) or with default options for the function's calls, any of
    :class:`MapOptions` (``@cpu_bound(max_workers=4)``); a call's own options override them.

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

    Use it bare (``@io_bound``) or with default options for the function's calls, any of
    :class:`MapOptions` (``@io_bound(max_workers=4)``); a call's own options override them.

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

    Use it bare (``@auto``) or with default options for the function's calls, any of
    :class:`MapOptions` (``@auto(max_workers=4)``); a call's own options override them.

    Example:
        >>> import smartpool
        >>> @smartpool.auto
        ... def add_one(n: int) -> int:
        ...     return n + 1
        >>> add_one.map(range(5))
        [1, 2, 3, 4, 5]
    """,
)
