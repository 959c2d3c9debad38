"""No leaks over many calls, the interpreter exits promptly, imap streams in bounded memory.

Measured in fresh subprocesses, so nothing from other tests (pools, threads) skews the counts.
"""

from __future__ import annotations

import itertools
import json
import textwrap
import time
from collections.abc import Iterator

import pytest

import smartpool

from .helpers import double
from .subprocesses import ROOT, run_python

LEAK_SCRIPT = textwrap.dedent(
    """
    import json
    import smartpool
    from tests.census import census

    def snapshot():
        return census()

    def square(x):
        if x == -1:
            raise ValueError("bad item")
        return x * x

    def calls(backend, n):
        for i in range(n):
            smartpool.parallel_map(square, range(8), backend=backend, max_workers=2)
            if i % 10 == 0:
                try:
                    smartpool.parallel_map(square, [1, -1], backend=backend, max_workers=2)
                except ValueError:
                    pass
                first = next(smartpool.imap(square, range(50), backend=backend, max_workers=2))
                assert first == 0

    report = {}
    for backend in ("serial", "thread", "process"):
        calls(backend, 50)  # warm up: pools reach their size
        before = snapshot()
        calls(backend, 1000)
        report[backend] = [before, snapshot()]
    print(json.dumps(report), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_a_thousand_calls_leak_nothing_and_the_interpreter_exits_promptly() -> None:
    began = time.monotonic()
    done = run_python("-c", LEAK_SCRIPT, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 60  # 3 x 1000 calls, then exit without waiting on anything
    for backend, (before, after) in json.loads(done.stdout).items():
        assert after == before, f"{backend}: threads, child processes, fds {before} -> {after}"


MEMORY_SCRIPT = textwrap.dedent(
    """
    import itertools, os, sys
    import smartpool

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGESIZE") / 2**20

    def negate(x):
        return -x

    results = smartpool.imap(negate, itertools.count(), backend=sys.argv[1], max_workers=2)
    for n, value in enumerate(results):
        if n == 200_000:
            early = rss_mb()
        if n == 1_000_000:
            print(early, rss_mb(), flush=True)
            break
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_million_items_stream_through_imap_in_flat_memory(backend: str) -> None:
    done = run_python("-c", MEMORY_SCRIPT, backend, timeout=100)
    assert done.returncode == 0, done.stderr
    early, late = map(float, done.stdout.split())
    assert late - early < 16, f"RSS grew from {early:.0f} MB to {late:.0f} MB"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("chunksize", [1, 7])
def test_imap_keeps_workers_x_chunksize_items_in_flight(backend: str, chunksize: int) -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled = i + 1
            yield i

    workers = 1 if backend == "serial" else 3
    # 2 chunks a worker running or queued; behind a chunk that holds up the order, done ones
    # are held too, up to 8 chunks a worker in all (inline, every chunk is done at once).
    limit = (2 if backend == "serial" else 8) * workers * chunksize
    results = smartpool.imap(
        double, endless(), backend=backend, max_workers=workers, chunksize=chunksize
    )
    for taken, value in enumerate(itertools.islice(results, 2000), start=1):
        assert value == 2 * (taken - 1)
        assert pulled - taken < limit
