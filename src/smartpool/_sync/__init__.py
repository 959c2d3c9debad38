"""Shared-state primitives with one semantics on every backend (private; see docs/sync.md).

``smartpool`` re-exports the public names. ``export_state``/``install_state`` are the engine's
hooks for re-attaching module-level objects in worker processes.
"""

from ._event import Event as Event
from ._lock import Lock as Lock
from ._lock import RLock as RLock
from ._owner import AbandonedLockWarning as AbandonedLockWarning
from ._registry import export_state as export_state
from ._registry import install_state as install_state
from ._semaphore import BoundedSemaphore as BoundedSemaphore
from ._semaphore import Semaphore as Semaphore
from ._value import Value as Value

__all__ = [
    "AbandonedLockWarning",
    "BoundedSemaphore",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "Value",
    "export_state",
    "install_state",
]
