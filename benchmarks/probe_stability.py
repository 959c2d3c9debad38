"""How often fresh probes pick the wrong backend, quiet or with other processes spinning.

``python -m benchmarks.probe_stability [--busy 0,1,2] [--spin-probes 30] [--hash-probes 10]``

For each load, counts over fresh probes (``smartpool.forget()`` before each):
- pure-Python loop (~1 ms a call) over 200 items: plans other than processes (wrong: threads
  give GIL-bound work no speed-up, and serial gives up the cores);
- sha256 over 4 MiB over 32 items: serial plans (wrong: hashlib releases the GIL, threads win).
It also prints ``classify`` verdicts on the pure-Python loop, the load average, and for each
plan off the expected backend what decided it: the GIL verdict the probe came to, and the plan's
last reason. (``explain`` starts no worker: every probe's estimate for processes counts their
start, so a plan can be serial because processes would gain too little on a cold start.)
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Sequence

import smartpool
from benchmarks.busy import spinning
from smartpool._demo_workloads import cpu_python, hash_blocks


def spin(_: object) -> int:
    """About 1 ms of pure-Python arithmetic (it holds the GIL)."""
    return cpu_python(20_000)


def sha256_4mib(_: object) -> str:
    """sha256 over 4 MiB (hashlib releases the GIL)."""
    return hash_blocks(4)


def _plans(
    fn: object, items: int, probes: int, expected: str
) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """The plans of ``probes`` fresh probes, and for those not on ``expected``, the plan's last
    reason (what decided it: a GIL verdict, or the estimates)."""
    counts: collections.Counter[str] = collections.Counter()
    why: collections.Counter[str] = collections.Counter()
    for _ in range(probes):
        smartpool.forget()
        plan = smartpool.explain(fn, range(items))  # type: ignore[arg-type]
        counts[plan.backend] += 1
        if plan.backend != expected:
            gil = "holds the GIL" if "holds the GIL" in plan.reasons[0] else "GIL free/unsure"
            why[f"{plan.backend} ({gil}; {plan.reasons[-1]})"] += 1
    return counts, why


def _gil_verdicts(probes: int) -> int:
    """How many of ``probes`` fresh ``classify`` calls said the pure-Python loop releases the
    GIL (a wrong verdict)."""
    wrong = 0
    for _ in range(probes):
        smartpool.forget()
        if smartpool.classify(cpu_python, 5000).releases_gil:
            wrong += 1
    return wrong


def run(busy: int, spin_probes: int, hash_probes: int) -> dict[str, object]:
    with spinning(busy):
        time.sleep(0.5)  # let the spinners get going (they are timed, not synchronised with)
        load = os.getloadavg()[0]
        spin_plans, spin_why = _plans(spin, 200, spin_probes, "process")
        hash_plans, hash_why = _plans(sha256_4mib, 32, hash_probes, "thread")
        classify_wrong = _gil_verdicts(spin_probes)
    return {
        "busy": busy,
        "load_average": load,
        "spin_wrong": spin_probes - spin_plans["process"],
        "spin_plans": dict(spin_plans),
        "hash_serial": hash_plans["serial"],
        "hash_plans": dict(hash_plans),
        "classify_wrong": classify_wrong,
        "why": spin_why + hash_why,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.probe_stability", description=__doc__
    )
    parser.add_argument("--busy", default="0,1,2", help="spinning processes, comma-separated")
    parser.add_argument("--spin-probes", type=int, default=30)
    parser.add_argument("--hash-probes", type=int, default=10)
    args = parser.parse_args(argv)
    loads = [int(n) for n in args.busy.split(",") if n.strip()]
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
    for busy in loads:
        r = run(busy, args.spin_probes, args.hash_probes)
        print(
            f"busy {busy} (load {r['load_average']:.2f}): pure-Python loop, wrong plans "
            f"{r['spin_wrong']} of {args.spin_probes} {r['spin_plans']}; sha256, serial plans "
            f"{r['hash_serial']} of {args.hash_probes} {r['hash_plans']}; classify says "
            f"'releases the GIL' {r['classify_wrong']} of {args.spin_probes}",
            flush=True,
        )
        why = r["why"]
        assert isinstance(why, collections.Counter)
        for reason, count in why.most_common():
            print(f"    {count} x {reason}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
