"""The engines under test: smartpool's backends and the peers, behind one small interface.

An engine's `load()` does its imports (timed separately by the cold-start probe) and returns a
factory; the factory creates a warmable `Runner` with `map(fn, items) -> list` and `close()`.
Library imports happen inside `load()` only, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Fn = Callable[[Any], Any]

WORKERS = os.cpu_count() or 2  # process engines (and joblib threads) use one worker per core


def _as_list(result: Any) -> list[Any]:
    """The engine's result as a list, copied only when it is not one already (same for all)."""
    return result if isinstance(result, list) else list(result)


class EngineUnavailable(Exception):
    """The engine's library is not installed or lacks the API the benchmark needs."""


class Runner(Protocol):
    def map(self, fn: Fn, items: list[Any]) -> list[Any]: ...

    def close(self) -> None: ...


Factory = Callable[[], Runner]


@dataclass(frozen=True)
class Engine:
    name: str
    label: str
    load: Callable[[], Factory]


def user_chunksize(n_items: int, workers: int = WORKERS) -> int:
    """The chunk size a careful user passes by hand: about 4 chunks per worker."""
    return max(1, math.ceil(n_items / (4 * workers)))


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:  # a half-written library may fail with any error on import
        raise EngineUnavailable(f"cannot import {module}: {type(exc).__name__}: {exc}") from exc


class _Serial:
    def map(self, fn: Fn, items: list[Any]) -> list[Any]:
        return list(map(fn, items))

    def close(self) -> None:
        pass


class _Executor:
    """concurrent.futures executors (and pebble), with an optional per-map chunk size."""

    def __init__(self, executor: Any, chunked: bool) -> None:
        self._executor = executor
        self._chunked = chunked

    def map(self, fn: Fn, items: list[Any]) -> list[Any]:
        if self._chunked:
            return list(self._executor.map(fn, items, chunksize=user_chunksize(len(items))))
        return _as_list(self._executor.map(fn, items))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class _MpPool:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def map(self, fn: Fn, items: list[Any]) -> list[Any]:
        return _as_list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


class _Joblib:
    def __init__(self, joblib: Any, backend: str) -> None:
        self._delayed = joblib.delayed
        self._backend = backend
        self._parallel = joblib.Parallel(n_jobs=WORKERS, backend=backend)
        self._parallel.__enter__()

    def map(self, fn: Fn, items: list[Any]) -> list[Any]:
        call = self._delayed(fn)
        return _as_list(self._parallel(call(item) for item in items))

    def close(self) -> None:
        self._parallel.__exit__(None, None, None)
        if self._backend == "loky":  # the loky executor outlives Parallel; stop it for real
            executor = _require("joblib.externals.loky.reusable_executor")._executor
            if executor is not None:
                executor.shutdown(wait=True)


class _Mpire:
    def __init__(self, mpire: Any) -> None:
        self._pool = mpire.WorkerPool(n_jobs=WORKERS, start_method="fork", keep_alive=True)

    def map(self, fn: Fn, items: list[Any]) -> list[Any]:
        return _as_list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.stop_and_join()


class _Pebble:
    def __init__(self, pebble: Any) -> None:
        import multiprocessing

        self._pool = pebble.ProcessPool(
            max_workers=WORKERS, context=multiprocessing.get_context("fork")
        )

    def map(self, fn: Fn, items: list[Any]) -> list[Any]:
        future = self._pool.map(fn, items, chunksize=user_chunksize(len(items)))
        return _as_list(future.result())

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


class _Smartpool:
    def __init__(self, smartpool: Any, backend: str) -> None:
        self._smartpool = smartpool
        self._backend = backend

    def map(self, fn: Fn, items: list[Any]) -> list[Any]:
        if self._backend == "auto":
            # Every timed auto run pays for its probe: no decision is kept from the warm-up.
            forget = getattr(self._smartpool, "forget", None)
            if callable(forget):
                forget()
        return _as_list(self._smartpool.parallel_map(fn, items, backend=self._backend))

    def close(self) -> None:
        shutdown = getattr(self._smartpool, "shutdown", None)
        if callable(shutdown):
            shutdown()


