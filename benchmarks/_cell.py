"""One benchmark cell (workload x engine), run in its own fresh interpreter.

`python -m benchmarks._cell WORKLOAD ENGINE --repeats N [--quick] --out FILE` writes one JSON
object to FILE: `status` (ok, error or unavailable), `error`, and `samples` (metric -> seconds).
The parent (`benchmarks.runner`) adds timeouts and crashes; this module only measures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any

from benchmarks import locks
from benchmarks.engines import ENGINES, EngineUnavailable, Runner
from benchmarks.workloads import (
    COLD,
    LOCK,
    MAP_WORKLOADS,
    WARM_SMALL,
    WARM_SMALL_CALLS,
    WARM_SMALL_ITEMS,
    WARM_SMALL_QUICK_CALLS,
    double,
)

Samples = dict[str, list[float]]


class WrongResult(Exception):
    """The engine returned something other than the serial result."""


def _check(name: str, got: list[Any], expected: list[Any]) -> None:
    if len(got) != len(expected):
        raise WrongResult(f"{name}: got {len(got)} results, expected {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if g != e:
            raise WrongResult(f"{name}: item {i}: got {g!r}, expected {e!r}")


def _open(engine_name: str) -> Runner:
    return ENGINES[engine_name].load()()


def measure_map(workload: str, engine: str, repeats: int, quick: bool) -> Samples:
    spec = MAP_WORKLOADS[workload]
    items = spec.items(quick)
    runner = _open(engine)
    times: list[float] = []
    try:
        # One untimed map of the whole input: every engine's timed maps then start warm (pools
        # started, workers' imports done, caches filled), whatever the first map cost.
        warm = runner.map(spec.fn, items)
        warm_expected = spec.reference(items) if spec.update is not None else None
        outputs, expectations = [], []
        for repeat in range(repeats):
            if spec.update is not None:
                spec.update(items, repeat)
                expectations.append(spec.reference(items))
            gc.collect()
            start = time.perf_counter()
            out = runner.map(spec.fn, items)
            times.append(time.perf_counter() - start)
            outputs.append(out)
    finally:
        runner.close()
    if spec.update is None:
        expectations = [spec.reference(items)] * repeats
        warm_expected = expectations[0] if repeats else spec.reference(items)
    assert warm_expected is not None
    _check("warm-up", warm, warm_expected)
    for repeat, (out, expected) in enumerate(zip(outputs, expectations, strict=True)):
        _check(f"repeat {repeat}", out, expected)
    return {"time": times}


def measure_warm_small(engine: str, quick: bool) -> Samples:
    items = list(range(WARM_SMALL_ITEMS))
    expected = [double(x) for x in items]
    calls = WARM_SMALL_QUICK_CALLS if quick else WARM_SMALL_CALLS
    runner = _open(engine)
    times: list[float] = []
    try:
        for _ in range(5):
            _check("warm-up", runner.map(double, items), expected)
        gc.collect()
        for call in range(calls):
            start = time.perf_counter()
            out = runner.map(double, items)
            times.append(time.perf_counter() - start)
            _check(f"call {call}", out, expected)
    finally:
        runner.close()
    return {"per_call": times}


def _cold_probe(engine: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._cold", engine],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"cold probe exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "unavailable" in result:
        raise EngineUnavailable(result["unavailable"])
    if "error" in result:
        raise WrongResult(result["error"])
    return result


def measure_cold(engine: str, repeats: int) -> Samples:
    """Each repeat is a brand-new interpreter running `benchmarks._cold`.

    Like an installed package, the engine gets its bytecode cache: PYTHONDONTWRITEBYTECODE is
    dropped and one untimed probe runs first (it also warms the OS file cache).
    """
    ENGINES[engine].load()  # unavailable engines fail here, before starting any interpreter
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    _cold_probe(engine, env)
    samples: Samples = {"import": [], "first_map": [], "teardown": []}
    for _ in range(repeats):
        result = _cold_probe(engine, env)
        for metric, values in samples.items():
            values.append(result[metric])
    return samples


def measure(workload: str, engine: str, repeats: int, quick: bool) -> Samples:
    if workload in MAP_WORKLOADS:
        return measure_map(workload, engine, repeats, quick)
    if workload == WARM_SMALL:
        return measure_warm_small(engine, quick)
    if workload == COLD:
        return measure_cold(engine, repeats)
    if workload == LOCK:
        return locks.seconds_per_pair(engine, repeats)
    raise ValueError(f"unknown workload {workload!r}")


def run(workload: str, engine: str, repeats: int, quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"status": "ok", "error": None, "samples": {}}
    try:
        samples = measure(workload, engine, repeats, quick)
    except EngineUnavailable as exc:
        result.update(status="unavailable", error=str(exc))
    except WrongResult as exc:
        result.update(status="error", error=f"wrong result: {exc}")
    except Exception as exc:
        tb = traceback.format_exc(limit=-3)
        result.update(status="error", error=f"{type(exc).__name__}: {exc}\n{tb}")
    else:
        result["samples"] = samples
        result["medians"] = {k: statistics.median(v) for k, v in samples.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workload")
    parser.add_argument("engine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = run(args.workload, args.engine, args.repeats, args.quick)
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
