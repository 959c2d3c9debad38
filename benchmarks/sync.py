"""`python -m benchmarks.sync`: smartpool's shared primitives against multiprocessing's, A/B.

Each primitive is timed uncontended (one thread, ops in a loop) and contended (two forked
processes started together by a barrier, each doing ``--ops`` operations on the same object:
for the locks ``with lock: counter += 1``, the ``multiprocessing`` issue's workload). The two
kinds of a pair are measured alternately, A/B then B/A, round after round, so a slow spell of a
shared machine weighs on both alike; the ratio is smartpool's median over multiprocessing's.

For Lock and Semaphore a third mode, ``handoff``, passes control back and forth between two
processes through two locks (each releases one and blocks on the other), so that every acquire
blocks: the contended path alone, whatever the load of the machine. Seconds per round trip.

Operations, smartpool against multiprocessing:

* Lock, RLock, Semaphore: ``with obj: pass`` uncontended; contended, ``with obj: counter += 1``
  (counter: a shared int64, checked at the end: the primitive must exclude).
* Event: ``is_set()`` (uncontended and contended), and ``set(); clear()`` pairs.
* Value: ``v.add(1)`` against ``with v.get_lock(): v.value += 1``, and ``get()`` against
  ``v.value``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.report import fmt_seconds

Op = Callable[[Any, Any], None]  # (primitive, shared counter) -> None, one operation


def _with_block(obj: Any, counter: Any) -> None:
    with obj:
        counter.value += 1


def _with_pass(obj: Any, counter: Any) -> None:
    with obj:
        pass


def _is_set(obj: Any, counter: Any) -> None:
    obj.is_set()


def _set_clear(obj: Any, counter: Any) -> None:
    obj.set()
    obj.clear()


def _sp_add(obj: Any, counter: Any) -> None:
    obj.add(1)


def _mp_add(obj: Any, counter: Any) -> None:
    with obj.get_lock():
        obj.value += 1


def _sp_get(obj: Any, counter: Any) -> None:
    obj.get()


def _mp_get(obj: Any, counter: Any) -> None:
    obj.value  # noqa: B018 - the read is the operation


def _make(kind: str) -> Any:
    import smartpool

    ctx = multiprocessing.get_context("fork")
    makers: dict[str, Callable[[], Any]] = {
        "smartpool.Lock": smartpool.Lock,
        "multiprocessing.Lock": ctx.Lock,
        "smartpool.RLock": smartpool.RLock,
        "multiprocessing.RLock": ctx.RLock,
        "smartpool.Semaphore": lambda: smartpool.Semaphore(1),
        "multiprocessing.Semaphore": lambda: ctx.Semaphore(1),
        "smartpool.Event": smartpool.Event,
        "multiprocessing.Event": ctx.Event,
        "smartpool.Value": lambda: smartpool.Value(0),
        "multiprocessing.Value": lambda: ctx.Value("q", 0),
    }
    return makers[kind]()


#: (row name, smartpool kind, multiprocessing kind, smartpool op, multiprocessing op)
ROWS: list[tuple[str, str, str, Op, Op]] = [
    ("Lock `with`", "smartpool.Lock", "multiprocessing.Lock", _with_block, _with_block),
    ("RLock `with`", "smartpool.RLock", "multiprocessing.RLock", _with_block, _with_block),
    (
        "Semaphore `with`",
        "smartpool.Semaphore",
        "multiprocessing.Semaphore",
        _with_block,
        _with_block,
    ),
    ("Event is_set()", "smartpool.Event", "multiprocessing.Event", _is_set, _is_set),
    ("Event set()+clear()", "smartpool.Event", "multiprocessing.Event", _set_clear, _set_clear),
    ("Value add(1)", "smartpool.Value", "multiprocessing.Value", _sp_add, _mp_add),
    ("Value get()", "smartpool.Value", "multiprocessing.Value", _sp_get, _mp_get),
]


def _loop(op: Op, obj: Any, counter: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        op(obj, counter)
    return time.perf_counter() - start


def uncontended(kind: str, op: Op, n: int) -> float:
    """Seconds per operation, one thread, after a warm-up of n // 10 operations."""
    obj = _make(kind)
    counter = multiprocessing.get_context("fork").RawValue("q", 0)
    _loop(op, obj, counter, n // 10)
    gc.collect()
    return _loop(op, obj, counter, n) / n


def _child(op: Op, obj: Any, counter: Any, n: int, barrier: Any, times: Any, i: int) -> None:
    barrier.wait()
    times[2 * i] = time.perf_counter()
    _loop(op, obj, counter, n)
    times[2 * i + 1] = time.perf_counter()


def contended(kind: str, op: Op, n: int, procs: int = 2) -> float:
    """Wall seconds for ``procs`` forked processes each doing ``n`` operations at once (from the
    first start to the last end, read from the monotonic clock shared by all processes)."""
    ctx = multiprocessing.get_context("fork")
    obj = _make(kind)
    counter = ctx.RawValue("q", 0)
    times = ctx.RawArray("d", 2 * procs)
    barrier = ctx.Barrier(procs)
    workers = [
        ctx.Process(target=_child, args=(op, obj, counter, n, barrier, times, i))
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"{kind}: a contending process exited with {w.exitcode}")
    if op is _with_block and counter.value != procs * n:
        raise RuntimeError(f"{kind}: counter {counter.value}, expected {procs * n}")
    starts, ends = times[0::2], times[1::2]
    return max(ends) - min(starts)


def _handoff_child(a: Any, b: Any, n: int) -> None:
    for _ in range(n):
        a.acquire()
        b.release()


def handoff(kind: str, n: int) -> float:
    """Seconds per round trip of ``n`` handoffs between this process and a forked one."""
    ctx = multiprocessing.get_context("fork")
    a, b = _make(kind), _make(kind)
    a.acquire()
    b.acquire()
    child = ctx.Process(target=_handoff_child, args=(a, b, n))
    child.start()
    start = time.perf_counter()
    for _ in range(n):
        a.release()
        b.acquire()
    elapsed = time.perf_counter() - start
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"{kind}: the handoff process exited with {child.exitcode}")
    return elapsed / n


