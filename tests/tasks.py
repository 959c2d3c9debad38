"""Decorated task functions used by the decorator tests (importable by workers)."""

from __future__ import annotations

import os
import threading

import smartpool


@smartpool.cpu_bound
def crunch(n: int, *, scale: int = 1) -> tuple[int, int]:
    """Square n, scaled; return it with the pid that computed it."""
    return n * n * scale, os.getpid()


@smartpool.io_bound(max_workers=8)
def fetch(key: str) -> tuple[str, int, int]:
    """Upper-case key; return it with the pid and thread that ran it."""
    return key.upper(), os.getpid(), threading.get_ident()
