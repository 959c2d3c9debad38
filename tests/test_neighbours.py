"""Other programs that want the cores, found in ``/proc`` (a fake one here) and grouped as the
kernel's fair scheduler groups them, and what this program's workers get beside them."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from smartpool._options import Options
from smartpool._routing import neighbours
from smartpool._routing.cost import Environment, effective_cores
from smartpool._routing.measurement import Measurement
from smartpool._routing.neighbours import Neighbours, fair_share
from smartpool._routing.planner import make_plan

TWO_CORES = Environment(cores=2, gil_enabled=True, nested=False)
#: The real look-up (the suite's autouse fixture hides other programs from the planner).
LOOK_AROUND = neighbours.neighbours
PURE_PYTHON = Measurement(0.01, 1.0, False, True, 1e-6, 5, gil_held=1.0)  # 10 ms a call


def _task(
    folder: Path, state: str, ppid: int, threads: int = 1, *, group: str = "", session: str = ""
) -> None:
    folder.mkdir(parents=True)
    fields = [state, str(ppid), *["0"] * 15, str(threads), "0", "0"]
    (folder / "stat").write_text(f"{folder.name} (python (x)) {' '.join(fields)}\n")
    if group or session:
        (folder / "cgroup").write_text(f"3:cpuset:/\n1:cpu:{group}\n0::{group}\n")
        (folder / "autogroup").write_text(f"{session} nice 0\n")


def _process(proc: Path, pid: int, state: str, ppid: int = 1, **where: str) -> None:
    _task(proc / str(pid), state, ppid, **where)


def test_runnable_threads_are_grouped_by_cgroup_and_session(tmp_path: Path) -> None:
    """This process (the test's own pid) is left out, however busy; its worker processes count
    in its group (they run items only when asked: the probe takes off those it sent); threads
    are counted one by one; sleeping ones are not counted."""
    me = os.getpid()
    home = {"group": "/", "session": "/autogroup-1"}
    _process(tmp_path, me, "R", **home)
    _process(tmp_path, 100, "R", ppid=me, **home)  # a worker process of ours (a fork server)
    _process(tmp_path, 101, "R", ppid=100, **home)  # and one it forked
    _process(tmp_path, 200, "R", **home)  # another program in our session
    _process(tmp_path, 201, "S", **home)  # asleep
    _process(tmp_path, 300, "R", group="/", session="/autogroup-2")  # another session
    many = tmp_path / "400"  # a multi-threaded program in another cgroup: 2 of 3 threads busy
    _task(many, "S", 1, threads=3, group="/system.slice/db", session="/autogroup-3")
    for tid, state in (("400", "S"), ("401", "R"), ("402", "R")):
        _task(many / "task" / tid, state, 1, threads=3)
    (tmp_path / "self").mkdir()  # not a process
    assert neighbours.look(str(tmp_path)) == Neighbours(same_group=3, other_groups=(1, 2))


def test_without_proc_nothing_is_told(tmp_path: Path) -> None:
    assert neighbours.look(str(tmp_path / "missing")) is None


def test_groups_get_equal_parts_of_the_cores_no_more_than_they_want() -> None:
    assert fair_share(2, 1, ()) == 1
    assert fair_share(2, 4, ()) == 2
    assert fair_share(2, 2, (1,)) == 1  # one busy program in another session: one core each
    assert fair_share(2, 2, (6,)) == 1  # however many threads it runs
    assert fair_share(2, 1, (1, 1)) == pytest.approx(2 / 3)  # three groups, two cores
    assert fair_share(4, 4, (1,)) == 3  # it wants one core: the other three are ours
    assert fair_share(4, 1, (1,)) == 1


def test_beside_a_busy_program_in_another_group_more_workers_gain_nothing() -> None:
    """One program spinning in another session on two cores: this program gets one core
    whether it runs the work itself or on any number of workers (measured: serial and 2 worker
    processes alike took 1.35 s for 64 items of ~15 ms), so pure-Python work runs serially.
    Beside the same program in its own session, workers take a larger share and processes pay."""
    other_session = replace(PURE_PYTHON, other_groups=(1,))
    assert [effective_cores(other_session, TWO_CORES, w) for w in (1, 2, 4)] == [1.0, 1.0, 1.0]
    plan = make_plan(abs, Options(), hint=None, n_items=100, measurement=other_session)
    assert plan.backend == "serial", plan.reasons
    said = "also wanting the 2 cores: 1 other busy group (1 thread);"
    assert any(said in reason for reason in plan.reasons), plan.reasons
    same_session = replace(PURE_PYTHON, crowding=1.0)
    plan = make_plan(abs, Options(), hint=None, n_items=100, measurement=same_session)
    assert (plan.backend, plan.max_workers) == ("process", 4), plan.reasons


def test_a_look_at_the_machine_is_kept_a_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[str] = []

    def look(proc: str) -> Neighbours:
        looks.append(proc)
        return Neighbours(0, (1,))

    monkeypatch.setattr(neighbours, "look", look)
    neighbours.forget()
    try:
        assert LOOK_AROUND() == LOOK_AROUND() == Neighbours(0, (1,))
        assert looks == ["/proc"]
    finally:
        neighbours.forget()
