"""Backends are found by name in one registry: adding one is one class and one registration,
and the planner, runs and options all see it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import smartpool
from smartpool._backends import registry
from smartpool._backends.base import BackendTraits

from . import custom_backend
from .helpers import double


@pytest.fixture
def recording() -> Iterator[None]:
    registry.register(
        "recording",
        "tests.custom_backend:RecordingBackend",
        BackendTraits(runs_inline=False, can_kill=False, needs_pickling=False, chunk_seconds=0.002),
    )
    custom_backend.submitted.clear()
    yield
    registry.unregister("recording")


def test_a_registered_backend_runs_calls_by_name(recording: None) -> None:
    got = smartpool.parallel_map(double, range(10), backend="recording", max_workers=3, chunksize=4)  # type: ignore[arg-type]
    assert got == [2 * x for x in range(10)]
    assert custom_backend.submitted == [(3, 0, 4), (3, 4, 4), (3, 8, 2)]
    plan = smartpool.explain(double, range(10), backend="recording")  # type: ignore[arg-type]
    assert plan.backend == "recording"
    assert "recording" in registry.names()


def test_a_lease_passes_settings_to_the_backend_and_tells_pools_apart(recording: None) -> None:
    with registry.lease("recording", 2) as default, registry.lease("recording", 2, label="b") as b:
        assert default.label == "default" and b.label == "b"  # type: ignore[attr-defined]
        assert default is not b
    private = registry.lease("recording", 2, private=True)
    with registry.lease("recording", 2) as shared:
        assert private.backend is not shared
    private.release()


def test_an_unregistered_backend_is_refused_with_the_valid_names(recording: None) -> None:
    registry.unregister("recording")
    with pytest.raises(ValueError, match="unknown backend 'recording'; valid backends are: 'auto'"):
        smartpool.parallel_map(double, [1], backend="recording")  # type: ignore[arg-type]
    registry.register(
        "recording", "tests.custom_backend:RecordingBackend", registry.traits("thread")
    )


def test_idle_pools_beyond_the_cap_are_evicted_but_held_ones_never() -> None:
    held = [registry.lease("thread", 100 + i) for i in range(6)]
    try:
        for lease in held:  # all held: none may go, even beyond the cap of idle pools
            assert not lease.backend._pool._closed  # type: ignore[attr-defined]
    finally:
        for lease in held:
            lease.release()
    closed = [lease.backend._pool._closed for lease in held]  # type: ignore[attr-defined]
    assert closed.count(False) == registry.MAX_IDLE_POOLS_PER_KIND  # the most recent stay warm
    assert closed[:2] == [True, True]
