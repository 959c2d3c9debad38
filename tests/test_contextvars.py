"""The caller's contextvars reach the workers: a copy of the context on threads, the variables
that can travel (by their module attribute, values that pickle) in worker processes."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

import pytest

import smartpool
from smartpool._work.carried import capture_vars

from . import executor_tasks as tasks


def in_context(value: str, fn: object, *args: object) -> object:
    """Run ``fn`` with ``request_id`` set to ``value``, in a context of its own."""

    def call() -> object:
        tasks.request_id.set(value)
        return fn(*args)  # type: ignore[operator]

    return contextvars.Context().run(call)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_submit_sees_the_callers_context(backend: str) -> None:
    with smartpool.Executor(backend=backend) as executor:  # type: ignore[arg-type]
        value, pid = in_context("req-1", lambda: executor.submit(tasks.read_request_id).result())  # type: ignore[misc]
        assert value == "req-1"
        assert (pid == os.getpid()) == (backend == "thread")
        assert executor.submit(tasks.read_request_id).result()[0] == "unset"  # not leaked


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_worker_setting_a_variable_does_not_change_the_callers(backend: str) -> None:
    with smartpool.Executor(backend=backend) as executor:  # type: ignore[arg-type]
        tasks.request_id.set("caller")
        try:
            assert executor.submit(tasks.set_request_id, "worker").result() == "worker"
            assert tasks.request_id.get() == "caller"
            assert executor.submit(tasks.read_request_id).result()[0] == "caller"
        finally:
            tasks.request_id.set("unset")


def test_a_value_that_cannot_be_pickled_stays_behind() -> None:
    def run() -> object:
        tasks.handle.set(threading.Lock())
        tasks.request_id.set("travels")
        carried = capture_vars()
        with smartpool.Executor(backend="process") as executor:
            seen = executor.submit(tasks.read_handle).result()
            value = executor.submit(tasks.read_request_id).result()[0]
        return carried, seen, value

    carried, seen, value = contextvars.Context().run(run)  # type: ignore[misc]
    assert [(m, a) for m, a, _ in carried] == [("tests.executor_tasks", "request_id")]
    assert seen == "unset"
    assert value == "travels"


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_amap_and_asubmit_carry_the_tasks_context(backend: str) -> None:
    async def main() -> tuple[list[tuple[str, int]], tuple[str, int]]:
        tasks.request_id.set("from-the-task")
        mapped = await smartpool.amap(tasks.read_request_id, range(3), backend=backend)  # type: ignore[arg-type]
        submitted = await smartpool.asubmit(tasks.read_request_id)
        return mapped, submitted

    mapped, submitted = asyncio.run(main())
    assert {value for value, _ in mapped} == {"from-the-task"}
    assert submitted[0] == "from-the-task"
    assert tasks.request_id.get() == "unset"  # asyncio.run ran main in a context of its own
