"""``backend="interpreter"``: subinterpreters on Python 3.14+, a clear error before that.

The tests that need subinterpreters are defined only on 3.14+ and the one for older Pythons only
there (conditional definition, not skips): each Python runs the tests that mean something on it.
The interpreter backend also joins every backend-parametrised test on 3.14+ (``conftest``).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytest

import smartpool
from smartpool import _options
from smartpool._backends import registry
from smartpool._options import Options
from smartpool._routing import planner
from smartpool._routing.cost import Environment
from smartpool._routing.measurement import Measurement

from .conftest import INTERPRETERS
from .interp_tasks import accelerated, spin, wait_for, where


def _cpu(**changes: Any) -> Measurement:
    """A pure-Python function of ~5 ms a call, holding the GIL, cheap to move."""
    base = Measurement(
        call_seconds=0.005,
        cpu_fraction=1.0,
        releases_gil=False,
        picklable=True,
        transfer_seconds=2e-6,
        samples=4,
    )
    return Measurement(**{**base.__dict__, **changes})


def _env(**changes: Any) -> Environment:
    return Environment(**{"cores": 2, "gil_enabled": True, "nested": False, **changes})


def test_auto_picks_interpreters_only_where_they_beat_processes() -> None:
    """GIL-bound work goes to interpreters only where they are estimated faster than processes:
    interpreters already running and processes still to start. Both to start (an interpreter
    imports everything afresh; a fork-server worker inherits), both running (the same round
    trips, and no shared memory for interpreters), or no interpreters here: processes."""

    def backend(**env: Any) -> str:
        plan = planner.make_plan(
            spin, Options(), hint=None, n_items=64, measurement=_cpu(), env=_env(**env)
        )
        return plan.backend

    assert backend(interpreters=True, warm_interpreters=2) == "interpreter"
    assert backend(interpreters=True) == "process"
    assert backend(interpreters=True, warm_interpreters=2, warm_processes=2) == "process"
    assert backend(interpreters=False, warm_interpreters=2) == "process"
    plan = planner.make_plan(
        spin,
        Options(),
        hint=None,
        n_items=64,
        measurement=_cpu(),
        env=_env(interpreters=True, warm_interpreters=2),
    )
    assert "interpreters: faster than processes" in plan.reasons[-1]
    assert "interpreters x2" in plan.reasons[-2]


def test_auto_leaves_out_interpreters_for_functions_that_do_not_load_there() -> None:
    env = _env(interpreters=True, warm_interpreters=2)
    m = _cpu(runs_in_interpreter=False)
    plan = planner.make_plan(spin, Options(), hint=None, n_items=64, measurement=m, env=env)
    assert plan.backend == "process", plan


def test_big_items_stay_on_processes() -> None:
    """Items that are costly to move (every one copied into an interpreter) stay where large
    buffers go through shared memory."""
    env = _env(interpreters=True, warm_interpreters=2)
    m = _cpu(transfer_seconds=1e-3, shared_transfer_seconds=5e-3)
    plan = planner.make_plan(spin, Options(), hint=None, n_items=64, measurement=m, env=env)
    assert plan.backend == "process", plan


if not INTERPRETERS:

    def test_asking_for_interpreters_before_314_is_a_clear_error() -> None:
        """The name is known, and asking for it says what it needs and what to use instead."""
        assert "interpreter" in _options.BACKEND_NAMES
        assert not registry.available("interpreter")
        for ask in (
            lambda: smartpool.parallel_map(spin, range(4), backend="interpreter"),
            lambda: smartpool.explain(spin, range(4), backend="interpreter"),
        ):
            with pytest.raises(ValueError, match=r"needs Python 3\.14 or later") as info:
                ask()
            assert "backend='process'" in str(info.value)
        assert not Environment.current().interpreters


if INTERPRETERS:
    from concurrent import interpreters  # type: ignore[import-not-found,unused-ignore]

    from smartpool._backends.interpreter import InterpreterBackend
    from smartpool._routing import memory

    def _refusing() -> Any:
        """The module that refuses subinterpreters, imported here only: a module-level import
        would make this test module (and the functions above) refuse them too."""
        import importlib

        return importlib.import_module("tests.no_subinterpreters")

    def test_steps_reported_in_an_interpreter_are_counted_before_their_items() -> None:
        # report_progress() inside a subinterpreter comes back through an interpreters queue;
        # every chunk's steps are in before its item is counted done, as from processes.
        from .helpers import report_steps

        seen: list[smartpool.ProgressEvent] = []
        smartpool.parallel_map(
            report_steps, [(1, 5)] * 4, backend="interpreter", progress=seen.append,
            chunksize=1,
        )  # fmt: skip
        assert (seen[-1].done, seen[-1].steps) == (4, 20)
        assert all(event.steps >= 5 * event.done for event in seen)

    def test_chunks_run_in_subinterpreters_of_this_process() -> None:
        main = interpreters.get_main().id
        out = smartpool.parallel_map(where, range(40), backend="interpreter", max_workers=2)
        assert [v for v, _ in out] == [x * x for x in range(40)]
        assert {i for _, i in out} and main not in {i for _, i in out}
        assert registry.available("interpreter") and Environment.current().interpreters

    def test_the_c_extensions_load_in_subinterpreters() -> None:
        """Both use multi-phase init and support a per-interpreter GIL; with single-phase init
        they would refuse, and a Lock passed to an interpreter would lose its fast path."""
        interp = interpreters.create()
        try:
            interp.exec("import smartpool._sync._fastlock, smartpool._process._copy")
            assert interp.call(accelerated) is True
        finally:
            interp.close()

    def test_a_module_that_refuses_subinterpreters_is_a_clear_error() -> None:
        with pytest.raises(ImportError, match="does not support loading in subinterpreters") as e:
            smartpool.parallel_map(_refusing().spin_here, [10, 20], backend="interpreter")
        assert "use backend='process'" in "".join(getattr(e.value, "__notes__", []))

    def test_numpy_functions_are_found_not_to_load_there() -> None:
        """The real case: NumPy refuses subinterpreters; the check says so."""
        np = pytest.importorskip("numpy")
        assert not InterpreterBackend.runs_function(np.sum)
        assert InterpreterBackend.runs_function(spin)

    def test_auto_falls_back_and_remembers(monkeypatch: pytest.MonkeyPatch) -> None:
        """A function planned on interpreters whose module does not load there runs on
        processes instead, and the finding is kept: the next plan does not check again."""
        fn = _refusing().spin_here
        smartpool.forget()
        checks: list[object] = []
        real = InterpreterBackend.runs_function.__func__  # type: ignore[attr-defined]

        def counted(cls: type, f: Any) -> bool:
            checks.append(f)
            return bool(real(cls, f))

        monkeypatch.setattr(InterpreterBackend, "runs_function", classmethod(counted))
        # Interpreters estimated fastest whatever this machine's pools hold: the check must run.
        monkeypatch.setattr(planner, "interpreter_time", lambda *a: 0.0)
        plan, kept = planner.plan_measured(fn, Options(), 64, _cpu())
        assert checks == [fn]
        assert plan.backend == "process", plan
        assert kept.runs_in_interpreter is False
        assert memory.recall(fn).runs_in_interpreter is False  # type: ignore[union-attr]
        assert "do not load in a subinterpreter" in plan.reasons[-1]
        again, _ = planner.plan_measured(fn, Options(), 64, kept)
        assert checks == [fn] and again.backend == "process"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert smartpool.parallel_map(fn, [10, 20], backend="process") == [fn(10), fn(20)]
        smartpool.forget()

    def test_forking_after_interpreter_work_is_safe() -> None:
        """CPython 3.14 crashes a child forked while subinterpreters exist; the backend closes
        its idle interpreters before any fork, and makes new ones on its next chunk."""
        import os

        assert smartpool.parallel_map(where, range(4), backend="interpreter")[0][0] == 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
        if pid == 0:
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0  # exited normally, not SIGSEGV
        assert [v for v, _ in smartpool.parallel_map(where, range(4), backend="interpreter")] == [
            0,
            1,
            4,
            9,
        ]

    def test_item_timeout_abandons_the_interpreter_and_the_pool_goes_on() -> None:
        import threading

        release = smartpool.Event()
        with pytest.raises(smartpool.TaskTimeoutError, match="interpreter backend"):
            smartpool.parallel_map(
                wait_for, [release, release], backend="interpreter", timeout=0.2, max_workers=2
            )
        release.set()
        assert smartpool.parallel_map(spin, [5, 6], backend="interpreter") == [
            spin(5),
            spin(6),
        ]
        assert threading.active_count() < 50


def test_python_versions_agree_on_what_auto_may_pick() -> None:
    """Environment.current() reports interpreters exactly where the backend can run."""
    assert Environment.current().interpreters is (sys.version_info >= (3, 14))
