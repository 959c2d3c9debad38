"""smartpool's performance targets (issue 6), checked against the cells of one run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.engines import BASELINE
from benchmarks.report import Cell, Key, fmt_seconds, index, ranked
from benchmarks.workloads import COLD, LOCK, MAP_WORKLOADS, WARM_SMALL

AUTO = "smartpool-auto"
#: Cells a target compares auto or smartpool with, other than the best engine.
REFERENCES: frozenset[Key] = frozenset(
    {
        ("tiny", "serial"),
        ("cpu_py", "serial"),
        ("big_args", "smartpool-process"),
        ("big_args", "joblib-loky"),
    }
)
#: Map cells within this factor of their workload's best are contenders for the best.
CLOSE = 1.5


@dataclass(frozen=True)
class Verdict:
    name: str
    status: str  # PASS, FAIL or N/A
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


class _Missing(Exception):
    """A cell a target needs is absent, unavailable or broken."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _value(by_key: dict[Key, Cell], workload: str, engine: str, metric: str | None = None) -> float:
    cell = by_key.get((workload, engine))
    if cell is None:
        raise _Missing("N/A", f"{workload}/{engine} not run")
    if cell["status"] == "unavailable":
        raise _Missing("N/A", f"{workload}/{engine} unavailable")
    if cell["status"] != "ok":
        # smartpool failing its own benchmark is a failure; a broken peer only blocks the check
        status = "FAIL" if engine.startswith("smartpool") else "N/A"
        raise _Missing(status, f"{workload}/{engine} {cell['status']}")
    value: float = cell["medians"][metric] if metric else cell["value"]
    return value


def _best(by_key: dict[Key, Cell], workload: str) -> tuple[str, float]:
    ok = [
        (c["value"], e)
        for (w, e), c in by_key.items()
        if w == workload and c["status"] == "ok" and ranked(e)
    ]
    if not ok:
        raise _Missing("N/A", f"no engine finished {workload}")
    value, engine = min(ok)
    return engine, value


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _auto_near_best(workload: str) -> Callable[[dict[Key, Cell]], tuple[str, str]]:
    def check(by_key: dict[Key, Cell]) -> tuple[str, str]:
        auto = _value(by_key, workload, AUTO)
        engine, best = _best(by_key, workload)
        ratio = auto / best
        detail = f"auto {fmt_seconds(auto)} = x{ratio:.2f} of best ({engine} {fmt_seconds(best)})"
        return _verdict(ratio <= 1.10), detail

    return check


def _tiny(by_key: dict[Key, Cell]) -> tuple[str, str]:
    auto, serial = _value(by_key, "tiny", AUTO), _value(by_key, "tiny", "serial")
    ratio = auto / serial
    return _verdict(ratio <= 1.2), f"auto {fmt_seconds(auto)} = x{ratio:.2f} of serial"


def _cpu_py(by_key: dict[Key, Cell]) -> tuple[str, str]:
    auto, serial = _value(by_key, "cpu_py", AUTO), _value(by_key, "cpu_py", "serial")
    speedup = serial / auto
    return _verdict(
        speedup >= 1.85
    ), f"auto {fmt_seconds(auto)}, speed-up {speedup:.2f}x over serial"


def _big_args(by_key: dict[Key, Cell]) -> tuple[str, str]:
    sp = _value(by_key, "big_args", "smartpool-process")
    loky = _value(by_key, "big_args", "joblib-loky")
    return _verdict(sp <= loky), f"smartpool-process {fmt_seconds(sp)} vs loky {fmt_seconds(loky)}"


def _cold(by_key: dict[Key, Cell]) -> tuple[str, str]:
    sp = _value(by_key, COLD, "smartpool-process")
    cf = _value(by_key, COLD, "cf-process")
    ratio = sp / cf
    detail = f"first map {fmt_seconds(sp)} = x{ratio:.2f} of cf-process {fmt_seconds(cf)}"
    return _verdict(ratio <= 3.0), detail


def _warm(engine: str) -> Callable[[dict[Key, Cell]], tuple[str, str]]:
    def check(by_key: dict[Key, Cell]) -> tuple[str, str]:
        per_call = _value(by_key, WARM_SMALL, engine)
        return _verdict(per_call < 1e-3), f"{engine} {fmt_seconds(per_call)} per call"

    return check


def _lock(metric: str) -> Callable[[dict[Key, Cell]], tuple[str, str]]:
    def check(by_key: dict[Key, Cell]) -> tuple[str, str]:
        sp = _value(by_key, LOCK, "smartpool.Lock", metric)
        mp = _value(by_key, LOCK, "multiprocessing.Lock", metric)
        ratio = sp / mp
        detail = f"{fmt_seconds(sp)} = x{ratio:.2f} of multiprocessing.Lock {fmt_seconds(mp)}"
        return _verdict(ratio <= 2.0), detail

    return check


CHECKS: list[tuple[str, Callable[[dict[Key, Cell]], tuple[str, str]]]] = [
    *((f"{w}: auto within 1.10x of the best engine", _auto_near_best(w)) for w in MAP_WORKLOADS),
    ("tiny: auto within 1.2x of serial", _tiny),
    ("cpu_py: auto at least 1.85x faster than serial", _cpu_py),
    ("big_args: smartpool-process no slower than joblib-loky", _big_args),
    ("cold: smartpool-process first map within 3x of cf-process (fork)", _cold),
    ("warm_small: smartpool-auto under 1 ms per call", _warm(AUTO)),
    ("warm_small: smartpool-process under 1 ms per call", _warm("smartpool-process")),
    ("lock: acquire()+release() within 2x of multiprocessing.Lock", _lock("pair")),
    ("lock: `with lock:` block within 2x of multiprocessing.Lock", _lock("with")),
]


def contenders(cells: Sequence[Cell]) -> list[Key]:
    """The map cells the verdicts turn on: auto (and the ``--baseline`` auto), every engine
    within ``CLOSE`` of its workload's best (any of them could be the best), and the
    ``REFERENCES``; in run order. The runner gives
    them extra rounds, so that a close verdict rests on more samples than a clear one. (Needs
    the cells' ratios: ``report.add_ratios``.)"""
    return [
        (c["workload"], c["engine"])
        for c in cells
        if c["workload"] in MAP_WORKLOADS
        and c["status"] == "ok"
        and (
            c["engine"] in (AUTO, BASELINE)
            or (c.get("ratio") is not None and c["ratio"] <= CLOSE)
            or (c["workload"], c["engine"]) in REFERENCES
        )
    ]


def evaluate(cells: Sequence[Cell]) -> list[Verdict]:
    by_key = index(cells)
    verdicts = []
    for name, check in CHECKS:
        try:
            status, detail = check(by_key)
        except _Missing as missing:
            status, detail = missing.status, missing.detail
        verdicts.append(Verdict(name, status, detail))
    return verdicts


def render(verdicts: Sequence[Verdict]) -> str:
    width = max((len(v.name) for v in verdicts), default=0)
    lines = ["## Targets", ""]
    lines += [f"{v.status:<4}  {v.name:<{width}}  {v.detail}" for v in verdicts]
    return "\n".join(lines) + "\n"


def summary(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    counts = {s: sum(v.status == s for v in verdicts) for s in ("PASS", "FAIL", "N/A")}
    return {"counts": counts, "checks": [v.as_dict() for v in verdicts]}
