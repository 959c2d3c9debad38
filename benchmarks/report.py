"""Ratios and the printed tables (Markdown, so they paste straight into docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from benchmarks.engines import BASELINE
from benchmarks.workloads import COLD, LOCK, MAP_WORKLOADS, WARM_SMALL

Cell = dict[str, Any]
Key = tuple[str, str]
STATUS_TEXT = {"unavailable": "n/a", "error": "error", "timeout": "timeout"}


def index(cells: Iterable[Cell]) -> dict[Key, Cell]:
    return {(c["workload"], c["engine"]): c for c in cells}


def ranked(engine: str) -> bool:
    """Whether an engine competes for a workload's best (not the ``--baseline`` smartpool)."""
    return engine != BASELINE


def add_ratios(cells: Sequence[Cell]) -> None:
    """ratio = value / the best (lowest) value among the ok cells of the same workload (of the
    engines ``ranked``)."""
    best: dict[str, float] = {}
    for c in cells:
        if c["status"] == "ok" and c.get("value") is not None and ranked(c["engine"]):
            best[c["workload"]] = min(best.get(c["workload"], c["value"]), c["value"])
    for c in cells:
        ok = c["status"] == "ok" and c.get("value") is not None and best.get(c["workload"], 0) > 0
        c["ratio"] = c["value"] / best[c["workload"]] if ok else None


def fmt_seconds(s: float) -> str:
    """3 significant digits in the largest unit that keeps the value at least 1."""
    unit, scale = next(
        ((u, f) for u, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)) if s >= f), ("ns", 1e-9)
    )
    value = s / scale
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def fmt_ratio(ratio: float) -> str:
    digits = 2 if ratio < 10 else 1 if ratio < 100 else 0
    return f"x{ratio:.{digits}f}"


def _status(cell: Cell | None) -> str | None:
    if cell is None:
        return "-"
    return STATUS_TEXT.get(cell["status"]) if cell["status"] != "ok" else None


def fmt_cell(cell: Cell | None, metric: str | None = None, with_ratio: bool = True) -> str:
    text = _status(cell)
    if text is not None or cell is None:
        return text or "-"
    value = cell["medians"][metric] if metric else cell["value"]
    ratio = cell.get("ratio")
    if with_ratio and ratio is not None:
        return f"{fmt_seconds(value)} ({fmt_ratio(ratio)})"
    return fmt_seconds(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def map_table(
    by_key: dict[Key, Cell], workloads: Sequence[str], engines: Sequence[str]
) -> list[str]:
    cols = [w for w in workloads if w in MAP_WORKLOADS]
    if not cols:
        return []
    rows = [[e, *(fmt_cell(by_key.get((w, e))) for w in cols)] for e in engines]
    return _table(["engine", *cols], rows)


def startup_table(
    by_key: dict[Key, Cell], workloads: Sequence[str], engines: Sequence[str]
) -> list[str]:
    if COLD not in workloads and WARM_SMALL not in workloads:
        return []
    rows = []
    for e in engines:
        cold, warm = by_key.get((COLD, e)), by_key.get((WARM_SMALL, e))
        rows.append(
            [
                e,
                fmt_cell(cold, "import", with_ratio=False),
                fmt_cell(cold, with_ratio=False),
                fmt_cell(cold, "teardown", with_ratio=False),
                fmt_cell(warm, with_ratio=False),
            ]
        )
    header = ["engine", "import", "first map (cold)", "teardown", "warm call (8 items)"]
    return _table(header, rows)


def lock_table(by_key: dict[Key, Cell], kinds: Sequence[str]) -> list[str]:
    rows = []
    for kind in kinds:
        cell = by_key.get((LOCK, kind))
        status = _status(cell)
        if cell is None or status is not None:
            rows.append([kind, status or "-", "-", "-"])
            continue
        block = cell["medians"].get("with")
        rows.append(
            [
                kind,
                fmt_cell(cell),
                fmt_seconds(block) if block else "-",
                f"{1 / cell['value']:,.0f}",
            ]
        )
    return _table(["lock", "acquire()+release()", "with lock: block", "pairs per second"], rows)


def problems(cells: Iterable[Cell]) -> list[str]:
    """One line per (engine, status, message), listing the workloads it hit."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for c in cells:
        if c["status"] != "ok":
            message = ((c.get("error") or "").strip().splitlines() or [""])[0]
            grouped.setdefault((c["engine"], c["status"], message), []).append(c["workload"])
    return [
        f"- {engine} ({', '.join(workloads)}): {status}: {message}"
        for (engine, status, message), workloads in grouped.items()
    ]


def render(
    cells: Sequence[Cell],
    workloads: Sequence[str],
    engines: Sequence[str],
    lock_kinds: Sequence[str],
) -> str:
    by_key = index(cells)
    out: list[str] = []
    sections = [
        (
            "Map workloads: median of the repeats, (xN) = time / best engine",
            map_table(by_key, workloads, engines),
        ),
        (
            "Start-up (fresh interpreter, median) and warm per-call overhead",
            startup_table(by_key, workloads, engines),
        ),
        ("Uncontended locks", lock_table(by_key, lock_kinds) if LOCK in workloads else []),
        ("Cells that did not produce a number", problems(cells)),
    ]
    for title, lines in sections:
        if lines:
            out += [f"## {title}", "", *lines, ""]
    return "\n".join(out)
