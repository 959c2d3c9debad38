"""What smartpool knows of a function: a plain record that the probe fills and the planner reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    """What a probe saw of a function, in the units the planner reasons with."""

    #: Mean wall-clock seconds per call (not counting time queued for a core).
    call_seconds: float
    #: CPU time of the calling thread / wall time, in [0, 1]: 1 computes, 0 waits.
    cpu_fraction: float
    #: Whether other threads could run Python while a call ran; None when not measured.
    releases_gil: bool | None
    #: Whether sample items and results (and, once checked, the function) pickle; None: unknown.
    picklable: bool | None
    #: Caller-side seconds per item to pickle it and its result for a worker process.
    transfer_seconds: float
    #: How many calls were timed.
    samples: int
    #: Why the measurement may be off, or None.
    doubt: str | None = None
    #: Share of a call's running time during which it held the GIL (0 to 1); None: not measured.
    gil_held: float | None = None
    #: Caller-side seconds, once per call, to move large buffers that several items share (one
    #: dataset handed to every item): they go to shared memory once, not with each item.
    shared_transfer_seconds: float = 0.0
    #: Other programs' threads that wanted a core while the probe ran: counted on the machine
    #: between the caller's items (``/proc/loadavg``), or, when the calling thread was queued
    #: for a core, from how long it was. 0.0: the machine had room for this program's workers.
    crowding: float = 0.0
    #: Other busy scheduling groups (other sessions, other cgroups) and how many threads each
    #: wanted a core: they take their equal part of the cores, whatever this program's worker
    #: count (``neighbours``); ``crowding`` then counts only the threads in this program's group.
    other_groups: tuple[int, ...] = ()
    #: Share of the machine's CPU time the host (hypervisor) took while the probe ran, when it
    #: was enough to skew what the probe saw (``clock.HOST_STOLE``); such a measurement is not
    #: kept for later calls. 0.0: none (or the system does not tell).
    stolen: float = 0.0
    #: Seconds the first call took when it stood far above the calls after it (a one-time cost:
    #: an import, a cache filled) and was left out of ``call_seconds``; None: it was not.
    first_call_seconds: float | None = None
    #: Whether the function loads in a subinterpreter (its modules' extensions support them);
    #: None: not checked yet (it is, once the interpreter backend is on the table).
    runs_in_interpreter: bool | None = None
