"""What crosses into a worker process: lambdas, closures, __main__ functions; and clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import smartpool

from .helpers import return_lock


def module_level(x: int) -> int:
    """Defined in a test module: pytest's import path must reach the workers."""
    return x + 1000


def test_function_from_a_test_module() -> None:
    assert smartpool.parallel_map(module_level, [1, 2], backend="process") == [1001, 1002]


def test_lambda_and_closure_travel() -> None:
    k = 10
    assert smartpool.parallel_map(lambda x: x + k, [1, 2, 3], backend="process") == [11, 12, 13]


def test_nested_function_with_state() -> None:
    def make_scaler(factor: int):  # type: ignore[no-untyped-def]
        offsets = {"base": 5}

        def scale(x: int) -> int:
            return x * factor + offsets["base"]

        return scale

    assert smartpool.parallel_map(make_scaler(3), range(4), backend="process") == [5, 8, 11, 14]


def test_lambda_items_travel() -> None:
    fns = [lambda: 1, lambda: 2]
    assert smartpool.parallel_map(lambda f: f(), fns, backend="process") == [1, 2]


SCRIPT = """
import os
import smartpool

class Point:
    def __init__(self, x):
        self.x = x

def norm(p):
    return Point(p.x * 2), os.getpid()

{body}
"""


@pytest.mark.parametrize("guarded", [True, False])
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_functions_and_classes_from_main_script(tmp_path: Path, guarded: bool, method: str) -> None:
    call = textwrap.dedent(
        """
        smartpool.configure(start_method={method!r})
        out = smartpool.parallel_map(norm, [Point(1), Point(2)], backend="process")
        assert [p.x for p, _ in out] == [2, 4], out
        assert all(pid != os.getpid() for _, pid in out)
        assert smartpool.parallel_map(lambda p: p.x, [Point(7)], backend="process") == [7]
        print("ok")
        """
    ).format(method=method)
    body = ('if __name__ == "__main__":\n' + textwrap.indent(call, "    ")) if guarded else call
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(body=body))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_unpicklable_function_is_named_before_any_work() -> None:
    lock = threading.Lock()
    pulled: list[int] = []

    def uses_lock(x: int) -> int:
        with lock:
            return x

    def items():  # type: ignore[no-untyped-def]
        for i in range(3):
            pulled.append(i)
            yield i

    with pytest.raises(smartpool.SerializationError) as info:
        smartpool.parallel_map(uses_lock, items(), backend="process")
    message = str(info.value)
    assert "uses_lock" in message
    assert "closure variable 'lock'" in message
    assert "_thread.lock" in message
    assert "backend='thread'" in message  # tells the user what to do
    assert pulled == []
    assert isinstance(info.value, TypeError)


def test_unpicklable_item_is_named_by_index() -> None:
    items: list[object] = [1, 2, 3, threading.Lock(), 5]
    with pytest.raises(smartpool.SerializationError, match=r"item 3 \(lock\)"):
        smartpool.parallel_map(str, items, backend="process", chunksize=2)


def test_unpicklable_result_is_named_by_index() -> None:
    with pytest.raises(smartpool.SerializationError, match=r"result of item 3"):
        smartpool.parallel_map(return_lock, range(6), backend="process", chunksize=6)


def test_unpicklable_values_are_fine_on_threads() -> None:
    lock = threading.Lock()
    assert smartpool.parallel_map(lambda x: (x, lock), [1], backend="thread") == [(1, lock)]
