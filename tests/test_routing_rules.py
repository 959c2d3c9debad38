"""The planner's decisions, from injected measurements: deterministic, no timing involved."""

from __future__ import annotations

from dataclasses import replace

import pytest

from smartpool._routing.cost import Environment
from smartpool._routing.measurement import Measurement
from smartpool._routing.planner import Options, Plan, make_plan, replan, typical_plans
from smartpool._run.steering import Replanner, crowding
from smartpool._work.task import ChunkResult

TWO_CORES = Environment(cores=2, gil_enabled=True, nested=False)
AUTO = Options()


def measured(
    call_seconds: float,
    cpu_fraction: float,
    *,
    releases_gil: bool | None = None,
    gil_held: float | None = None,
    picklable: bool | None = True,
    transfer_seconds: float = 1e-6,
) -> Measurement:
    if gil_held is None and releases_gil is not None:
        gil_held = 0.05 if releases_gil else 0.95
    return Measurement(
        call_seconds=call_seconds,
        cpu_fraction=cpu_fraction,
        releases_gil=releases_gil,
        picklable=picklable,
        transfer_seconds=transfer_seconds,
        samples=5,
        gil_held=gil_held,
    )


def plan_for(m: Measurement, n: int | None = 1000, env: Environment = TWO_CORES) -> Plan:
    return make_plan(abs, AUTO, hint=None, n_items=n, measurement=m, env=env)


def test_tiny_calls_run_serially() -> None:
    plan = plan_for(measured(50e-9, 1.0), n=200_000)
    assert plan.backend == "serial"
    assert any("dispatch would cost" in r for r in plan.reasons)


def test_little_total_work_runs_serially() -> None:
    assert plan_for(measured(0.0002, 1.0, releases_gil=False), n=5).backend == "serial"


def test_waiting_work_gets_many_threads_sized_from_the_wait_fraction() -> None:
    plan = plan_for(measured(0.02, 0.01), n=400)
    assert plan.backend == "thread"
    assert plan.max_workers > 2 * TWO_CORES.cores  # not the CPU count
    assert plan.max_workers <= 128  # bounded
    half_waiting = plan_for(measured(0.02, 0.25), n=400)
    assert half_waiting.max_workers < plan.max_workers  # less waiting, fewer threads


def test_thread_count_never_exceeds_the_items() -> None:
    assert plan_for(measured(0.05, 0.0), n=6).max_workers == 6


def test_gil_releasing_cpu_work_runs_on_threads() -> None:
    plan = plan_for(measured(0.01, 1.0, releases_gil=True), n=200)
    assert plan.backend == "thread"
    assert plan.max_workers == 2


def test_pure_python_cpu_work_runs_on_processes() -> None:
    plan = plan_for(measured(0.015, 1.0, releases_gil=False), n=64)
    assert plan.backend == "process"
    assert plan.max_workers == 2


def test_work_that_mostly_holds_the_gil_goes_to_processes() -> None:
    # Releases the GIL now and then, but holds it for most of each call.
    m = measured(0.01, 1.0, releases_gil=False, gil_held=0.35)
    plan = plan_for(replace(m, doubt="in between"), n=200)
    assert plan.backend == "process"


def test_a_plan_that_did_not_measure_the_gil_says_what_its_thread_estimate_assumes() -> None:
    computing = plan_for(measured(0.001, 1.0), n=400)  # releases_gil=None: not sampled
    assert computing.reasons[0].endswith(
        "GIL release not measured: threads are estimated as if it holds the GIL"
    )
    waiting = plan_for(measured(0.002, 0.02), n=400)  # the GIL hardly matters to waits
    assert waiting.reasons[0].endswith("GIL release not measured")


def test_explain_without_items_tells_what_common_kinds_of_call_would_get() -> None:
    said = typical_plans(AUTO, 1000, env=TWO_CORES)
    assert said == (
        "for 1000 items of common kinds it would decide: calls of a microsecond -> serial; "
        "1 ms of Python code a call -> process x2; "
        "1 ms a call with the GIL released (hashlib, NumPy) -> thread x2; "
        "10 ms of waiting (I/O) a call -> thread x100"
    )
    assert "process x4" in typical_plans(Options(max_workers=4), None, env=TWO_CORES)


def test_free_threaded_interpreter_runs_cpu_work_on_threads() -> None:
    env = Environment(cores=2, gil_enabled=False, nested=False)
    plan = plan_for(measured(0.015, 1.0, releases_gil=False), n=64, env=env)
    assert plan.backend == "thread"
    assert any("free-threaded" in r for r in plan.reasons)


