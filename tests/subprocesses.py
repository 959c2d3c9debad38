"""Running a Python script in a fresh interpreter that imports this checkout's smartpool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The checkout: scripts run there can import ``tests.*``.
ROOT = str(Path(__file__).resolve().parent.parent)
#: The checkout's ``src``: children import the smartpool under test, installed or not.
SRC = str(Path(ROOT) / "src")
ENV = {**os.environ, "PYTHONPATH": SRC}


def run_python(
    *args: str, timeout: float, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGS...`` to completion (in ``cwd``), output captured as text."""
    return subprocess.run(
        [sys.executable, *args], env=ENV, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
