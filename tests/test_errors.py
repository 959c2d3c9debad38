"""A worker's exception reaches the caller as itself: type, args, frames, chain and a note."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

import smartpool

from .fault_tasks import Flaky, attempts
from .helpers import (
    CustomError,
    double,
    fail_on,
    raise_chained,
    raise_in_handler,
    raise_unpicklable,
    recurse,
    sleep_then_return,
)


def test_exception_keeps_type_args_and_attributes(backend: str) -> None:
    with pytest.raises(CustomError) as info:
        smartpool.parallel_map(fail_on(7), range(20), backend=backend)
    assert info.value.args == (7, "item 7 is bad")
    assert (info.value.code, info.value.detail) == (7, "item 7 is bad")


def test_traceback_holds_the_worker_frames(backend: str) -> None:
    with pytest.raises(CustomError) as info:
        smartpool.parallel_map(fail_on(3), range(5), backend=backend)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "check"  # the function that raised, from the worker's stack
    text = "".join(traceback.format_exception(info.value))
    assert 'raise CustomError(x, f"item {x} is bad")' in text


def test_note_names_item_backend_and_worker(backend: str) -> None:
    with pytest.raises(CustomError) as info:
        smartpool.parallel_map(fail_on(4), range(10), backend=backend)
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1
    assert f"item 4 failed on the {backend} backend" in notes[0]
    assert "process " in notes[0] and "thread " in notes[0]


def test_worker_description_follows_forks_and_renames() -> None:
    """The note's "process P, thread 'T'" is kept per thread, yet names a forked child's own
    process and a renamed thread's new name."""
    import os
    import threading
    import warnings

    from smartpool._work.task import describe_worker

    me = threading.current_thread()
    name = me.name
    assert describe_worker() == f"process {os.getpid()}, thread {name!r}"
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: forking a process with threads is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, describe_worker().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        assert pipe.read() == f"process {child}, thread {name!r}"
    try:
        me.name = "renamed-for-the-note"
        assert describe_worker() == f"process {os.getpid()}, thread 'renamed-for-the-note'"
    finally:
        me.name = name
    assert describe_worker() == f"process {os.getpid()}, thread {name!r}"


def test_cause_is_preserved(backend: str) -> None:
    with pytest.raises(ValueError, match="outer 2") as info:
        smartpool.parallel_map(raise_chained, [2], backend=backend)
    cause = info.value.__cause__
    assert isinstance(cause, KeyError) and cause.args == ("inner 2",)
    assert cause.__traceback__ is not None


def test_context_is_preserved(backend: str) -> None:
    with pytest.raises(RuntimeError, match="context kept") as info:
        smartpool.parallel_map(raise_in_handler, [1, 2], backend=backend)
    assert isinstance(info.value.__context__, KeyError)


def test_keyboard_interrupt_raised_by_the_function_is_itself(backend: str, tmp_path: Path) -> None:
    """A KeyboardInterrupt the function raises (no Ctrl-C involved) is not a crash on processes:
    every backend re-raises it in the caller, and retries never repeat it."""
    flaky = Flaky(str(tmp_path), failures=1, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt, match="attempt 1 at item 3") as info:
        smartpool.parallel_map(
            flaky, [3], backend=backend, retries=2, retry_on=(BaseException,), max_workers=1
        )
    assert attempts(str(tmp_path), 3) == 1
    if backend != "serial":  # inline, it may be the user's Ctrl-C: passed on untouched
        assert f"item 0 failed on the {backend} backend" in info.value.__notes__[0]
    assert smartpool.parallel_map(double, range(4), backend=backend) == [0, 2, 4, 6]


def test_recursion_error_is_itself_with_the_worker_frames(backend: str) -> None:
    with pytest.raises(RecursionError) as info:
        smartpool.parallel_map(recurse, [0], backend=backend)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "recurse"
    assert frames.count("recurse") > 100  # all the frames travelled, however deep
    assert "item 0 failed" in info.value.__notes__[-1]