def test_unpicklable_cpu_work_runs_on_threads_with_a_warning() -> None:
    plan = plan_for(measured(0.015, 1.0, releases_gil=False, picklable=False), n=64)
    assert plan.backend == "thread"
    assert any(r.startswith("WARNING:") and "cannot be pickled" in r for r in plan.reasons)


def test_one_core_runs_cpu_work_serially_but_still_overlaps_waits() -> None:
    one = Environment(cores=1, gil_enabled=True, nested=False)
    assert plan_for(measured(0.015, 1.0, releases_gil=False), n=64, env=one).backend == "serial"
    assert plan_for(measured(0.02, 0.01), n=64, env=one).backend == "thread"


def test_nested_calls_run_in_process() -> None:
    nested = Environment(cores=2, gil_enabled=True, nested=True)
    assert plan_for(measured(0.015, 1.0, releases_gil=False), env=nested).backend == "serial"


def test_expensive_transfer_keeps_work_off_processes() -> None:
    # 8 MB arrays: pickling costs more than the call.
    heavy = measured(0.0006, 1.0, releases_gil=False, transfer_seconds=0.004)
    assert plan_for(heavy, n=64).backend != "process"


def test_a_buffer_shared_by_every_item_is_paid_for_once() -> None:
    """One 32 MB dataset handed to 64 pure-Python items of 5 ms: moving it once per call leaves
    processes the fastest; moving it with every item would not."""
    per_call = replace(measured(0.005, 1.0, releases_gil=False), shared_transfer_seconds=0.01)
    assert plan_for(per_call, n=64).backend == "process"
    per_item = measured(0.005, 1.0, releases_gil=False, transfer_seconds=0.01)
    assert plan_for(per_item, n=64).backend != "process"


def test_mixed_work_gets_more_processes_than_cores() -> None:
    plan = plan_for(measured(0.01, 0.5, releases_gil=False), n=128)
    assert plan.backend == "process"
    assert plan.max_workers == 4


def test_unknown_length_is_planned_for_many_items() -> None:
    plan = plan_for(measured(0.015, 1.0, releases_gil=False), n=None)
    assert plan.backend == "process"
    assert any("(assumed)" in r for r in plan.reasons)


def test_warm_processes_make_small_jobs_worth_sending() -> None:
    m = measured(0.004, 1.0, releases_gil=False)
    cold = plan_for(m, n=12)
    warm = plan_for(m, n=12, env=Environment(2, True, False, warm_processes=2))
    assert (cold.backend, warm.backend) == ("serial", "process")


def test_user_max_workers_is_kept() -> None:
    options = Options(max_workers=7)
    plan = make_plan(
        abs, options, hint=None, n_items=400, measurement=measured(0.02, 0.01), env=TWO_CORES
    )
    assert (plan.backend, plan.max_workers) == ("thread", 7)


def test_explicit_backend_wins_over_measurement() -> None:
    options = Options(backend="process")
    plan = make_plan(abs, options, hint=None, n_items=10, measurement=measured(1e-8, 1.0))
    assert plan.backend == "process"


def test_chunks_are_sized_from_the_measured_cost() -> None:
    plan = plan_for(measured(0.015, 1.0, releases_gil=False), n=64)
    assert plan.chunksize is None and plan.item_seconds == pytest.approx(0.015)


def test_replan_moves_slow_waiting_items_from_serial_to_threads() -> None:
    serial = plan_for(measured(1e-7, 1.0), n=100_000)
    assert serial.backend == "serial"
    observed = measured(0.02, 0.01, picklable=None)
    new = replan(serial, observed, measured(1e-7, 1.0), AUTO, n_left=500, done=100, env=TWO_CORES)
    assert new is not None and new.backend == "thread"
    assert "re-planned after 100 items" in new.reasons[0]


def test_replan_moves_cheap_items_from_processes_to_serial() -> None:
    process = plan_for(measured(0.015, 1.0, releases_gil=False), n=10_000)
    observed = measured(1e-7, 1.0)
    probed = measured(0.015, 1.0, releases_gil=False)
    new = replan(process, observed, probed, AUTO, n_left=9000, done=1000, env=TWO_CORES)
    assert new is not None and new.backend == "serial"


def test_replan_keeps_a_plan_whose_items_cost_what_was_assumed() -> None:
    process = plan_for(measured(0.015, 1.0, releases_gil=False), n=10_000)
    observed = measured(0.03, 1.0)
    probed = measured(0.015, 1.0, releases_gil=False)
    assert replan(process, observed, probed, AUTO, n_left=900, done=100, env=TWO_CORES) is None


