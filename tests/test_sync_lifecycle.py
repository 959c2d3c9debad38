"""Nothing leaks, and module-level objects re-attach in workers through export/install_state."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import smartpool._sync as sync
from smartpool._sync import Event, Lock, Value

SRC = str(Path(sync.__file__).resolve().parents[2])
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}

CHURN = """
import gc, multiprocessing as mp, pickle, sys
from smartpool._sync import *

def use(blob):
    lock, sem, value, event = pickle.loads(blob)
    with lock, sem:
        value.add(1)
    event.set()

if __name__ == "__main__":
    names = []
    KEEP = Lock()  # alive until interpreter exit
    names.append(KEEP._state())
    for i in range(200):
        objs = [Lock(), RLock(), Semaphore(2), BoundedSemaphore(1), Event(), Value(i)]
        names += [o._h.name for o in objs]
        copies = pickle.loads(pickle.dumps(objs))
        with copies[0], copies[1], copies[2]:
            copies[5].add(1)
        del objs, copies
    gc.collect()
    lock, sem, value, event = Lock(), Semaphore(1), Value(0), Event()
    names += [o._h.name for o in (lock, sem, value, event)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=use, args=(pickle.dumps((lock, sem, value, event)),))
             for _ in range(2)]
    for p in procs: p.start()
    for p in procs: p.join()
    assert value.get() == 2 and event.is_set()
    print("\\n".join(names))
"""


@pytest.mark.timeout(60)
def test_churn_leaves_no_shared_memory_and_no_warnings(tmp_path: Path) -> None:
    script = tmp_path / "churn.py"
    script.write_text(CHURN)
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-X", "dev", str(script)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "resource_tracker" not in proc.stderr
    assert "leaked" not in proc.stderr
    assert "ResourceWarning" not in proc.stderr
    names = proc.stdout.split()
    assert len(names) > 1000
    left = [n for n in names if os.path.exists("/dev/shm" + n)]
    left += [n for n in names if os.path.exists(f"/dev/shm/sem.{n[1:]}.s0")]
    assert left == []


def test_object_released_by_everyone_cannot_be_attached() -> None:
    blob = pickle.dumps(Lock())  # the only reference dies right away
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        pickle.loads(blob)


HELPER = """
from smartpool._sync import Lock, Value
LOCK = Lock()
if __name__ == "__main__":
    OTHER = Lock()  # main-only creations must not shift the keys of later ones
COUNT = Value(0)
"""

CHILD = """
import importlib, pickle, sys
import smartpool._sync as sync
state, tried, module, order = pickle.loads(sys.stdin.buffer.read())
if order == "install-first":
    sync.install_state(state)
    helper = importlib.import_module(module)
else:  # e.g. preloaded by a fork server before the worker learned the parent's state
    helper = importlib.import_module(module)
    sync.install_state(state)
first = helper.LOCK.acquire(timeout=0.05)
helper.COUNT.add(1)
tried.set()
second = helper.LOCK.acquire(timeout=30)
helper.LOCK.release()
print(first, second)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", ["install-first", "import-first"])
def test_module_globals_reattach_to_parent_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    module = f"sync_globals_{order.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    helper = __import__(module)
    state = sync.export_state()
    assert {key[0] for key in state} >= {module}
    tried = Event()
    helper.LOCK.acquire()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**ENV, "PYTHONPATH": str(tmp_path) + os.pathsep + ENV["PYTHONPATH"]},
    )
    assert child.stdin is not None
    child.stdin.write(pickle.dumps((state, tried, module, order)))
    child.stdin.close()
    assert tried.wait(30)
    assert helper.COUNT.get() == 1  # the child's COUNT is the parent's
    helper.LOCK.release()
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read(), child.stderr.read()
    child.wait(30)
    assert child.returncode == 0, err.decode()
    assert out.decode().split() == ["False", "True"]
    sys.modules.pop(module)


def test_export_state_is_plain_picklable_and_install_rejects_garbage() -> None:
    state = sync.export_state()
    assert pickle.loads(pickle.dumps(state)).keys() == state.keys()
    with pytest.raises(TypeError):
        sync.install_state(["not", "a", "state"])
    sync.install_state({})


def test_value_and_lock_reprs() -> None:
    assert "unlocked" in repr(Lock())
    assert "42" in repr(Value(42))


def test_names_already_taken_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block or semaphore someone else made under the name a new object would get is neither
    used nor removed: the object takes another random name."""
    from types import SimpleNamespace

    from smartpool._sync import _shm

    taken_block, taken_sem = "0123456789abcdef", "fedcba9876543210"
    squatters = [
        Path(f"/dev/shm/smartpool-{taken_block}"),
        Path(f"/dev/shm/sem.smartpool-{taken_sem}.s0"),
    ]
    for squatter in squatters:
        squatter.write_bytes(b"not smartpool's")
    tokens = iter([taken_block, taken_sem])
    real = _shm.secrets.token_hex
    monkeypatch.setattr(
        _shm, "secrets", SimpleNamespace(token_hex=lambda n: next(tokens, None) or real(n))
    )
    try:
        lock = Lock()
        with lock:
            pass
        assert lock._h.name not in (f"/smartpool-{taken_block}", f"/smartpool-{taken_sem}")
        assert not Path(f"/dev/shm/smartpool-{taken_sem}").exists()  # made, then given up
        assert all(squatter.read_bytes() == b"not smartpool's" for squatter in squatters)
    finally:
        for squatter in squatters:
            squatter.unlink(missing_ok=True)
