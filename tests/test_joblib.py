"""The joblib backend: ``parallel_config(backend="smartpool")`` for joblib and scikit-learn."""

from __future__ import annotations

import doctest
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.tree import DecisionTreeClassifier

import smartpool.joblib
from smartpool.joblib import SmartpoolBackend

from .joblib_tasks import blas_threads, inner_where, parse, where
from .subprocesses import ENV, run_python
from .test_faults_crash import alive

smartpool.joblib.register()


def test_the_modules_examples_pass() -> None:
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    tests = [t for t in finder.find(smartpool.joblib) if t.examples]
    assert len(tests) >= 3
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_register_is_idempotent_and_import_smartpool_does_not_import_joblib() -> None:
    smartpool.joblib.register()
    smartpool.joblib.register()
    assert joblib.parallel.BACKENDS["smartpool"] is SmartpoolBackend
    check = "import sys, smartpool; assert 'joblib' not in sys.modules, 'joblib was imported'"
    assert run_python("-c", check, timeout=60).returncode == 0


def test_results_come_back_in_order_on_every_hint() -> None:
    for prefer in (None, "threads", "processes"):
        with joblib.parallel_config(backend="smartpool", n_jobs=2, prefer=prefer):
            squares = joblib.Parallel()(joblib.delayed(pow)(i, 2) for i in range(300))
        assert squares == [i * i for i in range(300)]


def test_prefer_threads_is_a_hint_for_threads_and_processes_for_processes() -> None:
    with joblib.parallel_config(backend="smartpool", n_jobs=2):
        threads = joblib.Parallel(prefer="threads")(joblib.delayed(where)() for _ in range(20))
        procs = joblib.Parallel(prefer="processes")(joblib.delayed(where)() for _ in range(20))
    assert {pid for pid, _ in threads} == {os.getpid()}
    assert all(name.startswith("smartpool-thread") for _, name in threads)
    assert os.getpid() not in {pid for pid, _ in procs}


def test_require_sharedmem_keeps_the_work_in_this_process() -> None:
    seen: list[int] = []
    with joblib.parallel_config(backend="smartpool", n_jobs=2, require="sharedmem"):
        joblib.Parallel()(joblib.delayed(seen.append)(i) for i in range(50))
    assert sorted(seen) == list(range(50))


def test_n_jobs_means_what_it_means_to_joblib() -> None:
    backend = SmartpoolBackend()
    cpus = joblib.cpu_count()
    assert backend.effective_n_jobs(-1) == cpus
    assert backend.effective_n_jobs(-2) == max(cpus - 1, 1)
    assert backend.effective_n_jobs(-1000) == 1
    assert backend.effective_n_jobs(3) == 3
    with pytest.raises(ValueError, match="n_jobs == 0"):
        backend.effective_n_jobs(0)


def test_worker_processes_limit_their_native_thread_pools_as_loky_does() -> None:
    with joblib.parallel_config(backend="smartpool", n_jobs=2, prefer="processes"):
        limits = joblib.Parallel()(joblib.delayed(blas_threads)() for _ in range(4))
    assert set(limits) == {max(1, (os.cpu_count() or 1) // 2)}


def test_a_nested_parallel_inside_a_worker_runs_inline() -> None:
    for prefer in ("threads", "processes"):
        with joblib.parallel_config(backend="smartpool", n_jobs=2, prefer=prefer):
            places = joblib.Parallel()(joblib.delayed(inner_where)(i) for i in range(4))
        assert all(len(place) == 1 for place in places)  # inner tasks ran where the outer one did


def test_an_error_keeps_its_type_and_the_frames_where_it_was_raised() -> None:
    with (
        joblib.parallel_config(backend="smartpool", n_jobs=2, prefer="processes"),
        pytest.raises(ValueError, match="invalid literal") as caught,
    ):
        joblib.Parallel()(joblib.delayed(parse)(x) for x in ["1", "x", "3"])
    cause = caught.value.__cause__
    assert isinstance(cause, smartpool.joblib.WorkerTraceback)
    assert "in parse" in str(cause)  # the frame where it was raised, in the worker


def test_return_as_generator_streams() -> None:
    made = 0

    def tasks() -> Iterator[object]:
        nonlocal made
        for i in range(100_000):
            made += 1
            yield joblib.delayed(abs)(-i)

    with joblib.parallel_config(backend="smartpool", n_jobs=2, prefer="threads"):
        results = joblib.Parallel(return_as="generator")(tasks())
        assert next(results) == 0
        assert made < 100_000  # the input is read as results are taken
        assert [next(results) for _ in range(3)] == [1, 2, 3]
        with warnings.catch_warnings():  # joblib's on leaving early, when tasks were running
            warnings.simplefilter("ignore", UserWarning)
            results.close()


def test_grid_search_gives_exactly_the_scores_and_parameters_it_gives_under_loky() -> None:
    x, y = load_iris(return_X_y=True)
    grid = {"max_depth": [1, 2, 3, None], "min_samples_split": [2, 4]}

    def search(backend: str) -> GridSearchCV:
        with joblib.parallel_config(backend=backend, n_jobs=2):
            return GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3).fit(x, y)

    ours, loky = search("smartpool"), search("loky")
    assert ours.best_params_ == loky.best_params_
    assert ours.best_score_ == loky.best_score_
    for key in ("mean_test_score", "split0_test_score", "split2_test_score", "rank_test_score"):
        np.testing.assert_array_equal(ours.cv_results_[key], loky.cv_results_[key])


def test_cross_val_score_works() -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=200)
    with joblib.parallel_config(backend="smartpool", n_jobs=2):
        ours = cross_val_score(model, x, y, cv=3)
    np.testing.assert_array_equal(ours, cross_val_score(model, x, y, cv=3))


def test_random_forest_with_n_jobs_minus_one_never_uses_processes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, y = load_iris(return_X_y=True)
    with (
        caplog.at_level(logging.DEBUG, logger="smartpool"),
        joblib.parallel_config(backend="smartpool"),
    ):
        forest = RandomForestClassifier(n_estimators=20, n_jobs=-1, random_state=0).fit(x, y)
        forest.predict(x)
    plans = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plan for")]
    assert plans  # the forest's Parallel calls went through smartpool
    assert not [p for p in plans if "backend='process'" in p], plans


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    signal.signal(signal.SIGINT, signal.default_int_handler)
    import joblib, smartpool.joblib

    smartpool.joblib.register()
    directory = Path(sys.argv[1])

    def work(x):
        Path(directory, f"pid-{os.getpid()}-{x}").touch()
        time.sleep(1000)

    try:
        with joblib.parallel_config(backend="smartpool", n_jobs=2, prefer="processes"):
            joblib.Parallel()(joblib.delayed(work)(i) for i in range(10))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.exit(42)
    """
)


@pytest.mark.timeout(60)
def test_ctrl_c_leaves_no_worker_behind(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("pid-*")):
            assert time.monotonic() < deadline, "no worker started"
            time.sleep(0.005)  # polling for the file, not synchronising on time
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 42, stderr
    for mark in tmp_path.glob("pid-*"):
        assert not alive(int(mark.name.split("-")[1])), f"worker {mark.name} survived"