def test_replan_never_touches_explicit_backends_or_threads() -> None:
    fixed = make_plan(abs, Options(backend="serial"), hint=None, n_items=10)
    threads = plan_for(measured(0.02, 0.01), n=400)
    slow = measured(5.0, 0.0)
    assert replan(fixed, slow, slow, Options(backend="serial"), n_left=5, done=5) is None
    assert replan(threads, slow, slow, AUTO, n_left=5, done=5) is None


def test_a_busy_machine_counts_fewer_cores_for_every_backend() -> None:
    """Other programs wanting the cores (measured by the probe as ``crowding``) leave fewer
    cores' worth for serial, threads and processes alike; the kind of work is unchanged."""
    from smartpool._routing.cost import effective_cores, process_time, serial_time

    quiet = measured(0.01, 1.0, releases_gil=False)
    busy = replace(quiet, crowding=2.0)  # two other threads want the two cores
    assert effective_cores(quiet, TWO_CORES, 2) == 2.0
    assert effective_cores(quiet, TWO_CORES, 4) == 2.0  # more workers than cores: no gain
    assert effective_cores(busy, TWO_CORES, 1) == pytest.approx(2 / 3)
    assert effective_cores(busy, TWO_CORES, 2) == pytest.approx(1.0)
    assert serial_time(busy, TWO_CORES, 100) == pytest.approx(1.5)
    assert process_time(busy, TWO_CORES, 100, 2) > process_time(quiet, TWO_CORES, 100, 2)
    plan = plan_for(busy, n=100)
    assert plan.backend == "process"  # still 2x over serial, with 4 workers
    said = "also wanting the 2 cores: ~2 threads of other programs"
    assert any(said in reason for reason in plan.reasons), plan.reasons
    # GIL-free work stays on threads: fewer cores, not a different kind of work
    assert plan_for(replace(busy, releases_gil=True, gil_held=0.02), n=100).backend == "thread"


def test_beside_busy_programs_cpu_work_gets_more_workers_than_cores() -> None:
    """The cores are shared thread by thread: beside one busy program, 3 workers on 2 cores
    get 1.5 cores' worth and 4 get 1.6, where 2 get 4/3. CPU-bound plans add workers while the
    estimate gains, up to twice the cores; a quiet machine keeps one a core, GIL-bound threads
    gain nothing from more, and I/O-bound plans are unchanged."""
    from smartpool._routing.cost import effective_cores

    quiet = measured(0.01, 1.0, releases_gil=False)
    one_busy = replace(quiet, crowding=1.0)
    assert effective_cores(one_busy, TWO_CORES, 3) == pytest.approx(1.5)
    assert (plan_for(quiet, n=100).backend, plan_for(quiet, n=100).max_workers) == ("process", 2)
    assert (plan_for(one_busy, n=100).backend, plan_for(one_busy, n=100).max_workers) == (
        "process",
        4,
    )
    assert plan_for(replace(quiet, crowding=9.0), n=100).max_workers == 4  # twice the cores
    gil_free = replace(one_busy, releases_gil=True, gil_held=0.0)
    assert (plan_for(gil_free, n=100).backend, plan_for(gil_free, n=100).max_workers) == (
        "thread",
        4,
    )
    from smartpool._routing.cost import thread_workers

    assert thread_workers(one_busy, TWO_CORES, 100, parallel_cpu=False) == 2
    waiting = replace(measured(0.02, 0.01), crowding=1.0)
    assert plan_for(waiting, n=400).max_workers == plan_for(measured(0.02, 0.01), n=400).max_workers


def test_few_long_items_get_a_worker_each_rather_than_a_last_round_on_one_core() -> None:
    """3 items of 100 ms on 2 cores: 2 workers take 200 ms (the third item runs alone after the
    first two), 3 take 150 ms sharing the cores. Up to twice the cores, never more than the
    items; many items, or short ones, keep one worker a core."""
    long_items = measured(0.1, 1.0, releases_gil=False)
    assert plan_for(long_items, n=3).max_workers == 3
    assert plan_for(long_items, n=2).max_workers == 2
    assert plan_for(long_items, n=5).max_workers == 3  # 300 ms on 2, 250 on 3 (as on 4)
    assert plan_for(long_items, n=1000).max_workers == 2
    assert plan_for(measured(0.001, 1.0, releases_gil=False), n=3000).max_workers == 2


