"""The messages between the caller and a worker: each decodes to what was encoded, and a chunk's
outcome survives the trip (values, errors, retries, what could not be pickled or unpickled)."""

from __future__ import annotations

import os
import pickle
import sys
import threading

import pytest

from smartpool import SerializationError
from smartpool._process import protocol
from smartpool._process.protocol import Chunk, Init, Reply
from smartpool._transport.serialize import dump_function, dump_items, dumps, loads
from smartpool._work.task import ChunkResult, RetryPolicy


def _square(x: int) -> int:
    return x * x


# -- init ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sync_state", [None, {("module", "lock"): ("Lock", b"state")}])
def test_init_round_trip(sync_state: object) -> None:
    init = Init(["/a", "/b"], "/tmp", sync_state)
    assert protocol.decode_init(protocol.encode_init(init)) == init


def test_init_of_this_process() -> None:
    init = protocol.decode_init(protocol.encode_init(protocol.current_init()))
    assert init.sys_path == sys.path
    assert init.cwd == os.getcwd()


def test_init_entries_of_the_wrong_type_are_left_out() -> None:
    data = pickle.dumps({"sys_path": ["/ok", 3, None], "cwd": 7})
    assert protocol.decode_init(data) == Init(["/ok"], None, None)
    assert protocol.decode_init(pickle.dumps({})) == Init(None, None, None)


# -- chunk ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_function", [True, False])
@pytest.mark.parametrize("retries", [0, 2])
@pytest.mark.parametrize("buffer_paths", [(), ("/dev/shm/a", "/dev/shm/b")])
def test_chunk_round_trip(with_function: bool, retries: int, buffer_paths: tuple[str, ...]) -> None:
    chunk = Chunk(
        fn_key=12,
        fn_bytes=dump_function(_square) if with_function else b"",
        start=40,
        retry_bytes=dumps(RetryPolicy(retries=retries)) if retries else b"",
        items_bytes=dump_items([1, 2, 3], 40),
        buffer_paths=buffer_paths,
    )
    decoded = protocol.decode_chunk(protocol.encode_chunk(chunk))
    assert decoded == chunk
    assert loads(decoded.items_bytes) == [1, 2, 3]
    if with_function:
        assert loads(decoded.fn_bytes)(7) == 49
    if retries:
        assert loads(decoded.retry_bytes) == RetryPolicy(retries=retries)


# -- reply ---------------------------------------------------------------------------------------


def _round_trip(result: ChunkResult, let_go: bool = False) -> tuple[ChunkResult, Reply]:
    """``result`` as the worker sends it, and as the caller reads it back."""
    reply = protocol.reply_for(result)._replace(let_go=let_go)
    decoded = protocol.decode_reply(protocol.encode_reply(reply))
    assert decoded == reply
    return protocol.result_of(decoded, result.start, lambda: "items 4..6"), decoded


@pytest.mark.parametrize("let_go", [True, False])
@pytest.mark.parametrize("retried", [0, 3])
def test_reply_round_trip(let_go: bool, retried: int) -> None:
    result = ChunkResult(4, [16, 25, 36], None, 0.5, "process 1, thread 'x'", 0.25, retried, 0.2)
    back, reply = _round_trip(result, let_go)
    assert back == result
    assert reply.let_go is let_go
    assert back.queued_seconds == 0.2  # the worker's time queued for a core reaches the caller


def test_reply_round_trip_with_an_error() -> None:
    result = ChunkResult(4, [16], ValueError("bad item"), 0.5, "w", 0.25, 1)
    back, _ = _round_trip(result)
    assert (back.start, back.values, back.retried) == (4, [16], 1)
    assert (back.seconds, back.cpu_seconds, back.worker) == (0.5, 0.25, "w")
    assert isinstance(back.error, ValueError) and back.error.args == ("bad item",)
    assert back.error_index == 5


def test_a_value_that_cannot_be_pickled_cuts_the_values_and_becomes_the_error() -> None:
    result = ChunkResult(4, [16, threading.Lock(), 36], None, 0.5, "w")
    back, _ = _round_trip(result)
    assert back.values == [16]
    assert isinstance(back.error, SerializationError)
    assert back.error_index == 5


class _Unloadable:
    """Pickles fine, fails to unpickle (as a class missing in the caller would)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _fail, ()


def _fail() -> None:
    raise RuntimeError("cannot be rebuilt here")


def test_results_that_cannot_be_unpickled_in_the_caller_become_the_error() -> None:
    result = ChunkResult(4, [16, _Unloadable()], None, 0.5, "w", 0.25)
    back, _ = _round_trip(result)
    assert back.values == []
    assert isinstance(back.error, SerializationError)
    assert "the results of items 4..6 could not be unpickled in the caller" in str(back.error)
    assert isinstance(back.error.__cause__, RuntimeError)


def test_messages_travel_as_plain_tuples() -> None:
    """No class of this module on the wire: a message is as cheap to pickle as its fields."""
    chunk = Chunk(1, b"f", 0, b"", b"i", ())
    reply = Reply(0.5, 0.25, "w", b"v", b"", 0, True)
    assert type(pickle.loads(protocol.encode_chunk(chunk))) is tuple
    assert type(pickle.loads(protocol.encode_reply(reply))) is tuple