def measure(rounds: int, ops: int, rows: Sequence[str] | None) -> list[dict[str, Any]]:
    """Every row, uncontended and contended, A/B-interleaved; one record per (row, mode)."""
    results = []
    for name, sp, mp, sp_op, mp_op in ROWS:
        if rows and name.split()[0] not in rows:
            continue
        modes = ["uncontended", "contended"]
        if name.split()[0] in ("Lock", "Semaphore"):
            modes.append("handoff")
        for mode in modes:
            samples: dict[str, list[float]] = {sp: [], mp: []}
            for r in range(rounds):
                order = [(sp, sp_op), (mp, mp_op)]
                for kind, op in order if r % 2 == 0 else order[::-1]:
                    if mode == "uncontended":
                        plain = _with_pass if op is _with_block else op
                        samples[kind].append(uncontended(kind, plain, ops * 5))
                    elif mode == "handoff":
                        samples[kind].append(handoff(kind, ops // 10))
                    else:
                        samples[kind].append(contended(kind, op, ops))
            a, b = statistics.median(samples[sp]), statistics.median(samples[mp])
            per_round = [x / y for x, y in zip(samples[sp], samples[mp], strict=True)]
            results.append(
                {
                    "row": name,
                    "mode": mode,
                    "smartpool": a,
                    "multiprocessing": b,
                    "ratio": a / b,
                    "round_ratios": (min(per_round), max(per_round)),
                }
            )
            print(_line(results[-1]), file=sys.stderr, flush=True)
    return results


def _line(rec: dict[str, Any]) -> str:
    lo, hi = rec["round_ratios"]
    return (
        f"| {rec['row']} | {rec['mode']} | {fmt_seconds(rec['smartpool'])} | "
        f"{fmt_seconds(rec['multiprocessing'])} | x{rec['ratio']:.2f} | x{lo:.2f}-x{hi:.2f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync", description=__doc__)
    parser.add_argument("--rounds", type=int, default=6, help="A/B rounds per row (default 6)")
    parser.add_argument(
        "--ops",
        type=int,
        default=20_000,
        help="operations per contending process (default "
        "20,000; uncontended loops do 5 times as many)",
    )
    parser.add_argument("--rows", help="comma-separated first words: Lock,RLock,Semaphore,...")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    print(f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    results = measure(args.rounds, args.ops, rows)
    print("| primitive | mode | smartpool | multiprocessing | ratio (medians) | ratio per round |")
    print("|---|---|---|---|---|---|")
    for rec in results:
        print(_line(rec))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
