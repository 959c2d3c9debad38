"""Per-worker setup (``initializer=``), per-worker state, and recycling worker processes."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

import smartpool
from tests.conftest import BACKENDS, PARALLEL
from tests.lifecycle_tasks import SetupFailed, fail_setup, pid_of, report, set_up


def token() -> str:
    """A token for one call (see ``lifecycle_tasks.INITS``)."""
    return uuid.uuid4().hex


# Per-worker setup runs on every backend: serial, threads, processes, and on 3.14 in each
# subinterpreter of the interpreter backend.
@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=PARALLEL)
def parallel_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_initializer_runs_once_per_worker_before_its_first_item(backend: str) -> None:
    first = token()
    results = smartpool.parallel_map(
        report,
        range(40),
        backend=backend,
        max_workers=2,
        chunksize=1,
        initializer=set_up,
        initargs=(first,),
    )
    assert {t for _, _, t, _, _ in results} == {first}
    assert {inits for _, _, _, inits, _ in results} == {1}  # never run twice in one worker
    workers = {(pid, tid) for pid, tid, _, _, _ in results}
    assert 1 <= len(workers) <= 2


def test_each_worker_has_its_own_state(backend: str) -> None:
    results = smartpool.parallel_map(
        report, range(40), backend=backend, max_workers=2, chunksize=1, initializer=set_up,
        initargs=("x",),
    )  # fmt: skip
    states_per_worker: dict[tuple[int, int], set[int]] = {}
    for pid, tid, _, _, state in results:
        states_per_worker.setdefault((pid, tid), set()).add(state)
    assert all(len(states) == 1 for states in states_per_worker.values())
    if backend == "thread" and len(states_per_worker) == 2:  # two threads: two dicts
        assert len({s for states in states_per_worker.values() for s in states}) == 2


def test_workers_set_up_by_one_initializer_are_not_reused_by_another_call(backend: str) -> None:
    a, b = token(), token()
    smartpool.parallel_map(
        report, range(8), backend=backend, max_workers=2, initializer=set_up, initargs=(a,)
    )
    second = smartpool.parallel_map(
        report, range(8), backend=backend, max_workers=2, initializer=set_up, initargs=(b,)
    )
    assert {t for _, _, t, _, _ in second} == {b}
    assert {inits for _, _, _, inits, _ in second} == {1}  # set up once per worker
    plain = smartpool.parallel_map(report, range(8), backend=backend, max_workers=2)
    assert {t for _, _, t, _, _ in plain} == {None}  # no call sees another's workers


def test_the_caller_keeps_its_own_state_after_a_serial_call_with_an_initializer() -> None:
    smartpool.worker_state().pop("token", None)
    smartpool.parallel_map(report, range(3), backend="serial", initializer=set_up, initargs=("s",))
    assert "token" not in smartpool.worker_state()


def test_a_failing_initializer_is_a_typed_error_naming_it_and_the_next_call_works(
    backend: str,
) -> None:
    with pytest.raises(smartpool.InitializerError) as caught:
        smartpool.parallel_map(pid_of, range(20), backend=backend, initializer=fail_setup)
    assert caught.value.initializer == "fail_setup"
    assert "fail_setup" in str(caught.value)
    assert isinstance(caught.value.__cause__, SetupFailed)
    assert str(caught.value.__cause__) == "cannot connect"
    assert len(smartpool.parallel_map(pid_of, range(20), backend=backend)) == 20


def test_a_failing_initializer_fails_imap_and_submit_too(parallel_backend: str) -> None:
    with pytest.raises(smartpool.InitializerError):
        list(smartpool.imap(pid_of, range(5), backend=parallel_backend, initializer=fail_setup))
    task = smartpool.auto(backend=parallel_backend, initializer=fail_setup)(pid_of)
    with pytest.raises(smartpool.InitializerError):
        task.submit(0).result(timeout=60)


def test_a_decorator_gives_the_initializer_to_map_and_submit(parallel_backend: str) -> None:
    task = smartpool.auto(backend=parallel_backend, initializer=set_up, initargs=("deco",))(report)
    assert {t for _, _, t, _, _ in task.map(range(4))} == {"deco"}
    assert task.submit(0).result(timeout=60)[2] == "deco"


def test_worker_state_outside_any_call_is_the_callers_own_dict() -> None:
    state = smartpool.worker_state()
    state["mine"] = 1
    assert smartpool.worker_state() is state
    del state["mine"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"initializer": 3}, TypeError),
        ({"initializer": set_up, "initargs": ["x"]}, TypeError),
        ({"initargs": ("x",)}, ValueError),
        ({"max_tasks_per_child": 0}, ValueError),
        ({"max_tasks_per_child": 1.5}, TypeError),
    ],
)
def test_bad_lifecycle_options_fail_before_any_work(
    options: dict[str, object], error: type
) -> None:
    with pytest.raises(error):
        smartpool.parallel_map(pid_of, [1], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend_name", [b for b in PARALLEL if b != "thread"])
def test_an_unpicklable_initializer_fails_at_the_call(backend_name: str) -> None:
    """Workers in other processes or interpreters cannot be sent it: a clear error first."""
    import threading

    lock = threading.Lock()

    def hold() -> None:
        lock.acquire()

    with pytest.raises(smartpool.SerializationError, match=f"the {backend_name} backend"):
        smartpool.parallel_map(pid_of, [1, 2], backend=backend_name, initializer=hold)


def test_a_worker_process_is_replaced_after_max_tasks_per_child_items() -> None:
    pids = smartpool.parallel_map(
        pid_of, range(12), backend="process", max_workers=2, chunksize=1, max_tasks_per_child=3
    )
    runs = Counter(pids)
    assert max(runs.values()) <= 3
    assert len(runs) >= 4


def test_max_tasks_per_child_bounds_adaptive_chunks_too() -> None:
    pids = smartpool.parallel_map(
        pid_of, range(50), backend="process", max_workers=2, max_tasks_per_child=5
    )
    assert max(Counter(pids).values()) <= 5


def test_max_tasks_per_child_has_no_effect_on_threads_and_interpreters() -> None:
    for backend in [b for b in PARALLEL if b != "process"]:
        assert smartpool.parallel_map(abs, [-1, -2], backend=backend, max_tasks_per_child=1) == [
            1,
            2,
        ]


def test_calls_with_the_same_max_tasks_per_child_share_a_warm_pool() -> None:
    from smartpool._backends import registry

    def process_pools() -> int:
        return sum(1 for key in registry._pools if key[0] == "process")

    smartpool.parallel_map(
        pid_of, range(4), backend="process", max_workers=2, max_tasks_per_child=50
    )
    pools = process_pools()
    for _ in range(3):
        smartpool.parallel_map(
            pid_of, range(4), backend="process", max_workers=2, max_tasks_per_child=50
        )
    assert process_pools() == pools
    # On threads the option has no effect: the plain warm pool serves the call.
    smartpool.parallel_map(abs, [1], backend="thread", max_workers=3)
    threads = sum(1 for key in registry._pools if key[0] == "thread")
    smartpool.parallel_map(abs, [1], backend="thread", max_workers=3, max_tasks_per_child=5)
    assert sum(1 for key in registry._pools if key[0] == "thread") == threads
