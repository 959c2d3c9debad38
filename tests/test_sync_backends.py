"""smartpool's shared-state primitives mean the same thing on every backend of parallel_map."""

from __future__ import annotations

import textwrap
import threading

import pytest

import smartpool

from . import syncmod
from .subprocesses import run_python


def add_under_lock(args: tuple[smartpool.Lock, smartpool.Value, int]) -> int:
    lock, counter, times = args
    for _ in range(times):
        with lock:
            counter.set(counter.get() + 1)  # a read-modify-write only the lock makes safe
    return times


def add_atomically(args: tuple[smartpool.Value, int]) -> int:
    value, times = args
    for _ in range(times):
        value.add(1)
    return times


def try_lock(args: tuple[smartpool.Lock, float]) -> bool:
    lock, timeout = args
    got = lock.acquire(timeout=timeout)
    if got:
        lock.release()
    return got


def test_lock_makes_read_modify_write_exact(backend: str) -> None:
    lock, counter = smartpool.Lock(), smartpool.Value(0)
    jobs = [(lock, counter, 200)] * 6
    smartpool.parallel_map(add_under_lock, jobs, backend=backend, max_workers=3, chunksize=1)
    assert counter.get() == 1200


def test_value_add_is_atomic(backend: str) -> None:
    value = smartpool.Value(0)
    smartpool.parallel_map(add_atomically, [(value, 250)] * 4, backend=backend, chunksize=1)
    assert value.get() == 1000


def test_lock_held_by_the_caller_blocks_a_worker(parallel_backend: str) -> None:
    lock = smartpool.Lock()
    with lock:
        assert smartpool.parallel_map(try_lock, [(lock, 0.05)], backend=parallel_backend) == [False]
    assert smartpool.parallel_map(try_lock, [(lock, 5.0)], backend=parallel_backend) == [True]


def test_lock_held_by_a_worker_blocks_the_caller(parallel_backend: str) -> None:
    lock, event = smartpool.Lock(), smartpool.Event()

    def hold(_: int) -> bool:
        with lock:
            event.set()
            return done.wait(30)

    done = smartpool.Event()
    results = smartpool.imap(hold, [0], backend=parallel_backend)
    box: list[bool] = []
    runner = threading.Thread(target=lambda: box.extend(results))
    runner.start()
    assert event.wait(30)
    assert lock.acquire(timeout=0.05) is False
    done.set()
    runner.join(30)
    assert box == [True]
    assert lock.acquire(timeout=5)
    lock.release()


def test_objects_nested_in_containers_and_closures(backend: str) -> None:
    value = smartpool.Value(0)
    payload = {"counters": [value]}

    def bump(x: int) -> int:
        payload["counters"][0].add(x)
        return x

    smartpool.parallel_map(bump, range(10), backend=backend)
    assert value.get() == 45


def test_module_global_created_before_the_pool(backend: str) -> None:
    with syncmod.LOCK:  # held here, so no worker (nor this thread: a Lock is not re-entrant)
        assert smartpool.parallel_map(syncmod.try_global_lock, [0.05], backend=backend) == [False]
    before = syncmod.TOTAL.get()
    smartpool.parallel_map(syncmod.add_to_global, [10] * 5, backend=backend, chunksize=1)
    assert syncmod.TOTAL.get() == before + 50


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_module_global_across_start_methods(method: str) -> None:
    smartpool.configure(start_method=method)
    try:
        with syncmod.LOCK:
            assert smartpool.parallel_map(syncmod.try_global_lock, [0.05], backend="process") == [
                False
            ]
        assert smartpool.parallel_map(syncmod.try_global_lock, [5.0], backend="process") == [True]
    finally:
        smartpool.configure(start_method="forkserver")


#: A Value holding an instance of a class defined in ``__main__``, read and replaced by workers
#: (whose ``__main__`` is not the script's) and read back by the script.
MAIN_CLASS_SCRIPT = textwrap.dedent(
    """
    import sys
    from dataclasses import dataclass
    import smartpool

    @dataclass
    class Point:
        x: int
        y: int

    BEST = smartpool.Value(Point(0, 0), max_bytes=8192)  # module level: re-attached in workers

    def visit(args):
        value, n = args
        assert type(BEST.get()).__name__ == "Point" and value.get().x >= -1
        BEST.update(lambda p: Point(p.x + 1, p.y + n))
        value.set(Point(n, n))
        return n

    if __name__ == "__main__":
        smartpool.configure(start_method=sys.argv[1])
        passed = smartpool.Value(Point(-1, -1), max_bytes=8192)  # handed over as an item
        jobs = [(passed, n) for n in range(4)]
        assert smartpool.parallel_map(visit, jobs, backend="process", max_workers=2) == [0, 1, 2, 3]
        best, last = BEST.get(), passed.get()
        assert type(best) is Point and best == Point(4, 6), best
        assert type(last) is Point and last.x == last.y and last.x in range(4), last
        print("ok")
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_a_value_holding_a_main_class_works_in_workers(method: str) -> None:
    done = run_python("-c", MAIN_CLASS_SCRIPT, method, timeout=100)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]
