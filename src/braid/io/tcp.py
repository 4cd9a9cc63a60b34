"""TCP paths: braid datagrams as length-prefixed frames over one TCP connection.

For networks that block UDP. Every braid datagram travels as a 2-byte big-endian length
followed by the datagram (docs/protocol.md). The price is head-of-line blocking: a lost
TCP segment holds back every later frame on that path until TCP has retransmitted it,
and TCP's own congestion control runs under braid's pacer (docs/design.md).

- `FrameStream`: frames over one connected, non-blocking stream socket; sends are
  buffered (bounded: beyond `TX_LIMIT` bytes a frame is dropped and counted, as a full
  UDP socket buffer would drop a datagram) and flushed on every send and receive.
- `TcpPathEndpoint`: the local portal's side, a `DatagramEndpoint` (send/recv whole
  datagrams) over a non-blocking connect to the remote portal, pinned like a UDP path.
  A closed or failed connection raises `StreamClosed` (an `OSError`) from `recv`; the
  portal opens a new one.
- `open_tcp_listener`: the remote portal's listening socket.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Final, NamedTuple

from braid.io.base import DriverError

FRAME_HEADER: Final = struct.Struct("!H")
MAX_FRAME: Final = 0xFFFF
TX_LIMIT: Final = 4 * 1024 * 1024
"""Bytes a stream may hold unsent before frames are dropped (about 1 s at 32 Mbit/s)."""
RX_CHUNK: Final = 256 * 1024


class StreamClosed(ConnectionError):
    """The TCP connection of a path ended (EOF, reset, or a frame that cannot be)."""


class TcpAddress(NamedTuple):
    """The peer of a TCP path at the remote portal (a datagram source address)."""

    host: str
    port: int
    transport: str = "tcp"


class FrameStream:
    """Length-prefixed frames over one non-blocking stream socket."""

    __slots__ = ("_rx", "_tx", "closed", "dropped", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._rx = bytearray()
        self._tx = bytearray()
        self.closed = False
        self.dropped = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def send_frame(self, data: bytes) -> int:
        """Queue one frame and flush what the socket takes; raise `StreamClosed` if the
        connection is gone, `BlockingIOError` if the frame was dropped (buffer full)."""
        if self.closed:
            raise StreamClosed(errno.EPIPE, "the path's TCP connection is closed")
        size = len(data)
        if not 0 < size <= MAX_FRAME:
            raise OSError(errno.EMSGSIZE, "a braid datagram is 1..65535 bytes")
        if len(self._tx) > TX_LIMIT:
            self.dropped += 1
            self.flush()
            raise BlockingIOError(errno.EAGAIN, "the path's TCP send buffer is full")
        self._tx += FRAME_HEADER.pack(size)
        self._tx += data
        self.flush()
        return size

    def flush(self) -> None:
        """Write what the socket accepts now."""
        tx = self._tx
        while tx and not self.closed:
            try:
                sent = self.sock.send(tx)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ENOTCONN, errno.EALREADY, errno.EINPROGRESS):
                    return  # still connecting
                self.closed = True
                raise StreamClosed(exc.errno or errno.EPIPE, str(exc)) from None
            del tx[:sent]

    def read_frames(self) -> list[bytes]:
        """The whole frames received so far; raise `StreamClosed` once the peer is gone
        (after the frames that did arrive were returned by earlier calls)."""
        if self.closed:
            raise StreamClosed(errno.EPIPE, "the path's TCP connection is closed")
        rx = self._rx
        eof = False
        while True:
            try:
                chunk = self.sock.recv(RX_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOTCONN:
                    break
                self.closed = True
                raise StreamClosed(exc.errno or errno.ECONNRESET, str(exc)) from None
            if not chunk:
                eof = True
                break
            rx += chunk
            if len(chunk) < RX_CHUNK:
                break
        frames: list[bytes] = []
        start = 0
        end = len(rx)
        while end - start >= 2:
            (size,) = FRAME_HEADER.unpack_from(rx, start)
            if size == 0:
                self.closed = True
                raise StreamClosed(errno.EPROTO, "an empty frame: not a braid TCP path")
            if end - start - 2 < size:
                break
            frames.append(bytes(rx[start + 2 : start + 2 + size]))
            start += 2 + size
        if start:
            del rx[:start]
        if self._tx:
            self.flush()
        if eof and not frames:
            self.closed = True
            raise StreamClosed(errno.ECONNRESET, "the peer closed the path's TCP connection")
        if eof:
            self.closed = True  # the next call reports it
        return frames

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class TcpPathEndpoint:
    """A local portal's TCP path, as a datagram endpoint (see the module doc)."""

    __slots__ = ("_pending", "_stream", "remote")

    def __init__(self, sock: socket.socket, remote: tuple[str, int]) -> None:
        self._stream = FrameStream(sock)
        self._pending: list[bytes] = []
        self.remote = remote

    def fileno(self) -> int:
        return self._stream.fileno()

    def send(self, data: bytes, /) -> int:
        return self._stream.send_frame(data)

    def sendto(self, data: bytes, address: object, /) -> int:
        return self._stream.send_frame(data)

    def recv(self, bufsize: int, /) -> bytes:
        pending = self._pending
        if not pending:
            pending.extend(self._stream.read_frames())
            if not pending:
                raise BlockingIOError(errno.EAGAIN, "no whole frame yet")
        return pending.pop(0)

    def recvfrom(self, bufsize: int, /) -> tuple[bytes, object]:
        return self.recv(bufsize), self.remote

    def getsockname(self) -> object:
        return self._stream.sock.getsockname()

    def close(self) -> None:
        self._stream.close()


def open_tcp_path(
    *,
    remote: tuple[str, int],
    interface: str | None = None,
    source: str | None = None,
    link: str | None = None,
) -> TcpPathEndpoint:
    """Start a non-blocking TCP connection to `remote`, pinned to `interface` and/or
    `source` like a UDP path; frames sent before it is established wait in its buffer.
    Raises `DriverError` with one line naming the link and the fix."""
    label = f"link {link}" if link else "TCP path"
    host, port = remote
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DriverError(f"{label}: cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if interface:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            except OSError as exc:
                raise DriverError(
                    f"{label}: cannot pin to interface {interface!r}: {exc.strerror}"
                ) from None
        if source:
            try:
                sock.bind((source, 0))
            except OSError as exc:
                raise DriverError(f"{label}: cannot bind source {source}: {exc.strerror}") from None
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err not in (0, errno.EINPROGRESS):
            raise DriverError(
                f"{label}: cannot connect to {host}:{port}: {errno.errorcode.get(err, err)}"
            )
    except BaseException:
        sock.close()
        raise
    return TcpPathEndpoint(sock, (str(sockaddr[0]), int(sockaddr[1])))


def open_tcp_listener(address: str, port: int) -> socket.socket:
    """A non-blocking TCP listening socket for TCP paths (the remote portal)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise DriverError(
            f"listen: cannot listen for TCP paths on {address}:{port}: {exc.strerror}"
        ) from None
    return sock
