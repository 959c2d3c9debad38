"""Free-threaded builds (3.13t, 3.14t): what smartpool does there, with the build's traits
injected (no such build can be installed on the test machines).

Threads run Python code in parallel there, so pure-Python CPU work goes to threads, ahead of
processes and interpreters alike; and importing smartpool must not turn the GIL back on, which
any C extension without a ``Py_mod_gil`` slot would do for the whole program.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from smartpool._options import Options
from smartpool._routing import planner
from smartpool._routing.cost import Environment
from smartpool._routing.measurement import Measurement

SRC = Path(__file__).resolve().parent.parent / "src" / "smartpool"
GIL_FREE = Environment(cores=2, gil_enabled=False, nested=False)


def _pure_python_cpu() -> Measurement:
    return Measurement(
        call_seconds=0.005,
        cpu_fraction=1.0,
        releases_gil=False,
        picklable=True,
        transfer_seconds=2e-6,
        samples=4,
    )


def _plan(env: Environment) -> planner.Plan:
    return planner.make_plan(
        abs, Options(), hint=None, n_items=64, measurement=_pure_python_cpu(), env=env
    )


def test_the_build_is_read_from_the_running_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert Environment.current().gil_enabled is False
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    assert Environment.current().gil_enabled is True


def test_pure_python_cpu_work_goes_to_threads_even_with_warm_alternatives() -> None:
    """Warm processes and warm interpreters cost nothing to start, and still lose: threads move
    nothing and now run the work in parallel."""
    env = Environment(
        cores=2,
        gil_enabled=False,
        nested=False,
        warm_processes=2,
        interpreters=True,
        warm_interpreters=2,
    )
    plan = _plan(env)
    assert plan.backend == "thread", plan
    assert any("free-threaded" in r for r in plan.reasons)
    # The same work with the GIL goes elsewhere: the build is what decides.
    assert _plan(Environment(cores=2, gil_enabled=True, nested=False)).backend == "process"


def test_sampling_the_gil_is_pointless_there() -> None:
    """Whether a function holds the GIL cannot change a plan on a free-threaded build, so the
    probe does not spend items finding out."""
    m = _pure_python_cpu()
    assert not planner.gil_matters(m, Options(), 64, GIL_FREE)
    assert planner.gil_matters(
        m, Options(), 64, Environment(cores=2, gil_enabled=True, nested=False)
    )


@pytest.mark.parametrize(
    "source", ["_sync/_fastlock.c", "_process/_copy.c"], ids=["fastlock", "copy"]
)
def test_c_extensions_declare_they_need_no_gil(source: str) -> None:
    """Both extensions use multi-phase init and declare ``Py_MOD_GIL_NOT_USED`` (guarded for
    3.13+, where the slot exists). Without it, importing smartpool on a free-threaded build
    would re-enable the GIL for the whole process; with single-phase init, no slot can be
    declared at all. (On 3.14 the suite also loads both in subinterpreters, which needs the
    same multi-phase init: test_interpreter_backend.py.)"""
    text = (SRC / source).read_text()
    assert re.search(r"\{\s*Py_mod_gil\s*,\s*Py_MOD_GIL_NOT_USED\s*\}", text)
    assert "PY_VERSION_HEX >= 0x030D0000" in text
    assert "PyModuleDef_Init(" in text and "PyModule_Create(" not in text
