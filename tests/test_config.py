"""Scoped configuration: config(), configure(), the environment, and which layer wins."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import smartpool
from smartpool import _api

from .tasks import fetch


@pytest.fixture(autouse=True)
def _no_process_wide_options() -> Iterator[None]:
    yield
    smartpool.configure(backend=None, max_workers=None, chunksize=None, ordered=None)


def _options(fn: Any = abs, **given: Any) -> smartpool.Config:
    """The options a call of ``fn`` with ``given`` keywords resolves to, as a Config."""
    return smartpool.Config(options=_api.resolve_options(fn, given))


def test_nothing_configured_gives_the_defaults() -> None:
    settings = smartpool.current_config()
    assert settings.options == _api.resolve_options(abs, {})
    assert settings.options.backend == "auto" and settings.sources == {}


@smartpool.io_bound(max_workers=3, ordered=False)
def _decorated(x: int) -> int:
    return x


def test_each_layer_overrides_the_ones_below_option_by_option() -> None:
    smartpool.configure(max_workers=5, chunksize=7, backend="thread")
    assert _options().options.max_workers == 5
    assert _options(_decorated).options.max_workers == 3  # decorator over configure()
    with smartpool.config(max_workers=2):
        assert _options(_decorated).options.max_workers == 2  # config() over the decorator
        assert _options(_decorated, max_workers=1).options.max_workers == 1  # the call wins
        resolved = _options(_decorated).options
        # options no layer above sets come from the layers below
        assert (resolved.chunksize, resolved.ordered, resolved.backend) == (7, False, "thread")


def test_an_explicit_default_in_the_call_still_wins() -> None:
    with smartpool.config(ordered=False):
        assert _options(ordered=True).options.ordered is True


def test_scopes_nest_and_are_restored_on_exit_and_on_errors() -> None:
    with smartpool.config(max_workers=4, chunksize=2):
        with smartpool.config(max_workers=1):
            inner = smartpool.current_config().options
            assert (inner.max_workers, inner.chunksize) == (1, 2)
        assert smartpool.current_config().options.max_workers == 4
        with pytest.raises(KeyError), smartpool.config(chunksize=9):
            raise KeyError("inside")
        assert smartpool.current_config().options.chunksize == 2
    assert smartpool.current_config().options.max_workers is None


def test_current_config_names_each_options_source() -> None:
    smartpool.configure(chunksize=3)
    with smartpool.config(max_workers=2):
        assert smartpool.current_config().sources == {
            "chunksize": "configure()",
            "max_workers": "config()",
        }


def test_a_scope_decides_the_backend_of_calls_that_leave_it_at_auto() -> None:
    with smartpool.config(backend="serial"):
        assert smartpool.explain(abs, [1, 2]).backend == "serial"
        results = smartpool.parallel_map(fetch, ["a", "b"])  # an @io_bound function
        assert {tid for _, _, tid in results} == {threading.get_ident()}
        assert smartpool.explain(abs, [1, 2], backend="thread").backend == "thread"


def test_scopes_are_private_to_their_thread() -> None:
    entered, checked = threading.Event(), threading.Event()
    seen: list[int | None] = []

    def other() -> None:
        assert entered.wait(30)
        seen.append(smartpool.current_config().options.max_workers)
        checked.set()

    thread = threading.Thread(target=other)
    thread.start()
    with smartpool.config(max_workers=2):
        entered.set()
        assert checked.wait(30)
    thread.join(30)
    assert seen == [None]


def test_one_config_object_entered_from_many_threads_at_once() -> None:
    shared = smartpool.config(max_workers=6)
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def enter_and_leave() -> None:
        try:
            for _ in range(50):
                with shared:
                    barrier.wait(30)  # every thread inside the same object's scope at once
                    assert smartpool.current_config().options.max_workers == 6
                assert smartpool.current_config().options.max_workers is None
        except BaseException as error:  # reported below, with the thread's own assertion
            failures.append(error)
            barrier.abort()

    threads = [threading.Thread(target=enter_and_leave) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []


def test_scopes_are_private_to_their_asyncio_task() -> None:
    async def in_scope(workers: int, ready: asyncio.Event, go: asyncio.Event) -> int | None:
        with smartpool.config(max_workers=workers):
            ready.set()
            await go.wait()  # the other task enters its own scope meanwhile
            return smartpool.current_config().options.max_workers

    async def main() -> list[int | None]:
        ready = [asyncio.Event(), asyncio.Event()]
        go = asyncio.Event()
        tasks = [asyncio.create_task(in_scope(n + 1, ready[n], go)) for n in range(2)]
        await asyncio.gather(*(event.wait() for event in ready))
        go.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [1, 2]


def test_config_decorates_functions_and_coroutine_functions() -> None:
    @smartpool.config(chunksize=5)
    def plain(x: int) -> int | None:
        return smartpool.current_config().options.chunksize

    @smartpool.config(chunksize=6)
    async def coroutine() -> int | None:
        return smartpool.current_config().options.chunksize

    assert plain(1) == 5 and asyncio.run(coroutine()) == 6
    assert plain.__name__ == "plain"
    assert smartpool.current_config().options.chunksize is None


def test_bad_options_fail_where_the_scope_is_written() -> None:
    with pytest.raises(TypeError, match=r"'max_wrokers'.*valid options are: backend"):
        smartpool.config(max_wrokers=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        smartpool.config(backend="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        smartpool.configure(max_workers=0)
    assert smartpool.current_config().options.max_workers is None  # nothing half-applied


def test_configure_none_removes_a_process_wide_option() -> None:
    assert smartpool.configure(max_workers=3).options.max_workers == 3
    assert smartpool.configure(max_workers=None).options.max_workers is None


def test_serial_from_the_configuration_runs_calls_that_ask_for_a_timeout() -> None:
    with (
        smartpool.config(backend="serial"),
        pytest.warns(RuntimeWarning, match="timeout=5 is not enforced"),
    ):
        assert smartpool.parallel_map(abs, [-1, -2], timeout=5) == [1, 2]
    with pytest.raises(ValueError, match="cannot be enforced on the serial backend"):
        smartpool.parallel_map(abs, [-1], backend="serial", timeout=5)


def _fresh(env: dict[str, str], code: str) -> tuple[Any, str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout), done.stderr


_SHOW = (
    "import json, smartpool; c = smartpool.current_config(); "
    "print(json.dumps([c.options.backend, c.options.max_workers, dict(c.sources)]))"
)


def test_environment_variables_set_defaults_in_a_fresh_interpreter() -> None:
    shown, _ = _fresh({"SMARTPOOL_BACKEND": "Serial", "SMARTPOOL_MAX_WORKERS": "3"}, _SHOW)
    assert shown == ["serial", 3, {"backend": "environment", "max_workers": "environment"}]
    code = (
        "import smartpool\n"
        "with smartpool.config(max_workers=2):\n"
        "    print(smartpool.current_config().options.max_workers)"
    )
    shown, _ = _fresh({"SMARTPOOL_MAX_WORKERS": "3"}, code)
    assert shown == 2  # a scope is above the environment


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SMARTPOOL_BACKEND", "gpu"), ("SMARTPOOL_MAX_WORKERS", "0"), ("SMARTPOOL_MAX_WORKERS", "x")],
)
def test_a_bad_environment_value_warns_and_keeps_the_default(variable: str, value: str) -> None:
    shown, stderr = _fresh({variable: value}, _SHOW)
    assert shown == ["auto", None, {}]
    assert "RuntimeWarning" in stderr and f"{variable}={value!r}" in stderr


def test_the_environment_is_read_once() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        os.environ["SMARTPOOL_BACKEND"] = "serial"
        try:
            assert smartpool.current_config().options.backend == "auto"
        finally:
            del os.environ["SMARTPOOL_BACKEND"]


def test_every_option_is_typed_for_callers_and_is_a_configuration_key() -> None:
    from smartpool._options import OPTION_NAMES

    assert set(smartpool.MapOptions.__annotations__) == set(OPTION_NAMES)
    assert set(smartpool.current_config().options.__dataclass_fields__) == set(OPTION_NAMES)


def _nested_scope(_: object) -> list[object]:
    """What a nested call inside a worker sees of the caller's config() scope."""
    options = smartpool.current_config().options
    return [options.max_workers, options.chunksize]


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_nested_code_in_workers_sees_the_callers_scope(backend: str) -> None:
    with smartpool.config(max_workers=2, chunksize=3):
        seen = smartpool.parallel_map(_nested_scope, range(4), backend=backend)
        assert list(smartpool.imap(_nested_scope, iter(range(2)), backend=backend)) == [[2, 3]] * 2
    assert seen == [[2, 3]] * 4
    # Outside the scope, workers see no scope (a reused worker kept nothing of the last one).
    assert smartpool.parallel_map(_nested_scope, range(2), backend=backend) == [[None, None]] * 2
