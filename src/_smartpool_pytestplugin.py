"""smartpool's pytest plugin, registered as ``smartpool`` through the ``pytest11`` entry point.

It lives outside the ``smartpool`` package so that pytest, which loads it in every session of
an environment where smartpool is installed, imports nothing of smartpool (nor hypothesis) until
a test uses it. ``-p no:smartpool`` turns it off.

- Fixture ``smartpool_backend``: "serial", "thread" and "process" in turn; within a test using
  it, smartpool calls that leave ``backend`` at its default run on that backend (a
  ``smartpool.config()`` scope). Narrow it with ``@pytest.mark.smartpool(backends=[...])`` or by
  redefining the fixture (``@pytest.fixture(params=["thread"])``).
- Options ``--smartpool-backend=NAME`` and ``--smartpool-serial``: one backend for every
  smartpool call of the session (debugging), each test using the fixture runs once.
- Fixture ``smartpool_clean`` (or ``--smartpool-strict`` for every test): the test fails if it
  leaves worker processes, threads, shared-memory files or held smartpool locks behind.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, cast

import pytest

BACKENDS = ("serial", "thread", "process")
_SCOPE = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smartpool")
    group.addoption(
        "--smartpool-backend",
        metavar="NAME",
        default=None,
        help="run every smartpool call of the session on backend NAME (serial, thread, process)",
    )
    group.addoption(
        "--smartpool-serial",
        action="store_true",
        default=False,
        help="run every smartpool call of the session serially (--smartpool-backend=serial)",
    )
    group.addoption(
        "--smartpool-strict",
        action="store_true",
        default=False,
        help="fail every test that leaves worker processes, threads, shared-memory files or "
        "held smartpool locks behind (the smartpool_clean fixture for all tests)",
    )
    parser.addini(
        "smartpool_grace",
        "seconds smartpool_clean waits for a test's processes and threads to end (default 10)",
        default="10",
    )


def _forced(config: pytest.Config) -> str | None:
    name: str | None = config.getoption("smartpool_backend", None)
    if config.getoption("smartpool_serial", False):
        if name not in (None, "serial"):
            raise pytest.UsageError(
                f"--smartpool-serial and --smartpool-backend={name} contradict each other"
            )
        return "serial"
    return name


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "smartpool(backends=[...]): the backends the smartpool_backend fixture runs this test on",
    )
    forced = _forced(config)
    if forced is None:
        return
    import smartpool  # asked for: the whole session runs on one backend

    try:
        scope = smartpool.config(backend=forced)  # type: ignore[arg-type]
    except ValueError as exc:
        raise pytest.UsageError(f"--smartpool-backend: {exc}") from None
    scope.__enter__()
    config.stash[_SCOPE] = scope


def pytest_unconfigure(config: pytest.Config) -> None:
    scope = config.stash.get(_SCOPE, None)
    if scope is not None:
        del config.stash[_SCOPE]
        scope.__exit__(None, None, None)


def _names(value: object) -> list[object]:
    """The elements of a list or tuple; [] for anything else."""
    return list(cast("Sequence[object]", value)) if isinstance(value, (list, tuple)) else []


def _backends_of(marker: pytest.Mark) -> list[str]:
    given: object = marker.kwargs.get("backends", marker.args[0] if marker.args else None)
    backends = _names(given)
    if not backends or not all(isinstance(b, str) for b in backends):
        raise pytest.UsageError(
            f"@pytest.mark.smartpool needs backends=[...], a non-empty list of backend names; "
            f"got {given!r}"
        )
    return [str(b) for b in backends]


def _argnames(mark: pytest.Mark) -> list[str]:
    names: object = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
    if isinstance(names, str):
        return [name.strip() for name in names.split(",")]
    return [str(name) for name in _names(names)]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Narrow ``smartpool_backend`` to the marker's backends (or the forced one) by turning
    them into a ``parametrize`` mark, which pytest applies instead of the fixture's params."""
    if "smartpool_backend" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if "smartpool_backend" in _argnames(mark):
            return  # the test parametrizes it itself
    forced = _forced(metafunc.config)
    marker = metafunc.definition.get_closest_marker("smartpool")
    if forced is not None:
        backends: Sequence[str] = [forced]
    elif marker is not None:
        backends = _backends_of(marker)
    else:
        return
    metafunc.definition.add_marker(
        pytest.mark.parametrize("smartpool_backend", backends, indirect=True)
    )


@pytest.fixture(params=BACKENDS)
def smartpool_backend(request: pytest.FixtureRequest) -> str:
    """The backend smartpool calls of this test run on ("serial", "thread", "process" in
    turn): calls that leave ``backend`` at its default use it. Narrow it with
    ``@pytest.mark.smartpool(backends=[...])`` or redefine this fixture."""
    return str(request.param)


@pytest.fixture
def smartpool_clean(request: pytest.FixtureRequest) -> Generator[None, None, None]:
    """Fail the test if it leaves worker processes, threads, shared-memory files or held
    smartpool locks behind (smartpool's pools are shut down after it, then checked; what the
    test started has ``smartpool_grace`` seconds, an ini option, to end)."""
    from smartpool.testing import _leaks

    grace = float(request.config.getini("smartpool_grace"))
    before = _leaks.Census.take()
    yield
    left = _leaks.check(before, grace)
    if left:
        pytest.fail(
            "the test left behind:\n" + "\n".join(f"  - {thing}" for thing in left),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _smartpool_scope(request: pytest.FixtureRequest) -> Generator[None, None, None]:
    """Checks the test (``--smartpool-strict``), then runs it on its ``smartpool_backend``."""
    if request.config.getoption("smartpool_strict", False):
        request.getfixturevalue("smartpool_clean")
    if "smartpool_backend" not in request.fixturenames:
        yield
        return
    name = _forced(request.config) or str(request.getfixturevalue("smartpool_backend"))
    import smartpool

    with smartpool.config(backend=name):  # type: ignore[arg-type]
        yield
