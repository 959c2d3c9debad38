"""Configuration in layers: a call's options come from the nearest layer that sets them.

From strongest to weakest: the keywords of the call itself, the innermost ``smartpool.config()``
scope, the decorator's options (``@io_bound(ordered=False)``), ``smartpool.configure()``
(process-wide), the environment (``SMARTPOOL_BACKEND``, ``SMARTPOOL_MAX_WORKERS``,
``SMARTPOOL_MAX_CPUS``, ``SMARTPOOL_PROGRESS``, ``SMARTPOOL_START_METHOD``), and smartpool's
defaults. The environment is read once, at
the first call. Every field of :class:`~smartpool._options.Options` is a configuration key;
:func:`resolve` is the one place that stacks the layers.

A ``config()`` scope lives in a :class:`contextvars.ContextVar`: private to its thread and asyncio
task, restored on exit (also on an exception), and carried with the call's context.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from typing_extensions import Unpack

from ._options import DEFAULTS, OPTION_NAMES, MapOptions, Options, check_names

START_METHODS = ("forkserver", "spawn", "fork")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Config:
    """What is in force here: the options a call without keywords gets, and the start method.

    ``sources`` names, for each option not at smartpool's default, the layer it comes from:
    ``"config()"``, ``"configure()"`` or ``"environment"``.
    """

    #: How worker processes start. "forkserver" (default on POSIX): workers are forked from a
    #: single-threaded server process, which is safe even when the caller runs threads. "spawn":
    #: each worker is a fresh interpreter. "fork": workers are forked from the caller directly,
    #: fastest but unsafe when the caller has threads.
    start_method: str = "forkserver"
    #: The options a call that passes none gets here.
    options: Options = DEFAULTS
    #: Where each option not at its default comes from.
    sources: Mapping[str, str] = field(default_factory=lambda: dict[str, str]())
    #: The Dask cluster attached here (``using()`` scope, else ``configure(cluster=...)``): a
    #: ``distributed.Client``, a cluster object or an address; None when none is attached.
    cluster: object = None


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _progress(text: str) -> bool | str:
    """``SMARTPOOL_PROGRESS``: 1/true/yes/on, 0/false/no/off, or a display's name."""
    word = text.lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    return word  # a display's name, or a bad value that the option's validation refuses


#: Environment variables read once, at import: name -> (option, parser). A parser raises
#: ValueError for a bad value, which is then ignored with a RuntimeWarning.
ENVIRONMENT: dict[str, tuple[str, Callable[[str], object]]] = {
    "SMARTPOOL_BACKEND": ("backend", lambda text: text.lower()),
    "SMARTPOOL_MAX_WORKERS": ("max_workers", _count),
    "SMARTPOOL_MAX_CPUS": ("max_cpus", _count),
    "SMARTPOOL_PROGRESS": ("progress", _progress),
}


