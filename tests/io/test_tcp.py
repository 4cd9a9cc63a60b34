"""TCP path framing (braid.io.tcp) over real sockets."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from braid.io.tcp import (
    FrameStream,
    StreamClosed,
    TcpPathEndpoint,
    open_tcp_listener,
    open_tcp_path,
)


def _pair() -> tuple[FrameStream, socket.socket]:
    a, b = socket.socketpair()
    return FrameStream(a), b


def test_frames_survive_arbitrary_splits() -> None:
    stream, peer = _pair()
    frames = [bytes([i]) * (1 + i * 37) for i in range(40)]
    wire = b"".join(len(f).to_bytes(2, "big") + f for f in frames)
    got: list[bytes] = []
    for start in range(0, len(wire), 7):  # 7-byte pieces: headers and bodies split
        peer.send(wire[start : start + 7])
        time.sleep(0.0005)
        got += stream.read_frames()
    got += stream.read_frames()
    assert got == frames
    stream.close()
    peer.close()


def test_send_frame_length_prefixes_and_eof_is_reported() -> None:
    stream, peer = _pair()
    stream.send_frame(b"hello")
    stream.send_frame(b"x" * 1400)
    data = peer.recv(4096)
    assert data[:7] == b"\x00\x05hello" and data[7:9] == (1400).to_bytes(2, "big")
    with pytest.raises(OSError):
        stream.send_frame(b"")  # a braid datagram is never empty
    peer.close()
    with pytest.raises(StreamClosed):
        for _ in range(3):
            stream.read_frames()
    with pytest.raises(StreamClosed):
        stream.send_frame(b"late")
    stream.close()


def test_an_empty_frame_is_not_braid() -> None:
    stream, peer = _pair()
    peer.send(b"\x00\x00garbage")
    with pytest.raises(StreamClosed):
        stream.read_frames()
    stream.close()
    peer.close()


def test_path_endpoint_and_listener_round_trip() -> None:
    listener = open_tcp_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    path = open_tcp_path(remote=("127.0.0.1", port), link="t")
    assert isinstance(path, TcpPathEndpoint)
    path.send(b"before the connection is up")  # buffered until it is
    listener.setblocking(True)
    conn, _ = listener.accept()
    server = FrameStream(conn)
    path.send(b"second")
    got: list[bytes] = []
    deadline = time.monotonic() + 2
    while len(got) < 2 and time.monotonic() < deadline:
        got += server.read_frames()
        with contextlib.suppress(BlockingIOError):  # (the endpoint flushes on receive)
            path.recv(2048)
        time.sleep(0.01)
    assert got == [b"before the connection is up", b"second"]
    server.send_frame(b"reply")
    deadline = time.monotonic() + 2
    while True:
        try:
            assert path.recv(2048) == b"reply"
            break
        except BlockingIOError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    path.close()
    server.close()
    listener.close()
