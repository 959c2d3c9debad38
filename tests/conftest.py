"""Shared fixtures: every behaviour is checked on every backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from hypothesis import settings

import smartpool

# Hypothesis fails an example that takes over 200 ms by default: a timing test, which a shared CI
# machine under load fails now and then (a doctest of smartpool.testing.strategies did, at load
# 10). The suite's property tests (and the examples they run) check behaviour, not speed.
settings.register_profile("smartpool-suite", deadline=None)
settings.load_profile("smartpool-suite")

#: Python 3.14+ has subinterpreters: the interpreter backend joins every backend-parametrised
#: test there. (On older Pythons asking for it is an error, see test_interpreter_backend.py.)
INTERPRETERS = sys.version_info >= (3, 14)
BACKENDS = ("serial", "thread", "process") + (("interpreter",) if INTERPRETERS else ())
PARALLEL = ("thread", "process") + (("interpreter",) if INTERPRETERS else ())


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


@pytest.fixture(autouse=True)
def _other_programs_out_of_sight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans are checked as on a machine where no other program wants the cores: busy threads
    found in ``/proc`` (other sessions, other cgroups, this one's) are not shown to the planner,
    so that a test's verdict does not follow whatever else runs on the test machine. (With a
    loop spinning in another session, pure-Python work rightly stays serial, and a test of
    "the rest runs on processes" failed 11 runs in 11.) The tests of that reading set their
    own (test_neighbours.py, test_replan_under_load.py)."""
    from smartpool._routing import neighbours

    monkeypatch.setattr(neighbours, "neighbours", lambda: neighbours.Neighbours(0, ()))