def _read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for variable, (name, parse) in ENVIRONMENT.items():
        text = environ.get(variable, "").strip()
        if not text:
            continue
        try:
            value = parse(text)
            check_values({name: value})  # the option's own validation
        except (TypeError, ValueError):
            warnings.warn(
                f"{variable}={text!r} is not a valid {name}; using the default",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        found[name] = value
    return found


def _start_method_from_environment() -> str:
    method = os.environ.get("SMARTPOOL_START_METHOD", "").strip().lower()
    if sys.platform == "win32":  # pragma: no cover - POSIX only for now
        return "spawn"
    if method and method not in START_METHODS:
        warnings.warn(
            f"SMARTPOOL_START_METHOD={method!r} is not one of "
            + ", ".join(repr(m) for m in START_METHODS)
            + "; using 'forkserver'",
            RuntimeWarning,
            stacklevel=3,
        )
        return "forkserver"
    return method or "forkserver"


_environment: dict[str, Any] = {}
_environment_read = False
_configured: dict[str, Any] = {}
_start_method = _start_method_from_environment()
_NOTHING: Mapping[str, Any] = MappingProxyType({})
#: ``configure(cluster=...)`` not given: the attached cluster stays as it is.
_KEEP: Any = object()
_scoped: ContextVar[Mapping[str, Any]] = ContextVar("smartpool_config", default=_NOTHING)
#: The cluster attached by ``configure(cluster=...)``, and by the innermost ``using()`` scope.
_configured_cluster: object = None
_scoped_cluster: ContextVar[object] = ContextVar("smartpool_cluster", default=None)


def resolve(given: Mapping[str, Any], decorated: Mapping[str, Any] | None = None) -> Options:
    """The options of a call: ``given`` (its keywords) over every configuration layer."""
    check_names(given)
    if not _environment_read:
        _load_environment()
    scoped = _scoped.get()
    if not (_environment or _configured or scoped):  # the common case: nothing configured
        if not decorated:
            return DEFAULTS.merged(given) if given else DEFAULTS
        return Options(**{**decorated, **given})
    merged = {**_environment, **_configured, **(decorated or {}), **scoped, **given}
    if merged.get("backend") == "serial" and merged.get("timeout") is not None:
        _drop_unenforceable_timeout(merged, given, decorated or {})
    return Options(**merged)


def check_values(values: Mapping[str, object]) -> None:
    """Refuse bad option values (``Options`` validates them) before any layer changes."""
    Options(**cast("dict[str, Any]", values))


def _load_environment() -> None:
    # Read once, at the first call: backend names are only known once the registry has loaded.
    global _environment_read
    _environment.update(_read_environment(os.environ))
    _environment_read = True


def _drop_unenforceable_timeout(
    merged: dict[str, Any], given: Mapping[str, Any], decorated: Mapping[str, Any]
) -> None:
    # "serial" set by a scope or the environment (to debug, say) must not break calls that ask
    # for a timeout: they run serially without one. Both set by the caller stay an error.
    if "backend" in given or "backend" in decorated:
        return
    warnings.warn(
        f"timeout={merged['timeout']} is not enforced: backend 'serial' comes from the "
        "configuration, and a serial call cannot be interrupted",
        RuntimeWarning,
        stacklevel=5,
    )
    del merged["timeout"]


def in_scope() -> bool:
    """Whether a ``config()`` scope is open here (its calls carry it into their workers)."""
    return bool(_scoped.get())


def start_method() -> str:
    """How worker processes start (``configure(start_method=...)``)."""
    return _start_method


def cluster() -> object:
    """The cluster attached here: the innermost ``using()`` scope's, else ``configure()``'s."""
    scoped = _scoped_cluster.get()
    return scoped if scoped is not None else _configured_cluster


def scope_cluster(attached: object) -> Token[object]:
    """Attach ``attached`` for the current context (``using()``); reset with the token."""
    return _scoped_cluster.set(attached)


def end_cluster_scope(token: Token[object]) -> None:
    _scoped_cluster.reset(token)


def current() -> Config:
    """The configuration in force here (this thread, this task, this scope)."""
    if not _environment_read:
        _load_environment()
    layers = (("environment", _environment), ("configure()", _configured))
    sources = {name: source for source, layer in layers for name in layer}
    sources.update(dict.fromkeys(_scoped.get(), "config()"))
    if _scoped_cluster.get() is not None:
        sources["cluster"] = "using()"
    elif _configured_cluster is not None:
        sources["cluster"] = "configure()"
    return Config(
        start_method=_start_method, options=resolve({}), sources=sources, cluster=cluster()
    )


def current_config() -> Config:
    """What is in force here: the options a call passing none gets, and where each comes from.

    Example:
        >>> import smartpool
        >>> with smartpool.config(max_workers=2):
        ...     settings = smartpool.current_config()
        >>> settings.options.max_workers, settings.sources["max_workers"]
        (2, 'config()')
    """
    return current()


def configure(
    *,
    start_method: str | None = None,
    cluster: object = _KEEP,
    **options: Unpack[MapOptions],
) -> Config:
    """Set process-wide defaults: any call option, ``start_method`` and ``cluster``; returns what
    is in force.

    Options set here are the defaults of every call in the process, below ``config()`` scopes,
    decorator options and the call's own keywords; ``None`` for an option removes its
    process-wide setting (``configure(max_workers=None)``).

    ``cluster`` attaches a Dask cluster to the whole process (a ``distributed.Client``, a cluster
    object such as ``LocalCluster``, or a scheduler address; ``None`` detaches it): calls with
    ``backend="dask"`` run there, as inside ``smartpool.using()`` (see ``docs/dask.md``).

    Example:
        >>> import smartpool
        >>> smartpool.configure(start_method="spawn").start_method
        'spawn'
        >>> smartpool.configure(max_workers=4).options.max_workers
        4
        >>> _ = smartpool.configure(start_method="forkserver", max_workers=None)
    """
    global _start_method, _configured_cluster
    if cluster is not _KEEP and not _is_cluster(cluster):
        raise TypeError(
            "cluster must be a distributed.Client, a Dask cluster (LocalCluster...), a scheduler "
            f"address such as 'tls://host:8786', or None; got {type(cluster).__name__}"
        )
    if start_method is not None and start_method not in START_METHODS:
        raise ValueError(
            f"unknown start_method {start_method!r}; valid start methods are: "
            + ", ".join(repr(m) for m in START_METHODS)
        )
    check_names(options)
    check_values({name: value for name, value in options.items() if value is not None})
    for name, value in options.items():
        if value is None:
            _configured.pop(name, None)
        else:
            _configured[name] = value
    if start_method is not None:
        _start_method = start_method
    if cluster is not _KEEP:
        _configured_cluster = cluster
    return current()


def _is_cluster(value: object) -> bool:
    """A client, a cluster, an address, or None (duck-typed: this module never imports dask)."""
    kind = type(value)
    return (
        value is None
        or isinstance(value, str)
        or hasattr(kind, "scheduler_info")  # distributed.Client
        or hasattr(kind, "scheduler_address")  # LocalCluster and other deployments
    )


class config:  # lower case: used like a function, ``with smartpool.config(...)``
    """Options for every smartpool call in a scope: ``with config(...):`` or ``@config(...)``.

    Options set here override decorator options and ``configure()``; a call's own keywords
    override them. Scopes nest (the innermost wins, option by option), are private to their
    thread and asyncio task, and end on exit, also on an exception.

    Example:
        >>> import smartpool
        >>> with smartpool.config(backend="thread", max_workers=2):
        ...     smartpool.parallel_map(abs, [-1, -2])
        [1, 2]
        >>> @smartpool.config(backend="serial")
        ... def debug_run():
        ...     return smartpool.explain(abs, [1, 2]).backend
        >>> debug_run()
        'serial'
    """

    def __init__(self, **options: Unpack[MapOptions]) -> None:
        check_names(options)
        check_values(options)  # bad values fail here, not at the first call in the scope
        self._options: dict[str, Any] = dict(options)
        # The tokens of this scope's entries, per context: one ``config`` object may be entered
        # from several threads or tasks at once, and each exit must undo its own entry.
        self._entered: ContextVar[tuple[Token[Mapping[str, Any]], ...]] = ContextVar(
            "smartpool_config_entered", default=()
        )

    def __enter__(self) -> Config:
        token = _scoped.set({**_scoped.get(), **self._options})
        self._entered.set((*self._entered.get(), token))
        return current()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        *outer, token = self._entered.get()
        _scoped.reset(token)
        self._entered.set(tuple(outer))

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        options = self._options
        if inspect.iscoroutinefunction(fn):
            coroutine = cast("Callable[P, Any]", fn)

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with config(**options):
                    return await coroutine(*args, **kwargs)

            return cast("Callable[P, R]", run_async)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with config(**options):  # a scope per call: safe from several threads at once
                return fn(*args, **kwargs)

        return run

    def __repr__(self) -> str:
        given = ", ".join(f"{name}={value!r}" for name, value in self._options.items())
        return f"smartpool.config({given})"


__all__ = [
    "OPTION_NAMES",
    "Config",
    "config",
    "configure",
    "current",
    "current_config",
    "in_scope",
    "resolve",
    "start_method",
]
