"""Cold start, in a fresh interpreter: import an engine, create its pool and map 8 items, tear down.

Run as `python -m benchmarks._cold ENGINE`; prints one JSON object on stdout with seconds for
`import`, `first_map` and `teardown`, or `unavailable`/`error` with a message. Nothing that
starts threads or processes is imported before the engine's own imports are timed.
"""

from __future__ import annotations

import json
import sys
import time


def measure(engine_name: str) -> dict[str, object]:
    from benchmarks.engines import ENGINES, EngineUnavailable
    from benchmarks.workloads import WARM_SMALL_ITEMS, double

    engine = ENGINES[engine_name]
    items = list(range(WARM_SMALL_ITEMS))
    try:
        start = time.perf_counter()
        factory = engine.load()
        imported = time.perf_counter()
    except EngineUnavailable as exc:
        return {"unavailable": str(exc)}
    runner = factory()
    out = runner.map(double, items)
    mapped = time.perf_counter()
    runner.close()
    closed = time.perf_counter()
    if out != [double(x) for x in items]:
        return {"error": f"first map returned {out!r}"}
    return {"import": imported - start, "first_map": mapped - imported, "teardown": closed - mapped}


def main() -> None:
    print(json.dumps(measure(sys.argv[1])), flush=True)


if __name__ == "__main__":
    main()
