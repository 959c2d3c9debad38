"""A shorter GIL switch interval while a helper thread must get work done beside the caller's
pure Python.

A thread that wants the GIL while another runs pure Python waits up to the switch interval
(5 ms by default) for it, at every blocking call it makes. Starting a worker process and sending
it items takes a few dozen of those (system calls, a handshake): beside a probe's long item,
worker processes were ready only after the item ended (~90 ms after the helper began, on a
first call). The interval is process-wide, so it is shortened while any helper needs it and put
back when the last one is done; threads that do not wait for the GIL are not affected.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The switch interval while a helper works (the default is 5 ms).
FAST_SECONDS = 0.0005

_lock = threading.Lock()
_users = 0
_saved = 0.0


@contextmanager
def fast_switching() -> Iterator[None]:
    """Within the block, threads waiting for the GIL get it within ``FAST_SECONDS`` (never a
    longer interval than the one set); the interval set before is put back after the last
    block ends."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved, FAST_SECONDS))
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                sys.setswitchinterval(_saved)
