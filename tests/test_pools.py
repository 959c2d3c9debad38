"""Pools are started lazily, reused warm across calls, and can be shut down and restarted."""

from __future__ import annotations

import os

import pytest

import smartpool

from .helpers import double, where


def test_warm_calls_reuse_the_same_workers(parallel_backend: str) -> None:
    first = set(smartpool.parallel_map(where, range(8), backend=parallel_backend, max_workers=2))
    second = set(smartpool.parallel_map(where, range(8), backend=parallel_backend, max_workers=2))
    # A fresh pool would bring new pids/threads: two calls together never exceed the pool's size.
    assert len(first | second) <= 2


def test_process_workers_are_other_processes() -> None:
    pids = {pid for pid, _ in smartpool.parallel_map(where, range(8), backend="process")}
    assert os.getpid() not in pids


def test_thread_workers_are_threads_of_this_process() -> None:
    pids = {pid for pid, _ in smartpool.parallel_map(where, range(8), backend="thread")}
    assert pids == {os.getpid()}


def test_shutdown_then_next_call_starts_fresh_pools() -> None:
    before = set(smartpool.parallel_map(where, range(4), backend="process", max_workers=2))
    smartpool.shutdown()
    after = set(smartpool.parallel_map(where, range(4), backend="process", max_workers=2))
    assert before.isdisjoint(after)


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_every_start_method_works(method: str) -> None:
    smartpool.configure(start_method=method)
    try:
        assert smartpool.parallel_map(double, range(20), backend="process") == [
            2 * i for i in range(20)
        ]
        k = 3
        assert smartpool.parallel_map(lambda x: x * k, [1, 2], backend="process") == [3, 6]
    finally:
        smartpool.configure(start_method="forkserver")


def test_unknown_start_method_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'forkserver', 'spawn', 'fork'"):
        smartpool.configure(start_method="threads")


def test_nested_call_inside_a_worker_runs_in_process() -> None:
    def outer(x: int) -> list[tuple[int, int]]:
        return smartpool.parallel_map(where, range(3))

    for backend in ("thread", "process"):
        results = smartpool.parallel_map(outer, range(2), backend=backend)
        for inner in results:
            assert len({pid for pid, _ in inner}) == 1  # all inner items in the worker itself


def test_bad_start_method_in_the_environment_warns(tmp_path: object) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import smartpool; print(smartpool.configure().start_method)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SMARTPOOL_START_METHOD": "threads"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "forkserver"
    assert "SMARTPOOL_START_METHOD='threads' is not one of" in done.stderr