def test_unpicklable_exception_arrives_as_remote_error() -> None:
    with pytest.raises(smartpool.RemoteError) as info:
        smartpool.parallel_map(raise_unpicklable, [5], backend="process")
    error = info.value
    assert error.type_name == "tests.helpers.Unpicklable"
    assert error.message == "cannot travel 5"
    assert "raise_unpicklable" in error.remote_traceback
    assert isinstance(error, smartpool.SmartpoolError)


@pytest.mark.parametrize("backend", ["serial", "thread"])
def test_unpicklable_exception_is_itself_in_process(backend: str) -> None:
    from .helpers import Unpicklable

    with pytest.raises(Unpicklable):
        smartpool.parallel_map(raise_unpicklable, [5], backend=backend)


def test_lowest_failing_index_wins(parallel_backend: str) -> None:
    # Item 30 fails at once; item 5 fails after a delay. Ordered results raise item 5's error.
    def fail_late_and_early(x: int) -> int:
        import time

        if x == 5:
            time.sleep(0.2)
            raise CustomError(5, "late but first")
        if x == 30:
            raise CustomError(30, "early but later")
        return x

    with pytest.raises(CustomError) as info:
        smartpool.parallel_map(
            fail_late_and_early, range(40), backend=parallel_backend, chunksize=1, max_workers=4
        )
    assert info.value.code == 5


def test_pending_work_is_cancelled_and_the_pool_still_works(parallel_backend: str) -> None:
    items = [(i, 0.01) for i in range(200)]
    with pytest.raises(CustomError):
        smartpool.parallel_map(fail_on(0), range(5), backend=parallel_backend)
    assert smartpool.parallel_map(sleep_then_return, items[:10], backend=parallel_backend) == list(
        range(10)
    )
    assert smartpool.parallel_map(double, range(10), backend=parallel_backend) == [
        2 * i for i in range(10)
    ]


def test_error_tree() -> None:
    assert issubclass(smartpool.SerializationError, smartpool.SmartpoolError)
    assert issubclass(smartpool.SerializationError, TypeError)
    assert issubclass(smartpool.TaskTimeoutError, TimeoutError)
    assert issubclass(smartpool.TaskTimeoutError, smartpool.SmartpoolError)
    assert issubclass(smartpool.WorkerCrashedError, smartpool.SmartpoolError)
    assert issubclass(smartpool.RemoteError, smartpool.SmartpoolError)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"backend": "gpu"},
            ValueError,
            "'auto', 'serial', 'thread', 'process', 'dask', 'interpreter'",
        ),
        ({"max_workers": 0}, ValueError, "max_workers must be at least 1"),
        ({"chunksize": 0}, ValueError, "chunksize must be at least 1"),
        ({"max_workers": 2.5}, TypeError, "max_workers must be an int"),
        ({"timeout": -1}, ValueError, "timeout must be a positive"),
        ({"retries": -1}, ValueError, "retries must be an int >= 0"),
        ({"timeout": 1, "backend": "serial"}, ValueError, "cannot be enforced"),
        ({"retry_on": (int,)}, TypeError, "retry_on must be exception types"),
    ],
)
def test_bad_options_are_typed_errors_naming_the_problem(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(")):
        smartpool.parallel_map(double, [1, 2], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error):
        smartpool.imap(double, [1, 2], **kwargs)  # type: ignore[arg-type]


def test_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="fn must be callable, got int"):
        smartpool.parallel_map(42, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must be callable"):
        smartpool.imap("not a function", [1])  # type: ignore[arg-type]


def test_items_that_are_not_iterable_are_a_type_error_naming_them() -> None:
    with pytest.raises(TypeError, match=r"the items must be an iterable .* got int: 5"):
        smartpool.parallel_map(abs, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="the items must be an iterable"):
        smartpool.imap(abs, None)  # type: ignore[arg-type]
