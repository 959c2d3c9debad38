"""Testing code that uses smartpool: assertion helpers, ``scheduled()``, and (in
``smartpool.testing.strategies``) hypothesis strategies; the pytest plugin is registered as
``smartpool`` (see docs/testing.md).

Importing this package imports neither hypothesis nor pytest: the helpers that need hypothesis
import it when they are given a strategy.

Example:
    >>> from smartpool.testing import assert_parallel_equivalent
    >>> assert_parallel_equivalent(abs, [-1, 0, 1], backends=["serial", "thread"])
"""

from ._equivalence import assert_order_independent as assert_order_independent
from ._equivalence import assert_parallel_equivalent as assert_parallel_equivalent
from ._picklable import assert_picklable as assert_picklable
from ._races import assert_no_shared_state as assert_no_shared_state
from ._scheduled import Fault as Fault
from ._scheduled import scheduled as scheduled

__all__ = [
    "Fault",
    "assert_no_shared_state",
    "assert_order_independent",
    "assert_parallel_equivalent",
    "assert_picklable",
    "scheduled",
]
