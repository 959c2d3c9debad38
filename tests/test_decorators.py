"""@cpu_bound and @io_bound: inline calls, .map/.imap/.submit, metadata and routing."""

from __future__ import annotations

import inspect
import os
import pickle
import threading
from concurrent.futures import Future
from typing import Any

import pytest

import smartpool
from smartpool import _api

from .tasks import crunch, fetch


def test_metadata_and_signature_are_kept() -> None:
    assert crunch.__name__ == "crunch"
    assert crunch.__doc__ == "Square n, scaled; return it with the pid that computed it."
    assert crunch.__module__ == "tests.tasks"
    params = inspect.signature(crunch).parameters
    assert list(params) == ["n", "scale"]
    assert params["scale"].kind is inspect.Parameter.KEYWORD_ONLY


def test_plain_call_runs_inline() -> None:
    assert crunch(4, scale=2) == (32, os.getpid())
    assert fetch("a") == ("A", os.getpid(), threading.get_ident())


def test_cpu_bound_map_runs_on_processes() -> None:
    results = crunch.map(range(8))
    assert [r for r, _ in results] == [n * n for n in range(8)]
    assert os.getpid() not in {pid for _, pid in results}


def test_io_bound_map_runs_on_threads_of_this_process() -> None:
    results = fetch.map(["a", "b", "c", "d"])
    assert [r for r, _, _ in results] == ["A", "B", "C", "D"]
    assert {pid for _, pid, _ in results} == {os.getpid()}
    assert threading.get_ident() not in {tid for _, _, tid in results}


def test_parallel_map_uses_the_decorators_hint() -> None:
    assert os.getpid() not in {pid for _, pid in smartpool.parallel_map(crunch, [1, 2])}
    assert {pid for _, pid, _ in smartpool.parallel_map(fetch, ["x", "y"])} == {os.getpid()}


def test_call_site_options_override_the_decorator() -> None:
    results = crunch.map(range(4), backend="serial")
    assert {pid for _, pid in results} == {os.getpid()}


def _held_back() -> tuple[smartpool.TaskFunction[[int], int], threading.Event]:
    """An unordered I/O task whose item 0 finishes only once the returned event is set."""
    release = threading.Event()

    @smartpool.io_bound(ordered=False, max_workers=2, chunksize=1)
    def task(n: int) -> int:
        if n == 0:
            assert release.wait(30), "item 0 was never released"
        return n

    return task, release


def test_an_option_given_to_map_overrides_the_decorator_even_at_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ordered=True`` is smartpool's default; passed to ``.map``, ``.imap`` or
    ``parallel_map`` it still overrides the decorator's ``ordered=False``."""
    task, release = _held_back()
    results = task.imap([0, 1])
    assert next(results) == 1  # the decorator's ordered=False: item 0 is still held back
    release.set()
    assert list(results) == [0]

    used: list[bool] = []
    real = _api.start

    def spy(*args: Any, **kwargs: Any) -> Any:
        run, ordered = real(*args, **kwargs)
        used.append(ordered)
        return run, ordered

    monkeypatch.setattr(_api, "start", spy)
    assert task.map([0, 1], ordered=True) == [0, 1]
    assert list(task.imap([0, 1], ordered=True)) == [0, 1]
    assert sorted(task.map([0, 1])) == [0, 1]
    assert smartpool.parallel_map(task, [0, 1], ordered=True) == [0, 1]
    assert sorted(smartpool.parallel_map(task, [0, 1])) == [0, 1]
    assert used == [True, True, False, True, False]


def test_an_unknown_option_to_map_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"'chunk_size'.*valid options are: backend"):
        crunch.map(range(2), chunk_size=1)


def test_imap_streams() -> None:
    assert [r for r, _, _ in fetch.imap(iter(["p", "q"]))] == ["P", "Q"]


def test_submit_returns_a_future_on_the_hinted_backend() -> None:
    future = crunch.submit(7, scale=3)
    assert isinstance(future, Future)
    value, pid = future.result(timeout=60)
    assert value == 147 and pid != os.getpid()
    key, pid, tid = fetch.submit("z").result(timeout=60)
    assert key == "Z" and pid == os.getpid() and tid != threading.get_ident()


def test_submit_reraises_the_original_error() -> None:
    @smartpool.cpu_bound
    def broken(x: int) -> int:
        raise ArithmeticError(x)

    with pytest.raises(ArithmeticError) as info:
        broken.submit(3).result(timeout=60)
    assert info.value.args == (3,)
    assert "item 0 failed on the process backend" in info.value.__notes__[0]


def test_decorator_with_options_and_bare_agree() -> None:
    @smartpool.cpu_bound(max_workers=1, retries=0)
    def f(x: int) -> int:
        return x + 1

    assert f.hint == "cpu" and f.options.max_workers == 1
    assert f.map([1, 2]) == [2, 3]
    assert f(1) == 2


def test_decorated_function_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(crunch)) is crunch


def test_decorated_local_function_pickles_by_value() -> None:
    offset = 5

    @smartpool.cpu_bound
    def local(x: int) -> int:
        return x + offset

    assert local.map([1, 2]) == [6, 7]


def test_decorating_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="decorates a callable"):
        smartpool.cpu_bound(3)  # type: ignore[call-overload]


def test_bad_decorator_options_fail_at_decoration() -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        smartpool.io_bound(max_workers=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: smartpool.parallel_map(abs, [1], max_wrokers=3),
        lambda: list(smartpool.imap(abs, [1], max_wrokers=3)),
        lambda: smartpool.explain(abs, [1], max_wrokers=3),
        lambda: smartpool.cpu_bound(max_wrokers=3),
        lambda: crunch.map([1], max_wrokers=3),
    ],
    ids=["parallel_map", "imap", "explain", "decorator", "map"],
)
def test_a_misspelled_option_is_the_same_type_error_everywhere(call: Any) -> None:
    with pytest.raises(TypeError) as caught:
        call()
    assert str(caught.value) == (
        "unexpected option(s) 'max_wrokers'; valid options are: "
        + ", ".join(smartpool._options.OPTION_NAMES)
    )
    assert str(caught.value).startswith(
        "unexpected option(s) 'max_wrokers'; valid options are: backend, max_workers, "
        "chunksize, ordered, timeout, retries, retry_on, "
    )
