"""The message channel between the caller and a worker: whole messages, EOF, readiness."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from smartpool._process.channel import Channel, wait


def pair() -> tuple[Channel, Channel]:
    a, b = socket.socketpair()
    return Channel(a.detach()), Channel(b.detach())


@pytest.mark.parametrize("size", [0, 1, 65_536, 5_000_003])
def test_messages_arrive_whole(size: int) -> None:
    left, right = pair()
    payload = os.urandom(size)
    # A message larger than the socket buffer needs a reader while it is written.
    sender = threading.Thread(target=left.send_bytes, args=(payload,))
    sender.start()
    assert bytes(right.recv_bytes()) == payload
    sender.join()
    left.send_bytes(b"next")
    assert bytes(right.recv_bytes()) == b"next"


def test_closed_peer_is_eof_between_and_within_messages() -> None:
    left, right = pair()
    left.close()
    with pytest.raises(EOFError):
        right.recv_bytes()
    a, b = socket.socketpair()
    a.sendall((100).to_bytes(8, "big") + b"only part of it")
    a.close()
    with pytest.raises(EOFError, match="mid-message"):
        Channel(b.detach()).recv_bytes()


def test_wait_reports_readable_and_hung_up_ends_and_honours_its_timeout() -> None:
    left, right = pair()
    other_left, other_right = pair()
    r, w = os.pipe()
    try:
        assert wait([right, other_right, r], 0.01) == []
        left.send_bytes(b"x")
        os.write(w, b"!")
        assert set(map(id, wait([right, other_right, r], 5))) == {id(right), id(r)}
        other_left.close()  # a dead worker: its end hangs up, and reading it is EOF
        assert other_right in wait([other_right], 5)
        with pytest.raises(EOFError):
            other_right.recv_bytes()
    finally:
        os.close(r)
        os.close(w)


def test_a_closed_channel_says_so() -> None:
    left, _ = pair()
    left.close()
    left.close()  # twice is fine
    with pytest.raises(OSError, match="closed"):
        left.send_bytes(b"x")
