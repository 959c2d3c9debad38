"""``progress=``: items counted exactly as they complete, on every backend; the displays; the
steps a function reports (``report_progress``) from threads and processes."""

from __future__ import annotations

import gc
import io
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import smartpool
from smartpool import ProgressEvent
from smartpool._progress import displays, observers_for
from smartpool._progress.tracker import Estimate, Tracker
from smartpool._run.events import RunEvent

from .helpers import double, fail_first_attempt, nested_with_progress, report_steps


@pytest.fixture(autouse=True)
def _fresh_decisions() -> Iterator[None]:
    smartpool.forget()
    yield
    smartpool.forget()


def _watch(fn: Any, items: Any, **options: Any) -> tuple[list[Any], list[ProgressEvent]]:
    seen: list[ProgressEvent] = []
    return smartpool.parallel_map(fn, items, progress=seen.append, **options), seen


def _steady(events: list[ProgressEvent]) -> None:
    """Counts never go back, and only the last event is the finished one."""
    counts = [e.done + e.failed for e in events]
    assert counts == sorted(counts)
    assert events[-1].finished and not any(e.finished for e in events[:-1])


# -- counting ---------------------------------------------------------------------------------


def test_every_item_is_counted_once_on_every_backend(backend: str) -> None:
    results, seen = _watch(double, range(200), backend=backend, chunksize=7)
    assert results == [2 * x for x in range(200)]
    _steady(seen)
    last = seen[-1]
    assert (last.done, last.failed, last.retried, last.total) == (200, 0, 0, 200)
    assert last.backend == backend and last.eta == 0.0
    assert max(e.done for e in seen) == 200  # never above the input


def test_an_automatic_call_counts_the_timed_first_items_once() -> None:
    results, seen = _watch(double, range(5000))
    assert len(results) == 5000
    _steady(seen)
    assert seen[-1].done == 5000 and max(e.done for e in seen) == 5000


def test_an_input_without_a_length_has_no_total_and_no_eta(backend: str) -> None:
    _, seen = _watch(double, (x for x in range(50)), backend=backend)
    assert seen[-1].total is None and seen[-1].done == 50
    assert all(e.eta is None for e in seen)


def test_retries_count_once_and_failures_show(parallel_backend: str, tmp_path: Any) -> None:
    items = [(str(tmp_path), i) for i in range(6)]
    _, seen = _watch(
        fail_first_attempt, items, backend=parallel_backend, retries=1, retry_on=OSError
    )
    assert (seen[-1].done, seen[-1].retried, seen[-1].failed) == (6, 6, 0)
    failed: list[ProgressEvent] = []
    with pytest.raises(ZeroDivisionError):
        smartpool.parallel_map(
            lambda x: 1 // x, [1, 0], backend="thread", chunksize=1, progress=failed.append
        )
    assert failed[-1].finished and failed[-1].failed == 1


def test_items_count_as_they_complete_even_when_results_are_ordered() -> None:
    """A slow first item must not pin the count at zero."""
    release = threading.Event()

    def held_first(x: int) -> int:
        if x == 0:
            assert release.wait(60)
        return x

    def watch(event: ProgressEvent) -> None:
        if event.done >= 3:  # the other chunks in flight (2 workers, 4 chunks at a time)
            release.set()

    got = smartpool.parallel_map(
        held_first, range(20), backend="thread", max_workers=2, chunksize=1, progress=watch
    )
    assert got == list(range(20))
    assert release.is_set()


class _Result:
    """A result a weak reference can watch."""


def test_an_imap_showing_progress_holds_no_result_it_gave() -> None:
    options: dict[str, Any] = {"backend": "thread", "max_workers": 1, "chunksize": 1}
    seen: list[ProgressEvent] = []
    results = smartpool.imap(lambda _: _Result(), range(100), progress=seen.append, **options)
    first = weakref.ref(next(results))
    next(results)
    next(results)  # the one worker thread ended the first chunk, callbacks and all, before it
    gc.collect()
    assert first() is None
    results.close()


