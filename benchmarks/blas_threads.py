"""NumPy matmul on worker processes, with and without smartpool's BLAS thread limit.

``python -m benchmarks.blas_threads [--size 512] [--items 48] [--rounds 5]``

Each item multiplies a ``size`` x ``size`` matrix by itself, four times, in a worker process;
``max_workers`` is :func:`smartpool.cpu_count`. With ``inner_threads="auto"`` (the default) each
worker's BLAS gets ``cpus // workers`` threads; with ``inner_threads=None`` it keeps its own
default (a thread per CPU in every worker: workers x CPUs threads on the CPUs). The two are run
in turn, ``rounds`` times each, on fresh pools (warmed up untimed), and the medians printed.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import smartpool


@functools.cache
def _matrix(size: int) -> Any:
    import numpy

    return numpy.random.default_rng(0).random((size, size))


def matmul(size: int) -> float:
    """Four products of a ``size`` x ``size`` matrix with itself (BLAS dgemm)."""
    a = _matrix(size)
    total = 0.0
    for _ in range(4):
        total += float((a @ a)[0, 0])
    return total


def _timed(size: int, items: int, inner: str | None) -> float:
    smartpool.shutdown()  # fresh workers: no limit left over from the other setting
    workers = smartpool.cpu_count()
    options: dict[str, Any] = {"backend": "process", "max_workers": workers, "chunksize": 1}
    smartpool.parallel_map(matmul, [size] * workers * 2, inner_threads=inner, **options)  # warm
    began = time.perf_counter()
    smartpool.parallel_map(matmul, [size] * items, inner_threads=inner, **options)
    return time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blas_threads", description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    import numpy

    numpy.ones(2) @ numpy.ones(2)  # the caller's BLAS is loaded, as in a NumPy program
    times: dict[str, list[float]] = {"auto": [], "None": []}
    for round_ in range(args.rounds):
        for inner in ("auto", None) if round_ % 2 == 0 else (None, "auto"):
            times[str(inner)].append(_timed(args.size, args.items, inner))
    smartpool.shutdown()
    cpus = smartpool.cpu_count()
    print(
        f"{args.items} items x 4 matmuls of {args.size}x{args.size}, {cpus} workers, "
        f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    for inner, samples in times.items():
        print(
            f"inner_threads={inner:5s} median {statistics.median(samples):.3f} s  "
            f"(min {min(samples):.3f}, max {max(samples):.3f}, n={len(samples)})"
        )
    ratio = statistics.median(times["None"]) / statistics.median(times["auto"])
    print(f"unlimited / limited: {ratio:.2f}x")


if __name__ == "__main__":
    from benchmarks.blas_threads import main as imported_main  # its functions pickle by name

    imported_main()
