"""``smartpool.classify``: measure a function once and say what kind of work it does, and why."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from .._errors import SerializationError
from .._transport.serialize import dump_function
from .._work.feed import Feed
from .measurement import Measurement
from .probe import probe_items
from .transfer_cost import pickling_cost

Kind = Literal["cpu", "io", "mixed"]

#: CPU fraction at or above which a call counts as computing...
CPU_KIND = 0.8
#: ...and at or below which it counts as waiting.
IO_KIND = 0.2


@dataclass(frozen=True)
class Classification:
    """What :func:`classify` measured of a function, and the verdict.

    Example:
        >>> import time, smartpool
        >>> c = smartpool.classify(time.sleep, 0.01)
        >>> c.kind, c.cpu_fraction < 0.2
        ('io', True)
    """

    #: "cpu" (computes), "io" (waits) or "mixed".
    kind: Kind
    #: CPU time of the calling thread / wall-clock time, from 0 (waits) to 1 (computes).
    cpu_fraction: float
    #: Mean wall-clock seconds per call.
    call_seconds: float
    #: Whether other threads could run Python while a call ran; None when not measured (calls
    #: that mostly wait, or are too short to sample).
    releases_gil: bool | None
    #: Whether the function and its arguments can be sent to a worker process.
    picklable: bool
    #: One sentence a person can read: the measurements and what they mean.
    reason: str
    #: False when the probe could not measure everything it wanted within its budget.
    confident: bool
    #: How many calls were timed.
    samples: int


def classify(
    fn: Callable[..., Any], /, *args: Any, budget: float = 0.5, **kwargs: Any
) -> Classification:
    """Run ``fn(*args, **kwargs)`` a few times (within ``budget`` seconds) and classify it.

    The calls run in the caller (a helper thread samples one of them, to learn whether other
    threads can run Python meanwhile) to find whether the function computes or waits and
    whether it lets go of the GIL. Side effects happen once per call.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}: {fn!r}")
    if not budget > 0:
        raise ValueError(f"budget must be a positive number of seconds, got {budget!r}")
    return from_measurement(measure_call(fn, args, kwargs, budget))


def from_measurement(m: Measurement) -> Classification:
    kind: Kind = (
        "cpu" if m.cpu_fraction >= CPU_KIND else "io" if m.cpu_fraction <= IO_KIND else "mixed"
    )
    parts = [
        f"a call took {m.call_seconds * 1e3:.3g} ms ({_calls(m.samples)} timed), "
        f"{m.cpu_fraction:.0%} of it on the CPU, so the work is {_KIND_WORDS[kind]}"
    ]
    if m.releases_gil is True:
        parts.append("while a call ran, other threads could run Python: it releases the GIL")
    elif m.releases_gil is False:
        parts.append("while a call ran, other threads waited to run Python: it holds the GIL")
    confident = m.doubt is None
    if m.doubt:
        parts.append(f"unsure: {m.doubt}")
    if m.picklable is False:
        parts.append("it cannot be pickled, so it cannot run in worker processes")
    return Classification(
        kind=kind,
        cpu_fraction=m.cpu_fraction,
        call_seconds=m.call_seconds,
        releases_gil=m.releases_gil,
        picklable=m.picklable is not False,
        reason="; ".join(parts) + ".",
        confident=confident,
        samples=m.samples,
    )


def _calls(n: int) -> str:
    return "1 call" if n == 1 else f"{n} calls"


_KIND_WORDS: dict[Kind, str] = {
    "cpu": "CPU-bound",
    "io": "I/O-bound (waiting)",
    "mixed": "a mix of computing and waiting",
}


def measure_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], budget: float
) -> Measurement:
    """Probe ``fn(*args, **kwargs)`` called repeatedly (for ``classify``); raise its error."""

    def call(_: object) -> Any:
        return fn(*args, **kwargs)

    probe = probe_items(call, Feed(itertools.repeat(None)), max_items=10_000, max_seconds=budget)
    if probe.failed is not None:
        assert probe.failed.error is not None
        raise probe.failed.error
    picklable, _, _ = pickling_cost([(args, kwargs)], [])
    if picklable is not False:
        try:
            dump_function(fn)
            picklable = True
        except SerializationError:
            picklable = False
    return replace(probe.measurement, picklable=picklable)
