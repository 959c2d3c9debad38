"""smartpool: parallel map that decides threads vs processes for you.

Example:
    >>> import smartpool
    >>> smartpool.parallel_map(str.upper, ["a", "b"], backend="thread")
    ['A', 'B']
"""

from typing import TYPE_CHECKING

from ._aio import aimap as aimap
from ._aio import amap as amap
from ._aio import asubmit as asubmit
from ._api import ResultIterator as ResultIterator
from ._api import imap as imap
from ._api import parallel_map as parallel_map
from ._api import submit as submit
from ._backends import shutdown as shutdown
from ._cluster import using as using
from ._config import Config as Config
from ._config import config as config
from ._config import configure as configure
from ._config import current_config as current_config
from ._decorators import TaskFunction as TaskFunction
from ._decorators import auto as auto
from ._decorators import cpu_bound as cpu_bound
from ._decorators import io_bound as io_bound
from ._errors import InitializerError as InitializerError
from ._errors import RemoteError as RemoteError
from ._errors import ResourceLimitError as ResourceLimitError
from ._errors import SerializationError as SerializationError
from ._errors import SmartpoolError as SmartpoolError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerCrashedError as WorkerCrashedError
from ._executor import Executor as Executor
from ._explain import explain as explain
from ._options import MapOptions as MapOptions
from ._progress_event import ProgressEvent as ProgressEvent
from ._routing.classify import Classification as Classification
from ._routing.classify import classify as classify
from ._routing.cpus import cpu_count as cpu_count
from ._routing.memory import forget as forget
from ._routing.planner import Plan as Plan
from ._starmap import istarmap as istarmap
from ._starmap import starmap as starmap
from ._version import __version__ as __version__
from ._work.reporting import report_progress as report_progress
from ._work.setup import worker_state as worker_state

if TYPE_CHECKING:
    from ._sync import AbandonedLockWarning as AbandonedLockWarning
    from ._sync import BoundedSemaphore as BoundedSemaphore
    from ._sync import Event as Event
    from ._sync import Lock as Lock
    from ._sync import RLock as RLock
    from ._sync import Semaphore as Semaphore
    from ._sync import Value as Value

_SYNC_NAMES = frozenset(
    {"AbandonedLockWarning", "BoundedSemaphore", "Event", "Lock", "RLock", "Semaphore", "Value"}
)


def __dir__() -> list[str]:
    # The shared-state primitives are public though loaded lazily: list them (help, completion).
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> object:
    # The shared-state primitives load on first use: most programs never need them.
    if name in _SYNC_NAMES:
        from . import _sync

        return getattr(_sync, name)
    raise AttributeError(f"module 'smartpool' has no attribute {name!r}")


__all__ = [
    "AbandonedLockWarning",
    "BoundedSemaphore",
    "Classification",
    "Config",
    "Event",
    "Executor",
    "InitializerError",
    "Lock",
    "MapOptions",
    "Plan",
    "ProgressEvent",
    "RLock",
    "RemoteError",
    "ResourceLimitError",
    "ResultIterator",
    "Semaphore",
    "SerializationError",
    "SmartpoolError",
    "TaskFunction",
    "TaskTimeoutError",
    "Value",
    "WorkerCrashedError",
    "aimap",
    "amap",
    "asubmit",
    "auto",
    "classify",
    "config",
    "configure",
    "cpu_bound",
    "cpu_count",
    "current_config",
    "explain",
    "forget",
    "imap",
    "io_bound",
    "istarmap",
    "parallel_map",
    "report_progress",
    "shutdown",
    "starmap",
    "submit",
    "using",
    "worker_state",
]
