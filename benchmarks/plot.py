"""`python -m benchmarks.plot [JSON]`: bar chart of ratios to the best engine, per workload.

Writes a PNG next to the JSON (same name, `.png`). Log scale: 1 is the best engine, higher is worse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def ratios(results: dict[str, Any]) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """(workloads, engines, ratio per (workload, engine)) for the cells that have a ratio."""
    selected: list[str] = results["config"]["engines"]
    table: dict[tuple[str, str], float] = {}
    workloads: list[str] = []
    for cell in results["cells"]:
        if cell.get("ratio") is None or cell["engine"] not in selected:
            continue  # lock kinds are not engines; failed cells have no ratio
        table[(cell["workload"], cell["engine"])] = cell["ratio"]
        if cell["workload"] not in workloads:
            workloads.append(cell["workload"])
    engines = [e for e in selected if any(engine == e for _, engine in table)]
    return workloads, engines, table


def plot(json_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(json_path.read_text())
    workloads, engines, table = ratios(results)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(workloads)), 5.0))
    width = 0.8 / max(1, len(engines))
    cmap = plt.get_cmap("tab20")
    for i, engine in enumerate(engines):
        xs = [w for w, wl in enumerate(workloads) if (wl, engine) in table]
        ys = [table[(workloads[x], engine)] for x in xs]
        offset = (i - (len(engines) - 1) / 2) * width
        ax.bar([x + offset for x in xs], ys, width, label=engine, color=cmap(i % 20))
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_ylabel("time / best engine (log scale, lower is better)")
    machine = results["machine"]
    ax.set_title(
        f"smartpool benchmarks: {machine['cpu_count']} cores, Python {machine['python']}, "
        f"{machine['date'][:10]}"
    )
    ax.legend(fontsize="small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out = json_path.with_suffix(".png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__)
    parser.add_argument("json", nargs="?", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    print(plot(args.json))


if __name__ == "__main__":
    main()
