"""What the numbers were measured on: machine, interpreter and package versions."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import multiprocessing
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("smartpool", "joblib", "loky", "mpire", "pebble", "numpy", "matplotlib")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit(repo: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except OSError:
        return None
    return proc.stdout.strip() or None


def machine_info(repo: Path) -> dict[str, Any]:
    spec = importlib.util.find_spec("smartpool")  # locates it without importing it
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "default_start_method": multiprocessing.get_start_method(),
        "packages": {p: _version(p) for p in PACKAGES},
        "smartpool_location": spec.origin if spec else None,
        "git_commit": _git_commit(repo),
        "load_average_at_start": os.getloadavg(),
        "python_dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
    }
