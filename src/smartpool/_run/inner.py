"""A run's BLAS/OpenMP threads (``inner_threads=``), as its plan says: worker processes are told
with each chunk, and a run on threads limits the caller's libraries until it ends."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from .._routing.planner import Plan
from .._work import blas
from .._work.task import Call


class InnerThreads:
    """What one run did to the BLAS/OpenMP threads, undone by :meth:`close`."""

    def __init__(self) -> None:
        self._limits: AbstractContextManager[Any] | None = None

    @staticmethod
    def call_for(call: Call, plan: Plan) -> Call:
        """``call`` with the plan's threads for worker processes."""
        if plan.backend != "process" or call.inner_threads == plan.inner_threads:
            return call
        if plan.inner_threads is not None:
            blas.warn_if_unlimited()  # workers forked after NumPy loaded need threadpoolctl
        return replace(call, inner_threads=plan.inner_threads)

    def use(self, plan: Plan) -> None:
        """Limit the caller's libraries for a plan on threads (once per run)."""
        if plan.backend == "thread" and plan.inner_threads is not None and self._limits is None:
            self._limits = blas.limited(plan.inner_threads)
            self._limits.__enter__()

    def close(self) -> None:
        limits, self._limits = self._limits, None
        if limits is not None:
            limits.__exit__(None, None, None)
