"""The interpreter backend's side inside each subinterpreter: run a chunk, check a function.

Kept apart from :mod:`~smartpool._backends.interpreter` (the caller's side) so that what every
new interpreter imports stays small. Everything crosses ``Interpreter.call`` as bytes.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from .._process.step_sender import StepSender
from .._transport.remote import add_note
from .._transport.serialize import loads
from .._work.setup import WorkerSlot
from .._work.task import NO_RETRY, ChunkResult, RetryPolicy, describe_worker

#: Functions an interpreter keeps unpickled, by key, most recently used last.
FUNCTION_CACHE_SIZE = 8

_functions: OrderedDict[int, Callable[[Any], Any]] = OrderedDict()
_applied: list[bytes] = [b""]


def run_here(
    init: bytes,
    fn_key: int,
    fn_bytes: bytes,
    start: int,
    retry_bytes: bytes,
    items: bytes,
    setup: bytes = b"",
    steps: Any = None,
    step_key: int = 0,
) -> bytes:
    """Run one chunk in this (sub)interpreter and return its reply, as a worker process does.

    Called by reference through ``Interpreter.call``; everything crosses as bytes. ``init`` is
    the caller's import path and module-level shared objects (a worker process's init message),
    applied when it changed since the last chunk. ``setup`` is the pool's pickled
    ``WorkerSetup``, whose initializer runs once in this interpreter before its first chunk.
    ``steps``, a ``concurrent.interpreters`` queue, takes ``(step_key, message)`` pairs: the
    steps the function reports, then ``(step_key, b"")`` once the chunk is over.
    """
    from .._process import protocol
    from .._work.task import run_chunk

    result: ChunkResult
    try:
        _apply(init)
        slot = _slot(setup)
        fn = _functions.get(fn_key)
        if fn is None:
            fn = _functions[fn_key] = loads(fn_bytes)
            while len(_functions) > FUNCTION_CACHE_SIZE:
                _functions.popitem(last=False)
        _functions.move_to_end(fn_key)
        retry: RetryPolicy = loads(retry_bytes) if retry_bytes else NO_RETRY
        values = loads(items)
    except BaseException as exc:
        note = "smartpool: the function or items could not be unpickled in a subinterpreter"
        if isinstance(exc, ImportError) and "subinterpreters" in str(exc):
            note += " (an extension module that does not support them; use backend='process')"
        add_note(exc, note)
        result = ChunkResult(start, [], exc, 0.0, describe_worker())
    else:
        sender = None if steps is None else StepSender(_QueueSink(steps, step_key))
        try:
            with sender or nullcontext(), slot.running() as failed:
                if failed is not None:
                    result = ChunkResult(start, [], failed, 0.0, describe_worker())
                else:
                    result = run_chunk(fn, values, start, retry)
        finally:
            if steps is not None:
                steps.put((step_key, b""))  # the chunk's steps are all sent
    return protocol.encode_reply(protocol.reply_for(result))


class _QueueSink:
    """Where a chunk's :class:`StepSender` writes: the caller's queue, tagged with its key."""

    def __init__(self, steps: Any, key: int) -> None:
        self._steps, self._key = steps, key

    def send_bytes(self, data: bytes) -> None:
        self._steps.put((self._key, data))


#: This interpreter's worker slot (its ``worker_state()`` and initializer), and the pickled
#: setup it was made for.
_slots: list[tuple[bytes, WorkerSlot]] = []


def _slot(setup: bytes) -> WorkerSlot:
    """The slot for ``setup``: made (unpickling the initializer) on the first chunk, or anew
    if a pool with another setup reuses this interpreter (it does not: such pools are
    private)."""
    if _slots and _slots[0][0] == setup:
        return _slots[0][1]
    made = WorkerSlot(loads(setup) if setup else None)
    _slots[:] = [(setup, made)]
    return made


def _apply(init: bytes) -> None:
    """Take the caller's import path and shared objects, unless already taken."""
    if init == _applied[0]:
        return
    from .._process import protocol
    from .._work import context

    context.mark_worker_process()  # nested calls run here; KeyboardInterrupt is the fn's
    state = protocol.decode_init(init)
    if state.sys_path is not None:
        sys.path[:] = state.sys_path
    if state.sync_state:
        from .. import _sync

        _sync.install_state(state.sync_state)
    _applied[0] = init


def loads_here(init: bytes, fn_bytes: bytes) -> bool:
    """Whether the function (and what importing it imports) loads in this interpreter."""
    try:
        _apply(init)
        loads(fn_bytes)
    except Exception:
        return False
    return True
