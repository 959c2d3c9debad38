"""smartpool: parallel map that decides threads vs processes for you.

Example:
    >>> import smartpool
    >>> smartpool.parallel_map(str.upper, ["a", "b"], backend="thread")
    ['A', 'B']
"""

from ._api import imap as imap
from ._api import parallel_map as parallel_map
from ._api import submit as submit
from ._backends import shutdown as shutdown
from ._config import configure as configure
from ._decorators import TaskFunction as TaskFunction
from ._decorators import cpu_bound as cpu_bound
from ._decorators import io_bound as io_bound
from ._errors import RemoteError as RemoteError
from ._errors import SerializationError as SerializationError
from ._errors import SmartpoolError as SmartpoolError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerCrashedError as WorkerCrashedError
from ._planner import Plan as Plan

__version__ = "0.1.0.dev0"

__all__ = [
    "Plan",
    "RemoteError",
    "SerializationError",
    "SmartpoolError",
    "TaskFunction",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "configure",
    "cpu_bound",
    "imap",
    "io_bound",
    "parallel_map",
    "shutdown",
    "submit",
]
