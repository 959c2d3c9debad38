"""Attaching a Dask cluster: ``using()`` for a scope, ``configure(cluster=...)`` for the process.

The attached cluster is part of the configuration (``_config.cluster()``): the innermost
``using()`` scope's (a :class:`contextvars.ContextVar`, private to its thread and asyncio task),
else the process's. This module turns what was attached (a ``distributed.Client``, a cluster
object, an address, or ``"local"``) into a client, with safe defaults: a cluster smartpool starts
listens on 127.0.0.1 only, has no dashboard, speaks TLS where ``cryptography`` is installed and
never lets a worker's death rerun an item (``allowed-failures`` 0); a client smartpool makes never
becomes dask's global default. dask is imported here only when a cluster is attached, so
``import smartpool`` never imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import os
import threading
import time
import warnings
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from . import _config
from ._sync import _base as _sync_base

#: How long the cluster's thread count is trusted before it is asked again (workers come and go).
THREADS_TTL_SECONDS = 2.0

_NO_CLUSTER = (
    "backend='dask' needs a Dask cluster, and none is attached here: run the call inside "
    "`with smartpool.using(client_or_address):`, attach one for the process with "
    "`smartpool.configure(cluster=...)`, or start one on this machine with "
    "`smartpool.using('local')` (install the extra: pip install 'smartpool[dask]')"
)


def is_client(value: object) -> bool:
    return hasattr(type(value), "scheduler_info")


class using:  # lower case: used like a function, ``with smartpool.using(...)``
    """Run the calls of a scope on a Dask cluster: ``with smartpool.using(cluster) as client:``.

    ``cluster`` is a ``distributed.Client`` (used as is, never closed here), a cluster object
    (``LocalCluster``...), a scheduler address (``"tls://host:8786"``), or ``"local"``, which
    starts a ``LocalCluster`` of worker processes for the scope and closes it on exit: bound to
    127.0.0.1 only, no dashboard, TLS between its parts when ``cryptography`` is installed.
    ``n_workers`` (default: the usable cores) and ``threads_per_worker`` (default 1) size it.

    Inside the scope ``backend="dask"`` runs there, and ``backend="auto"`` sends work it would
    give to worker processes or threads to the cluster (an unhinted call is measured there, on
    a worker); work planned serial stays here. Shared-state primitives made in the scope of a
    cluster that reaches other machines are cluster-wide (see ``docs/dask.md``). Plain
    ``tcp://`` to an address that is not loopback warns: anyone who reaches the port runs code
    as the cluster's user.

    Example:
        >>> import smartpool
        >>> with smartpool.using("local", n_workers=1):
        ...     smartpool.parallel_map(abs, [-1, -2, -3], backend="dask")
        [1, 2, 3]
    """

    def __init__(
        self,
        cluster: object = "local",
        /,
        *,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
    ) -> None:
        if not _config._is_cluster(cluster) or cluster is None:
            raise TypeError(
                "using() takes a distributed.Client, a Dask cluster, a scheduler address or "
                f"'local'; got {type(cluster).__name__}"
            )
        if cluster != "local" and (n_workers is not None or threads_per_worker is not None):
            raise ValueError("n_workers and threads_per_worker size only using('local')")
        for name, count in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise TypeError(f"{name} must be an int, got {type(count).__name__}")
            if count is not None and count < 1:
                raise ValueError(f"{name} must be at least 1, got {count}")
        self._target = cluster
        self._sizes = (n_workers, threads_per_worker)
        self._entered: ContextVar[tuple[tuple[Token[object], _Connection], ...]] = ContextVar(
            "smartpool_using_entered", default=()
        )

    def __enter__(self) -> Any:
        """Connect (or start the local cluster); returns the ``distributed.Client``."""
        connection = connect(self._target, *self._sizes)
        token = _config.scope_cluster(connection.client)
        self._entered.set((*self._entered.get(), (token, connection)))
        return connection.client

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        *outer, (token, connection) = self._entered.get()
        self._entered.set(tuple(outer))
        _config.end_cluster_scope(token)
        connection.close()

    def __repr__(self) -> str:
        return f"smartpool.using({self._target!r})"


class _Connection:
    """A client, and what smartpool started for it (closed by :meth:`close`)."""

    def __init__(self, client: Any, owns_client: bool, cluster: Any = None) -> None:
        self.client, self._owns_client, self._cluster = client, owns_client, cluster

    def close(self) -> None:
        try:
            if self._owns_client:
                self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


def connect(
    target: object, n_workers: int | None = None, threads_per_worker: int | None = None
) -> _Connection:
    """A connection to ``target``: a client, a cluster, an address, or "local" (started here)."""
    if is_client(target):
        return _Connection(target, owns_client=False)
    Client = _distributed().Client
    if target == "local":
        return _start_local(n_workers, threads_per_worker)
    if isinstance(target, str):
        warn_if_exposed(target)
        return _Connection(Client(target, set_as_default=False), owns_client=True)
    security: Any = getattr(target, "security", None)
    client = Client(target, security=security, set_as_default=False)
    return _Connection(client, owns_client=True)


def _distributed() -> Any:
    """``distributed``, imported on first use (it ships partial type information: its objects
    are ``Any`` here, at the boundary)."""
    try:
        return importlib.import_module("distributed")
    except ModuleNotFoundError as exc:
        raise ImportError(
            "smartpool's Dask backend needs dask.distributed, which is not installed: "
            "pip install 'smartpool[dask]'"
        ) from exc


def _start_local(n_workers: int | None, threads_per_worker: int | None) -> _Connection:
    distributed = _distributed()
    dask: Any = importlib.import_module("dask")
    security = temporary_security()
    # The scheduler serves HTTP even without a dashboard (distributed#7207): no routes, and a
    # port of its own on 127.0.0.1 rather than 8787 (taken by the first cluster on the machine).
    quiet: dict[str, object] = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.http.routes": [],
    }
    with dask.config.set(quiet):
        cluster: Any = distributed.LocalCluster(
            n_workers=n_workers or len(os.sched_getaffinity(0)),
            threads_per_worker=threads_per_worker or 1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            protocol="tls://" if security is not None else "tcp://",
            security=security,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        )
    try:
        client = distributed.Client(cluster, security=security, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return _Connection(client, owns_client=True, cluster=cluster)


def temporary_security() -> Any:
    """``distributed.Security.temporary()`` (TLS with a throwaway certificate), or None when
    ``cryptography`` is not installed."""
    if importlib.util.find_spec("cryptography") is None:
        return None
    return _distributed().Security.temporary()


def warn_if_exposed(address: str) -> None:
    """Warn when ``address`` is plain (unauthenticated, unencrypted) TCP to a non-loopback host."""
    scheme, _, rest = address.rpartition("://")
    if (scheme or "tcp") != "tcp":
        return
    host = rest.rsplit(":", 1)[0].strip("[]") if ":" in rest else rest
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:  # a host name other than localhost: it may be reachable from anywhere
        pass
    warnings.warn(
        f"smartpool connects to the Dask scheduler at {address} over plain tcp://: anyone who can "
        "reach that port can run code as the cluster's user, and the traffic is not encrypted. "
        "Use tls:// with distributed.Security, or keep the scheduler on a loopback address.",
        RuntimeWarning,
        stacklevel=4,
    )


_clients: dict[int | str, tuple[object, Any]] = {}
_clients_lock = threading.Lock()
_threads: dict[int, tuple[float, int]] = {}


def attached_client() -> Any:
    """The client of the cluster attached here, or None. A cluster or an address given to
    ``configure()`` gets one client, made at its first use and kept."""
    attached = _config.cluster()
    if attached is None or is_client(attached):
        return attached
    key: int | str = attached if isinstance(attached, str) else id(attached)
    with _clients_lock:
        found = _clients.get(key)
        if found is None or found[0] is not attached:
            found = _clients[key] = (attached, connect(attached).client)
        return found[1]


def require_client() -> Any:
    """The attached cluster's client; a ValueError saying how to attach one if there is none."""
    client = attached_client()
    if client is None:
        raise ValueError(_NO_CLUSTER)
    return client


def total_threads(client: Any) -> int:
    """Threads over the cluster's workers (at least 1: tasks wait for workers to arrive)."""
    now = time.monotonic()
    known = _threads.get(id(client))
    if known is not None and now - known[0] < THREADS_TTL_SECONDS:
        return known[1]
    nthreads: dict[str, int] = client.nthreads()
    count = max(1, sum(nthreads.values()))
    _threads[id(client)] = (now, count)
    return count


def _made_elsewhere(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> object | None:
    """A primitive made while a cluster is attached may belong on it (see ``_cluster_sync``)."""
    if _config.cluster() is None:
        return None
    from . import _cluster_sync

    return _cluster_sync.twin(cls, args, kwargs)


_sync_base.made_elsewhere = _made_elsewhere
