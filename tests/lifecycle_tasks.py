"""Functions for the lifecycle tests, importable by worker processes (see test_lifecycle.py)."""

from __future__ import annotations

import os
import threading
from collections import Counter

import smartpool

#: Initializer runs per (process id, thread id, token), in the process that ran them; tests give
#: each call a token of its own (thread ids are reused once a thread ends).
INITS: Counter[tuple[int, int, str]] = Counter()


def worker_id() -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


def set_up(token: str) -> None:
    """An initializer that counts its runs in this worker and leaves a token in its state."""
    key = (*worker_id(), token)
    INITS[key] += 1
    state = smartpool.worker_state()
    state["token"] = token
    state["inits"] = INITS[key]


def report(_: object) -> tuple[int, int, object, object, int]:
    """(process id, thread id, token, initializer runs here, id of this worker's state)."""
    state = smartpool.worker_state()
    pid, tid = worker_id()
    return pid, tid, state.get("token"), state.get("inits"), id(state)


class SetupFailed(Exception):
    pass


def fail_setup() -> None:
    raise SetupFailed("cannot connect")


def pid_of(_: object) -> int:
    return os.getpid()
