"""The probe on a Dask cluster: an unhinted call inside ``using()`` is measured on a worker.

The caller may not have what the items need (files, services, data that only the workers
reach), so the first items of such a call are not run in the caller: they are sent, as the
call's first task, to a dask worker, which runs them there under smartpool's probe (in the
worker's own process, where its sampler threads can watch the GIL) and sends back their values
and the measurement. Items sent but not run go back to the input. A function or items that
cannot be pickled cannot go to a cluster at all: the probe then runs in the caller, as without
one.
"""

from __future__ import annotations

import importlib
import pickle
import uuid
from collections.abc import Sequence
from typing import Any

from .._backends.dask_worker import refused_payload
from .._cluster_sync import machine_identity
from .._errors import SerializationError
from .._routing.probe import ProbeRun, probe_items
from .._transport.remote import dump_exception, load_exception
from .._transport.serialize import dump_function, dump_items, dumps, loads
from .._work import context
from .._work.feed import ItemSource
from .._work.task import NO_RETRY, Call, ChunkResult, RetryPolicy

#: The most items sent with the probe's task (the probe runs a few, or up to a GIL sample's).
PROBE_ITEMS = 64


def probe_on_cluster(client: Any, call: Call, source: ItemSource) -> ProbeRun | None:
    """Probe ``call`` on a worker of ``client``'s cluster with the first items of ``source``;
    None (nothing taken) when the function or those items cannot be sent there."""
    try:
        fn_bytes = dump_function(call.portable if call.portable is not None else call.fn)  # type: ignore[arg-type]
    except SerializationError:
        return None
    items = source.take(PROBE_ITEMS)
    try:
        items_bytes = dump_items(items, 0)
    except SerializationError:
        source.give_back(items)
        return None
    retry_bytes = b"" if call.retry == NO_RETRY else dumps(call.retry)
    name = getattr(call.portable, "__qualname__", None) or type(call.portable).__name__
    key = f"smartpool-probe-{name}-{uuid.uuid4().hex}"
    task: Any = client.submit(
        probe_on_worker, fn_bytes, items_bytes, retry_bytes, machine_identity(), key=key, pure=False
    )
    try:
        kind, payload, n_run, where = task.result()
    except BaseException:
        client.cancel([task])
        raise
    if kind == "unloadable":
        raise SerializationError(
            f"the function {name!r} cannot be loaded on the Dask workers: {payload}. A "
            "function pickled by reference (defined in a module) must be importable on every "
            "worker: install its module there, or ship it with client.upload_file()"
        )
    if kind == "refused":  # it holds a primitive of this machine's shared memory
        raise load_exception(payload)
    source.give_back(items[n_run:])
    values, measurement, exhausted, failed = payload
    failure = None
    if failed is not None:
        start, before, error_bytes, seconds = failed
        failure = ChunkResult(start, before, load_exception(error_bytes), seconds, where)
    return ProbeRun(values, measurement, failure, exhausted)


class _Items:
    """The probe's items on the worker, as an :class:`ItemSource`; counts what it handed out."""

    def __init__(self, items: Sequence[Any]) -> None:
        self._items, self.position = items, 0

    def take(self, n: int) -> Sequence[Any]:
        chunk = self._items[self.position : self.position + n]
        self.position += len(chunk)
        return chunk

    def give_back(self, rest: Sequence[Any]) -> None:
        self.position -= len(rest)


def probe_on_worker(
    fn_bytes: bytes, items_bytes: bytes, retry_bytes: bytes, origin: str
) -> tuple[str, Any, int, str]:
    """The probe's task on a dask worker: ``(kind, payload, items run, where)``.

    kind "unloadable": the function does not load here (payload says why); "refused": on a
    machine other than ``origin`` (the caller's), the function or items hold a primitive of the
    caller's shared memory (payload: the pickled SerializationError); "probed": payload
    is ``(values, measurement, exhausted, failed)``, with ``failed`` = ``(start, values,
    error, seconds)`` of the chunk whose item raised, the error pickled by smartpool.
    """
    worker: Any = importlib.import_module("distributed").get_worker()
    where = f"the probe, in the first task on dask worker {worker.address}"
    refused = refused_payload(origin, fn_bytes, items_bytes, [])
    if refused is not None:
        return ("refused", refused, 0, where)
    try:
        fn = pickle.loads(fn_bytes)
    except ModuleNotFoundError as exc:
        return ("unloadable", f"module {exc.name!r} is not importable there ({exc})", 0, where)
    except Exception as exc:
        return ("unloadable", f"{type(exc).__name__}: {exc}", 0, where)
    items = _Items(loads(items_bytes))
    retry: RetryPolicy = loads(retry_bytes) if retry_bytes else NO_RETRY
    with context.running_task():  # a nested call runs inline, as in any task
        ran = probe_items(fn, items, retry=retry)
    failed = ran.failed
    failure = None
    if failed is not None and failed.error is not None:
        failure = (failed.start, failed.values, dump_exception(failed.error), failed.seconds)
        where = f"{where}, {failed.worker}"
    payload = (ran.values, ran.measurement, ran.exhausted, failure)
    return ("probed", payload, items.position, where)
