"""Every worker process starts with its own random state, however it was started."""

from __future__ import annotations

from collections.abc import Iterator

import numpy.random
import pytest

import smartpool

from .fault_tasks import draw_together


@pytest.fixture(params=["forkserver", "fork"])
def fresh_workers(request: pytest.FixtureRequest) -> Iterator[None]:
    smartpool.shutdown()
    smartpool.configure(start_method=request.param)
    numpy.random.random()  # NumPy's generator exists in the caller: forked workers copy it
    try:
        yield
    finally:
        smartpool.configure(start_method="forkserver")
        smartpool.shutdown()


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("fresh_workers")
def test_workers_never_repeat_each_others_random_numbers() -> None:
    # Each task waits until all three run at once, so three different workers draw.
    counter, everyone = smartpool.Value(0), smartpool.Event()
    results = smartpool.parallel_map(
        draw_together, [(counter, everyone, 3)] * 3, backend="process", max_workers=3, chunksize=1
    )
    draws = dict(results)
    assert len(draws) == 3
    assert len({stdlib for stdlib, _ in draws.values()}) == 3
    assert len({numpy_draw for _, numpy_draw in draws.values()}) == 3
