"""The Dask cluster's part of a plan: where work goes when a cluster is attached.

Kept apart from the planner's other rules: they decide the kind of work; these only move work
planned for worker processes or threads onto the cluster, and pick between the dask workers'
child processes and their own threads there.
"""

from __future__ import annotations

from .. import _cluster
from .._options import Options
from .cost import Environment


def place(
    backend: str,
    workers: int | None,
    options: Options,
    env: Environment,
    reasons: list[str],
    io_bound: bool,
    io_workers: int,
) -> tuple[str, int | None]:
    """The Dask cluster's part of a plan: ``backend="dask"`` needs an attached cluster (a clear
    ValueError otherwise) and uses its threads; an automatic plan for worker processes or
    threads goes to the cluster when one is attached (``using()``, ``configure(cluster=...)``).
    On the cluster, work that holds the GIL runs in child processes of the dask workers
    ("dask"), where it cannot starve a worker's event loop; I/O-bound work (and work that
    releases the GIL) fans out on the dask workers' own threads ("dask-thread"), unless a
    ``timeout=`` asks for children that can be killed. A call nested in a task runs inline.
    ``io_workers``: threads when nothing says how many."""
    if env.nested:
        if backend == "dask":
            reasons.append("nested call inside a smartpool worker runs in-process")
            return "serial", 1
        return backend, workers
    threaded = backend == "thread" or (backend == "dask" and io_bound)
    if backend != "dask":
        if options.backend != "auto" or _cluster.attached_client() is None:
            return backend, workers
        kind = "threads" if threaded else "worker processes"
        reasons.append(f"a Dask cluster is attached: work for {kind} runs there")
        workers = workers if threaded else options.max_workers
    threads = _cluster.total_threads(_cluster.require_client())
    if threaded and options.timeout is not None:
        reasons.append("timeout= needs work that can be stopped: child processes on the cluster")
        threaded = False
    elif threaded:
        reasons.append("on the dask workers' own threads (I/O-bound or GIL-free work)")
        return "dask-thread", max(workers or io_workers, threads)
    if workers is None:
        reasons.append(f"the Dask cluster has {threads} worker threads")
    return "dask", workers or threads
