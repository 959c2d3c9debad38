"""Other programs keeping cores busy while something is measured (``--busy N``).

Production machines are rarely quiet: these spinners stand for the other tenants, so the probe's
decisions and the engines' times can be measured under that load too.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

SPIN = "while True: pass"


@contextlib.contextmanager
def spinning(count: int) -> Iterator[list[int]]:
    """Run ``count`` pure-Python busy loops in their own processes while the block runs; yields
    their pids. They are killed (and reaped) when the block ends, on errors too."""
    if count < 0:
        raise ValueError(f"the number of busy processes must be at least 0, got {count}")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", SPIN]))
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
