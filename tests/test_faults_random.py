"""Every worker process starts with its own random state, however it was started."""

from __future__ import annotations

from collections.abc import Iterator

import numpy.random
import pytest

import smartpool

from .fault_tasks import first_draws


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
    # The first three chunks each start a worker of their own, so three workers all draw.
    results = smartpool.parallel_map(
        first_draws, range(30), backend="process", max_workers=3, chunksize=1
    )
    draws = dict(results)
    assert len(draws) == 3
    assert len({stdlib for stdlib, _ in draws.values()}) == 3
    assert len({numpy_draw for _, numpy_draw in draws.values()}) == 3
