"""asyncio: amap, aimap and asubmit never block the loop, and cancelling the task stops the work."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import smartpool

from . import executor_tasks as tasks
from . import tasks as decorated
from .helpers import double

T = TypeVar("T")

#: The longest a heartbeat on the loop may wait while smartpool works (0.1 s is the aim; a
#: loaded CI machine gets some slack).
HEARTBEAT_LIMIT = 0.3


@pytest.fixture(autouse=True)
def _fresh_decisions() -> Iterator[None]:
    smartpool.forget()
    yield
    smartpool.forget()


@pytest.mark.parametrize("backend", ["auto", "serial", "thread", "process"])
def test_amap_and_aimap(backend: str) -> None:
    async def main() -> tuple[list[int], list[int]]:
        mapped = await smartpool.amap(double, range(50), backend=backend)  # type: ignore[arg-type]
        streamed = [r async for r in smartpool.aimap(double, range(50), backend=backend)]  # type: ignore[arg-type]
        return mapped, streamed

    expected = [2 * n for n in range(50)]
    assert asyncio.run(main()) == (expected, expected)


def test_asubmit() -> None:
    assert asyncio.run(smartpool.asubmit(pow, 2, 10)) == 1024


def test_the_methods_of_decorated_functions() -> None:
    async def main() -> tuple[Any, ...]:
        mapped = await decorated.crunch.amap([1, 2])
        streamed = [r async for r in decorated.fetch.aimap(["a"])]
        submitted = await decorated.crunch.asubmit(3, scale=2)
        return mapped, streamed, submitted

    mapped, streamed, submitted = asyncio.run(main())
    assert [value for value, _ in mapped] == [1, 4]
    assert all(pid != os.getpid() for _, pid in mapped)  # @cpu_bound: processes
    assert streamed == [("A", os.getpid(), streamed[0][2])]  # @io_bound: threads here
    assert submitted[0] == 18


def test_an_error_comes_back_as_itself() -> None:
    async def main() -> None:
        await smartpool.amap(divide, [1, 0], backend="thread")

    with pytest.raises(ZeroDivisionError):
        asyncio.run(main())
    with pytest.raises(ZeroDivisionError):
        asyncio.run(smartpool.asubmit(divide, 0))


def divide(x: int) -> float:
    return 1 / x


def test_bad_options_fail_at_the_call() -> None:
    with pytest.raises(TypeError, match="unexpected option"):
        smartpool.aimap(double, [1], max_wrokers=2)  # type: ignore[call-arg]


def test_a_coroutine_function_is_refused_with_what_to_do() -> None:
    async def fetch(_: object) -> None:
        return None

    with pytest.raises(TypeError, match=r"coroutine function.*Await the coroutines"):
        smartpool.aimap(fetch, [1])
    with pytest.raises(TypeError, match="coroutine function"):
        asyncio.run(smartpool.amap(fetch, [1]))
    with pytest.raises(TypeError, match="coroutine function"):
        asyncio.run(smartpool.asubmit(fetch, 1))


async def _with_heartbeat(work: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    """Run ``work`` while a task on the loop wakes every 10 ms; the longest wait it saw."""
    longest = 0.0
    done = False

    async def beat() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    beating = asyncio.create_task(beat())
    try:
        result = await work()
    finally:
        done = True
        await beating
    return result, longest


def test_the_loop_keeps_running_while_amap_probes_and_computes() -> None:
    # Pure-Python CPU work, unknown to smartpool: probed in the caller's stead, then run.
    items = [20_000] * 200
    result, longest = asyncio.run(_with_heartbeat(lambda: smartpool.amap(tasks.spin, items)))
    assert result == [tasks.spin(20_000)] * 200
    assert longest < HEARTBEAT_LIMIT, f"the loop waited {longest:.3f} s"


def test_the_loop_keeps_running_while_aimap_runs_inline_work() -> None:
    async def consume() -> int:
        return sum([r async for r in smartpool.aimap(tasks.spin, [20_000] * 100, backend="serial")])

    total, longest = asyncio.run(_with_heartbeat(consume))
    assert total == tasks.spin(20_000) * 100
    assert longest < HEARTBEAT_LIMIT, f"the loop waited {longest:.3f} s"


_pickling = threading.Event()
_release = threading.Event()


class _SlowToPickle:
    """An argument whose pickling (in the thread making the call) waits for the test: the call
    is still being made when its task is cancelled. It arrives in the worker as a plain str."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        _pickling.set()
        assert _release.wait(30)
        return (str, (self.path,))


def _holders() -> int:
    from smartpool._backends import registry

    return sum(pool.holders for pool in registry._pools.values())


@pytest.mark.timeout(90)
def test_a_call_cancelled_while_asubmit_still_makes_it_is_stopped_once_made(
    tmp_path: Path,
) -> None:
    """Cancelled while the call is being made (its argument pickled), and the loop ended right
    after (``asyncio.run`` cancels the thread's task as it ends): the call, made later, is
    stopped all the same, never left running (holding its pool) for two minutes."""
    path = tmp_path / "pid"
    before = _holders()
    _pickling.clear()
    _release.clear()

    async def main() -> None:
        task = asyncio.create_task(
            smartpool.asubmit(tasks.write_pid_then_sleep_cpu, _SlowToPickle(str(path)))
        )
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, _pickling.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        _release.set()  # the call is made now, while asyncio.run ends

    asyncio.run(main())
    deadline = time.monotonic() + 30
    while _holders() > before and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the pools' leases, with a deadline
    assert _holders() == before, "the cancelled call still runs"
    if path.exists() and path.read_text():  # it had started: its worker was killed
        assert _wait_dead(int(path.read_text()), time.monotonic() + 30)


def _pid_when_written(path: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)  # polling a file another process writes, with a deadline
    raise AssertionError(f"{path} was never written")


def _wait_dead(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["amap", "aimap", "asubmit"])
def test_cancelling_the_task_kills_the_worker_process_running_its_item(
    how: str, tmp_path: Path
) -> None:
    path = tmp_path / "pid"

    async def work() -> object:
        if how == "amap":
            return await smartpool.amap(tasks.write_pid_then_sleep, [str(path)], backend="process")
        if how == "aimap":
            items = smartpool.aimap(tasks.write_pid_then_sleep, [str(path)], backend="process")
            return [r async for r in items]
        return await smartpool.asubmit(tasks.write_pid_then_sleep_cpu, str(path))

    async def main() -> int:
        task = asyncio.create_task(work())
        deadline = time.monotonic() + 30
        loop = asyncio.get_running_loop()
        pid = await loop.run_in_executor(None, _pid_when_written, path, deadline)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(main())
    assert pid != os.getpid()
    assert _wait_dead(pid, time.monotonic() + 30), "the worker running the item still runs"
    assert smartpool.parallel_map(double, [1, 2], backend="process") == [2, 4]  # still usable
