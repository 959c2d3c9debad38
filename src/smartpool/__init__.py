"""smartpool: parallel map that decides threads vs processes for you.

Example:
    >>> import smartpool
    >>> smartpool.parallel_map(str.upper, ["a", "b"], backend="thread")
    ['A', 'B']
"""

from ._api import explain as explain
from ._api import imap as imap
from ._api import parallel_map as parallel_map
from ._api import submit as submit
from ._backends import shutdown as shutdown
from ._classify import Classification as Classification
from ._classify import classify as classify
from ._config import configure as configure
from ._decorators import TaskFunction as TaskFunction
from ._decorators import auto as auto
from ._decorators import cpu_bound as cpu_bound
from ._decorators import io_bound as io_bound
from ._errors import RemoteError as RemoteError
from ._errors import SerializationError as SerializationError
from ._errors import SmartpoolError as SmartpoolError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerCrashedError as WorkerCrashedError
from ._planner import Plan as Plan
from ._planner import forget as forget

__version__ = "0.1.0.dev0"

__all__ = [
    "Classification",
    "Plan",
    "RemoteError",
    "SerializationError",
    "SmartpoolError",
    "TaskFunction",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "auto",
    "classify",
    "configure",
    "cpu_bound",
    "explain",
    "forget",
    "imap",
    "io_bound",
    "parallel_map",
    "shutdown",
    "submit",
]