def test_nested_calls_in_workers_show_no_progress_of_their_own() -> None:
    inner_seen: list[ProgressEvent] = []

    def outer(x: int) -> int:
        return sum(smartpool.parallel_map(double, range(x), progress=inner_seen.append))

    _, seen = _watch(outer, [3, 4], backend="thread")
    assert seen[-1].done == 2 and inner_seen == []


def test_nested_calls_in_worker_processes_draw_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    results = smartpool.parallel_map(nested_with_progress, [3, 4], backend="process")
    assert results == [6, 12]
    assert "smartpool:" not in capfd.readouterr().err


def test_progress_is_checked_before_any_work() -> None:
    with pytest.raises(ValueError, match="unknown progress display 'bar'"):
        smartpool.parallel_map(abs, [1], progress="bar")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must be"):
        smartpool.parallel_map(abs, [1], progress=3)  # type: ignore[arg-type]


def test_a_failing_display_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken(event: ProgressEvent) -> None:
        calls.append(event)
        raise RuntimeError("display bug")

    assert smartpool.parallel_map(double, range(50), backend="process", progress=broken) == [
        2 * x for x in range(50)
    ]
    assert len(calls) == 1  # dropped after its first failure
    assert "the progress display failed" in caplog.text


# -- the estimate ---------------------------------------------------------------------------


def _event(done: int, elapsed: float, **changes: Any) -> RunEvent:
    fields: dict[str, Any] = {
        "done": done,
        "failed": 0,
        "retried": 0,
        "total": 100,
        "elapsed": elapsed,
        "backend": "serial",
        "workers": 1,
        "replans": 0,
    }
    fields.update(changes)
    return RunEvent(**fields)


def test_the_eta_comes_from_the_plan_then_from_items_measured_since_the_last_replan() -> None:
    eta = Estimate()
    # Nothing completed under the plan yet: its measured cost per item, shared by its workers.
    assert eta(_event(0, 0.0, backend="process", workers=4, item_seconds=0.4)) == pytest.approx(
        10.0
    )
    assert eta(_event(20, 2.0, backend="process", workers=4)) == pytest.approx(8.0)  # 10 a s
    # Re-planned at 2 s: the rate before no longer counts.
    replanned = {"backend": "thread", "workers": 8, "replans": 1, "item_seconds": 0.08}
    assert eta(_event(20, 2.0, **replanned)) == pytest.approx(80 * 0.08 / 8)
    assert eta(_event(60, 3.0, **replanned)) == pytest.approx(40 / 40)
    assert eta(_event(0, 0.0, total=None)) is None


# -- the displays ---------------------------------------------------------------------------


def test_true_picks_tqdm_then_rich_then_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    options = smartpool.current_config().options
    assert isinstance(displays.display_for(True), displays.TqdmBar)
    monkeypatch.setattr(displays, "_installed", lambda kind: kind == "rich")
    assert isinstance(displays.display_for(True), displays.RichBar)
    monkeypatch.setattr(displays, "_installed", lambda kind: False)
    assert isinstance(displays.display_for(True), displays.LogLine)
    with pytest.raises(ImportError, match=r"pip install 'smartpool\[progress\]'"):
        displays.display_for("tqdm")
    assert options.progress is False  # the default


def _open_tqdm_bars() -> int:
    from tqdm import tqdm

    return len(tqdm._instances)  # type: ignore[attr-defined]


