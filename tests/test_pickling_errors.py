"""When something cannot travel to or from a worker process, the error the user reads: raised at
their call, with the pickler's message as the cause (not a misleading first attempt), named
``smartpool.SerializationError``, and advice that fits the object that cannot travel."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import textwrap
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

import smartpool

from .subprocesses import run_python


def test_the_printed_error_shows_the_users_call_and_the_useful_cause(tmp_path: Path) -> None:
    script = tmp_path / "guarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            import smartpool

            def main():
                lock = threading.Lock()

                def work(x):
                    with lock:
                        return x * 2

                smartpool.parallel_map(work, range(10), backend="process")

            if __name__ == "__main__":
                main()
            """
        )
    )
    done = run_python(str(script), timeout=60)
    assert done.returncode == 1
    printed = done.stderr
    last = printed.strip().splitlines()[-1]
    assert last.startswith("smartpool.SerializationError: the function 'main.<locals>.work'")
    assert "closure variable 'lock' -> _thread.lock object" in last
    assert "smartpool.Lock()" in last  # the fix that exists for exactly this
    # The chain: the pickler's own words, not plain pickle's first attempt ("Can't pickle local
    # object" is about the closure, which cloudpickle then sends fine).
    assert "TypeError: cannot pickle '_thread.lock' object" in printed
    assert "local object" not in printed and "During handling" not in printed
    # The user's lines; of smartpool's, only the line of the call that raised it.
    frames = [line for line in printed.splitlines() if line.lstrip().startswith('File "')]
    assert any(str(script) in line and "in main" in line for line in frames), printed
    internal = [line for line in frames if str(script) not in line]
    assert len(internal) == 1 and "in parallel_map" in internal[0], printed
    assert "cloudpickle" not in printed and "serialize.py" not in printed


def test_errors_are_named_by_the_module_users_import_them_from() -> None:
    for error in (
        smartpool.SmartpoolError,
        smartpool.SerializationError,
        smartpool.WorkerCrashedError,
        smartpool.TaskTimeoutError,
        smartpool.RemoteError,
        smartpool.ResourceLimitError,
    ):
        assert f"{error.__module__}.{error.__qualname__}" == f"smartpool.{error.__name__}"


def returns_generator(n: int) -> Generator[int, None, None]:
    return (i for i in range(n))


async def returns_coroutine(n: int) -> int:
    return n


def _mp_lock_in_closure() -> Callable[[int], int]:
    mp_lock = multiprocessing.Lock()

    def locked(x: int) -> int:
        with mp_lock:
            return x

    return locked


def _lock_in_closure() -> Callable[[int], int]:
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    return locked


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
@pytest.mark.parametrize(
    ("fn", "items", "says", "never"),
    [
        pytest.param(
            _lock_in_closure(),
            [1],
            ["closure variable 'lock'", "use smartpool.Lock()"],
            "OS resources",
            id="threading.Lock captured",
        ),
        pytest.param(
            abs,
            [1, threading.Semaphore(2)],
            ["item 1 (Semaphore)", "use smartpool.Semaphore()"],
            "OS resources",
            id="threading.Semaphore item",
        ),
        pytest.param(
            _mp_lock_in_closure(),
            [1],
            ["closure variable 'mp_lock'", "multiprocessing.Lock", "smartpool.Lock()"],
            "OS resources",
            id="multiprocessing.Lock captured",
        ),
        pytest.param(
            returns_generator,
            [3],
            ["result of item 0 (generator)", "list(...)"],
            "OS resources",
            id="generator result",
        ),
        pytest.param(
            returns_coroutine,
            [3],
            ["result of item 0 (coroutine)", "asyncio.run"],
            "OS resources",
            id="coroutine result",
        ),
    ],
)
def test_the_advice_fits_the_object_that_cannot_travel(
    fn: Callable[[Any], Any], items: list[Any], says: list[str], never: str
) -> None:
    with pytest.raises(smartpool.SerializationError) as info:
        smartpool.parallel_map(fn, items, backend="process")
    message = str(info.value)
    for words in says:
        assert words in message
    assert never not in message


def test_an_open_socket_is_to_be_opened_where_it_is_used() -> None:
    with socket.socket() as sock:

        def send(x: int) -> int:
            return sock.fileno() + x

        with pytest.raises(smartpool.SerializationError) as info:
            smartpool.parallel_map(send, [1], backend="process")
    message = str(info.value)
    assert "closure variable 'sock' -> socket.socket object" in message
    assert "open them inside the function" in message and "smartpool.Lock" not in message


def test_an_unpicklable_item_raises_at_the_users_call_from_imap() -> None:
    results = smartpool.imap(abs, [1, threading.Lock()], backend="process", chunksize=1)
    with pytest.raises(smartpool.SerializationError, match=r"item 1 \(lock\)") as info:
        list(results)
    frames = [entry.name for entry in info.traceback]
    assert frames[0] == "test_an_unpicklable_item_raises_at_the_users_call_from_imap"
    assert frames[1:] == ["__next__"]  # the iterator's next() the user called: nothing deeper


def test_the_coroutine_advice_is_what_works() -> None:
    """The advice for a coroutine result, followed, runs on processes."""

    def run_it(n: int) -> int:
        return asyncio.run(returns_coroutine(n))

    assert smartpool.parallel_map(run_it, [1, 2], backend="process") == [1, 2]
