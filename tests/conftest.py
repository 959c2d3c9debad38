"""Shared fixtures: every behaviour is checked on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import smartpool

BACKENDS = ("serial", "thread", "process")
PARALLEL = ("thread", "process")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend by name."""
    return str(request.param)


@pytest.fixture(scope="session", params=PARALLEL)
def parallel_backend(request: pytest.FixtureRequest) -> str:
    """The backends that run work somewhere other than the calling thread."""
    return str(request.param)


@pytest.fixture(scope="session", autouse=True)
def _shutdown_pools() -> Iterator[None]:
    yield
    smartpool.shutdown()