def test_the_tqdm_bar_closes_when_the_call_fails_or_is_interrupted(capsys: Any) -> None:
    assert smartpool.parallel_map(double, range(30), backend="thread", progress="tqdm")
    assert "30/30" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        smartpool.parallel_map(lambda x: 1 // x, [1, 0, 2], backend="thread", progress="tqdm")
    assert _open_tqdm_bars() == 0

    def interrupted(x: int) -> int:
        if x == 5:
            raise KeyboardInterrupt  # in the caller's thread: handled as Ctrl-C
        return x

    with pytest.raises(KeyboardInterrupt):
        smartpool.parallel_map(interrupted, range(10), backend="serial", progress="tqdm")
    assert _open_tqdm_bars() == 0


def test_the_rich_bar_stops_its_thread_when_the_call_fails() -> None:
    from rich.live import _RefreshThread  # type: ignore[attr-defined]

    def refreshing() -> bool:
        """Whether a bar's refresh thread still runs (a stopped bar's ends within moments)."""
        for thread in threading.enumerate():
            if isinstance(thread, _RefreshThread):
                thread.join(30)
                if thread.is_alive():
                    return True
        return False

    assert smartpool.parallel_map(double, range(30), backend="process", progress="rich")
    assert not refreshing()
    with pytest.raises(ZeroDivisionError):
        smartpool.parallel_map(lambda x: 1 // x, [1, 0, 2], backend="thread", progress="rich")
    assert not refreshing()


def test_log_lines_come_at_most_once_a_second_and_at_the_end() -> None:
    stream = io.StringIO()
    line = displays.LogLine(stream)
    show = Tracker(line)
    for done in range(1000):  # well within a second
        show(_event(done, 0.001 * done, backend="thread", workers=4))
    assert stream.getvalue() == ""
    line._last -= displays.LOG_INTERVAL_SECONDS  # a second later
    show(_event(1000, 1.0, total=2000, backend="thread", workers=4))
    show(_event(1001, 1.0, total=2000, backend="thread", workers=4))
    show(_event(2000, 2.0, total=2000, backend="thread", workers=4, finished=True))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "smartpool: 1000/2000 items (50%) running in 00:01, thread x4, eta 00:01",
        "smartpool: 2000/2000 items (100%) finished in 00:02, thread x4",
    ]


def test_a_call_ended_before_it_began_opens_no_bar() -> None:
    iterator = smartpool.imap(double, range(10), backend="thread", progress="tqdm")
    iterator.close()
    assert _open_tqdm_bars() == 0


def test_the_environment_turns_progress_on_in_a_fresh_interpreter() -> None:
    env = {**os.environ, "SMARTPOOL_PROGRESS": "log"}
    code = "import smartpool; smartpool.parallel_map(abs, range(10), backend='thread')"
    done = _run_with(env, code)
    assert "smartpool: 10/10 items (100%) finished" in done.stderr
    done = _run_with({**os.environ, "SMARTPOOL_PROGRESS": "bar"}, code)
    assert "RuntimeWarning" in done.stderr and "SMARTPOOL_PROGRESS='bar'" in done.stderr
    assert "items" not in done.stderr


def _run_with(env: dict[str, str], code: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_no_observer_and_no_wrapper_when_progress_is_off() -> None:
    assert observers_for(smartpool.current_config().options) == ()
    run, _ = smartpool._api.start(double, range(3), {"backend": "thread"})
    assert run._call.fn is double and run._call.report is None
    run.close()


# -- steps reported by the function -----------------------------------------------------------


def test_reported_steps_reach_the_caller_from_every_backend(backend: str) -> None:
    items = [(x, 250) for x in range(8)]
    results, seen = _watch(report_steps, items, backend=backend, chunksize=2)
    assert results == list(range(8))
    assert seen[-1].steps == 8 * 250  # exact, though sent in batches
    _steady(seen)


def test_reporting_outside_a_call_or_without_progress_does_nothing() -> None:
    smartpool.report_progress()
    smartpool.report_progress(0)
    assert smartpool.parallel_map(report_steps, [(1, 3)] * 4, backend="process") == [1] * 4
    with pytest.raises(TypeError, match="takes an int"):
        smartpool.report_progress(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n >= 0"):
        smartpool.report_progress(-1)


def test_the_traceback_starts_at_the_function_with_progress_on(backend: str) -> None:
    import traceback

    def fails(x: int) -> int:
        return 1 // x

    with pytest.raises(ZeroDivisionError) as caught:
        smartpool.parallel_map(fails, [1, 0], backend=backend, progress=lambda e: None)
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert not any(frame.filename.endswith("reporting.py") for frame in frames)


def test_the_cost_benchmark_still_finds_every_progress_hook_to_cut() -> None:
    """``benchmarks.progress_cost`` times smartpool against itself with the progress hooks cut
    out; it fails (and so does this) when the hooks it cuts are not the ones in the source."""
    from benchmarks import progress_cost

    assert progress_cost._run("without", 1000, 1)["cpu"] > 0