def test_saturation_is_read_only_from_enough_time_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's caller queued for a core half of 10 ms of items on 2 cores: 3 other
    threads wanted them. A few microseconds preempted once, or a little queueing, say nothing;
    one long preemption is not a hundred programs."""
    from smartpool._routing import gil_probe as _gil_probe
    from smartpool._routing import load

    monkeypatch.setattr(_gil_probe, "cores", lambda: 2)
    assert load.from_queued(0.005, 0.01) == pytest.approx(3.0)
    assert load.from_queued(0.0009, 0.001) == 0.0  # too little timed
    assert load.from_queued(0.0002, 0.01) == 0.0  # a wake-up here and there
    assert load.from_queued(0.0099, 0.01) == pytest.approx(9.0)  # capped


# -- re-planning from what a run's chunks report -------------------------------------------------


def _chunk(items: int, wall: float, cpu: float, queued: float) -> ChunkResult:
    """A chunk of ``items`` that took ``wall`` seconds each, ``cpu`` of them computing and
    ``queued`` of them queued for a core, as a worker reports it."""
    return ChunkResult(0, [0] * items, None, items * wall, "w", items * cpu, 0, items * queued)


def _process_plan_for_python_work() -> tuple[Plan, Measurement]:
    probed = measured(0.001, 1.0, releases_gil=False)  # 1 ms of pure Python a call
    plan = plan_for(probed, n=10_000)
    assert plan.backend == "process"
    return plan, probed


def test_time_queued_for_a_core_is_not_read_as_waiting() -> None:
    """On a saturated machine, a worker's 11 ms of pure Python took 142 ms, 130 of them queued
    for a core: "142 ms a call, 8% CPU" once re-planned it to 24 threads (I/O-like), where
    GIL-bound work gains nothing. Queued time is neither the items' cost nor waiting."""
    plan, probed = _process_plan_for_python_work()
    replanner = Replanner(probed, AUTO, 10_000, env=TWO_CORES)
    assert replanner.observe(plan, _chunk(20, 0.142, 0.0114, 0.1306), 20, 100) is None


def test_waiting_that_is_not_queued_still_moves_work_to_threads() -> None:
    """The same chunk with no time queued waited for real (I/O): threads take it."""
    plan, probed = _process_plan_for_python_work()
    replanner = Replanner(probed, AUTO, 10_000, env=TWO_CORES)
    new = replanner.observe(plan, _chunk(20, 0.142, 0.0114, 0.0), 20, 100)
    assert new is not None and new.backend == "thread"


def test_a_run_on_a_saturated_machine_replans_with_fewer_cores() -> None:
    """Items 2000x costlier than probed, mostly queued for a core behind other programs: the
    new plan counts the crowding (fewer cores for every backend), not waiting."""
    probed = measured(1e-6, 1.0, releases_gil=False)
    serial = plan_for(probed, n=10_000)
    assert serial.backend == "serial"
    replanner = Replanner(probed, AUTO, 10_000, env=TWO_CORES)
    new = replanner.observe(serial, _chunk(100, 0.01, 0.002, 0.008), 100, 100)
    assert new is not None and new.backend == "process", new
    assert "re-planned after 100 items" in new.reasons[0]
    assert any("threads of other programs" in reason for reason in new.reasons), new.reasons


def test_crowding_of_a_runs_workers() -> None:
    """Two workers on two cores, each queued half its time: two other threads wanted them."""
    assert crowding(1.0, 2.0, ours=2, cores=2) == pytest.approx(2.0)
    assert crowding(1.0, 2.0, ours=1, cores=2) == pytest.approx(3.0)  # the caller alone
    assert crowding(0.01, 2.0, ours=2, cores=2) == 0.0  # a wake-up here and there
    assert crowding(0.001, 0.001, ours=1, cores=2) == 0.0  # too little timed


def test_a_few_percent_of_waits_gets_no_worker_beyond_one_a_core() -> None:
    """A probe can read pure computation as a few percent of waits (GIL hand-overs to its own
    threads, the timer): 95 % or more gets one worker process a core, as 100 % does (3 % less
    on paper was enough for a third, and lost). Waits of a tenth of the time are worth a third
    worker on two cores (it computes while the others wait)."""
    warm = Environment(cores=2, gil_enabled=True, nested=False, warm_processes=4)
    for cpu in (1.0, 0.97, 0.96):
        plan = plan_for(measured(0.01, cpu, releases_gil=False), n=100, env=warm)
        assert (plan.backend, plan.max_workers) == ("process", 2), (cpu, plan)
    plan = plan_for(measured(0.01, 0.9, releases_gil=False), n=100, env=warm)
    assert (plan.backend, plan.max_workers) == ("process", 3)
