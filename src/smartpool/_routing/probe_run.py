"""What a probe gives back to the run: the values it computed and what it measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._work.task import ChunkResult
from .measurement import Measurement
from .numbered import Sent


@dataclass
class ProbeRun:
    """The probe's outcome on a job: the values it computed, in order, and what it measured."""

    values: list[Any]
    measurement: Measurement
    #: The chunk holding the first error, if an item failed during the probe.
    failed: ChunkResult | None = None
    #: True when the probe ran every item there was.
    exhausted: bool = False
    #: Where ``values`` belong in the input: (index of the first, how many) per stretch...
    segments: list[tuple[int, int]] = field(default_factory=list[tuple[int, int]])
    #: ...and the items that ran elsewhere meanwhile (see ``beside``), in input order.
    sent: list[Sent] = field(default_factory=list[Sent])
    #: How many items were taken from the input: the index of the next one.
    taken: int = 0


def failed_run(values: list[Any], result: ChunkResult, wall: float, cpu: float) -> ProbeRun:
    """The probe's outcome when an item raised: what was timed until then, and the error."""
    measurement = Measurement(
        call_seconds=wall / max(len(values), 1),
        cpu_fraction=min(1.0, cpu / wall) if wall > 0 else 1.0,
        releases_gil=None,
        picklable=None,
        transfer_seconds=0.0,
        samples=len(values),
    )
    return ProbeRun(values, measurement, result, False)