def _load_serial() -> Factory:
    return _Serial


def _load_cf_thread() -> Factory:
    from concurrent.futures import ThreadPoolExecutor

    return lambda: _Executor(ThreadPoolExecutor(), chunked=False)


def _load_cf_process() -> Factory:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    fork = multiprocessing.get_context("fork")
    return lambda: _Executor(ProcessPoolExecutor(WORKERS, mp_context=fork), chunked=True)


def _load_mp_pool() -> Factory:
    import multiprocessing

    return lambda: _MpPool(multiprocessing.get_context("fork").Pool(WORKERS))


def _load_joblib(backend: str) -> Callable[[], Factory]:
    def load() -> Factory:
        joblib = _require("joblib")
        return lambda: _Joblib(joblib, backend)

    return load


def _load_mpire() -> Factory:
    mpire = _require("mpire")
    return lambda: _Mpire(mpire)


def _load_pebble() -> Factory:
    pebble = _require("pebble")
    return lambda: _Pebble(pebble)


def _load_smartpool(backend: str) -> Callable[[], Factory]:
    def load() -> Factory:
        smartpool = _require("smartpool")
        if not callable(getattr(smartpool, "parallel_map", None)):
            raise EngineUnavailable("smartpool has no parallel_map yet")
        return lambda: _Smartpool(smartpool, backend)

    return load


SMARTPOOL_ENGINES = tuple(f"smartpool-{b}" for b in ("auto", "serial", "thread", "process"))
#: ``smartpool-auto`` imported from another source tree (``--baseline DIR``: DIR holds the
#: ``smartpool`` package, built, e.g. ``src/`` of an earlier commit), so that a change is measured
#: against the code before it in the same run, its cells interleaved with the others'. It ranks
#: with no one: ratios and targets compare with the other engines only.
BASELINE = "smartpool-auto-baseline"
#: The environment variable that carries ``--baseline`` to the cells (``runner`` puts DIR first
#: on their PYTHONPATH, so that their worker processes import the same smartpool).
BASELINE_ENV = "SMARTPOOL_BENCH_BASELINE"


def _load_baseline() -> Factory:
    folder = os.environ.get(BASELINE_ENV)
    if not folder:
        raise EngineUnavailable(f"{BASELINE} needs --baseline DIR")
    smartpool = _require("smartpool")
    where = os.path.realpath(smartpool.__file__)
    if not where.startswith(os.path.realpath(folder) + os.sep):
        raise EngineUnavailable(f"smartpool was imported from {where}, not from {folder}")
    return lambda: _Smartpool(smartpool, "auto")


ENGINES: dict[str, Engine] = {
    e.name: e
    for e in (
        *(Engine(n, n, _load_smartpool(n.split("-", 1)[1])) for n in SMARTPOOL_ENGINES),
        Engine("serial", "serial loop", _load_serial),
        Engine("cf-thread", "cf ThreadPool", _load_cf_thread),
        Engine("cf-process", "cf ProcessPool (fork)", _load_cf_process),
        Engine("mp-pool", "multiprocessing.Pool (fork)", _load_mp_pool),
        Engine("joblib-loky", "joblib (loky)", _load_joblib("loky")),
        Engine("joblib-threads", "joblib (threads)", _load_joblib("threading")),
        Engine("mpire", "mpire", _load_mpire),
        Engine("pebble", "pebble ProcessPool", _load_pebble),
        Engine(BASELINE, "smartpool-auto (--baseline)", _load_baseline),
    )
}

PEER_ENGINES = tuple(name for name in ENGINES if name not in (*SMARTPOOL_ENGINES, BASELINE))
#: Engines run when ``--engines`` is not given (the baseline only with ``--baseline``).
DEFAULT_ENGINES = tuple(name for name in ENGINES if name != BASELINE)
