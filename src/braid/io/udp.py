"""UDP path sockets: one per link, pinned to it; and the remote portal's listening socket.

A path socket is pinned to its link by `SO_BINDTODEVICE` (the interface) and/or
by binding to the link's source address, then connected to the remote portal,
so its datagrams leave by the intended link whatever the main routing table
says, and only the remote portal's datagrams are received on it. All sockets
are non-blocking with enlarged kernel buffers (so a burst does not overflow
them between two wakeups of the event loop).

Batching (issue 9, docs/performance.md): `SegmentSender` sends runs of same-sized
datagrams in one system call with UDP GSO (UDP_SEGMENT); `SegmentReceiver` reads
coalesced runs with UDP GRO. Both fall back to one datagram per call where the socket,
kernel or device cannot; ``BRAID_UDP_GSO=0`` turns both off (for A/B measurements).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

from braid.io.base import DriverError

#: Largest receive: a coalesced (GRO) run is at most one 64 KB IP packet.
MAX_RECEIVE_BYTES = 65535
#: Kernel buffer size requested for every socket (the kernel may clamp it).
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def _family_of(host: str) -> socket.AddressFamily | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _set_buffers(sock: socket.socket, size: int) -> None:
    """Enlarge the send and receive buffers: forced (root) if possible, else up to the limit."""
    for forced, plain in (
        (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF),
        (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF),
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, size)


_PMTUDISC_PROBE = 3  # IP_PMTUDISC_PROBE / IPV6_PMTUDISC_PROBE (linux/in.h, in6.h)
_IP_MTU_DISCOVER = 10  # (not exported by the socket module)
_IPV6_MTU_DISCOVER = 23


def _set_dont_fragment(sock: socket.socket) -> None:
    """issue 7: every datagram leaves with DF and never in IP fragments; the session finds
    each path's MTU by probing (an ICMP-lowered route MTU is ignored, not trusted)."""
    with contextlib.suppress(OSError):
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _PMTUDISC_PROBE)
            # (an IPv6 socket that also carries IPv4: the IPv4 option too)
            sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _PMTUDISC_PROBE)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _PMTUDISC_PROBE)


def _endpoint_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _resolve(label: str, host: str, port: int, family: int) -> tuple[int, tuple[str, int]]:
    """Resolve `host` (a literal or a name) to one (family, sockaddr) of `family` (0: any)."""
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    except socket.gaierror as exc:
        raise DriverError(
            f"{label}: cannot resolve remote {host!r}: {exc.strerror}; use an IP address"
            " or a resolvable name"
        ) from None
    info = infos[0]
    return info[0], (str(info[4][0]), int(info[4][1]))


def open_path_socket(
    *,
    remote: tuple[str, int],
    interface: str | None = None,
    source: str | None = None,
    source_port: int = 0,
    link: str | None = None,
    buffer_bytes: int = SOCKET_BUFFER_BYTES,
) -> socket.socket:
    """Open a non-blocking UDP socket pinned to one link and connected to `remote`.

    `interface` pins with SO_BINDTODEVICE (needs root); `source` binds the local
    address (and `source_port`). `link` names the link in error messages. IPv4
    and IPv6 both work; with a `source`, the remote is resolved in its family.
    Raises `DriverError` with one line naming the link and the fix.
    """
    label = f"link {link}" if link else "path socket"
    host, port = remote
    family = _family_of(source) if source else 0
    if source and family is None:
        raise DriverError(f"{label}: source {source!r} is not an IP address")
    family, sockaddr = _resolve(label, host, port, family or 0)
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    _set_dont_fragment(sock)
    try:
        if interface:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    raise DriverError(
                        f"{label}: interface {interface!r} does not exist; check the link's"
                        " interface (ip link)"
                    ) from None
                if exc.errno == errno.EPERM:
                    raise DriverError(
                        f"{label}: not permitted to bind to interface {interface!r};"
                        " run as root (CAP_NET_RAW)"
                    ) from None
                raise DriverError(
                    f"{label}: cannot bind to interface {interface!r}: {exc.strerror}"
                ) from None
        if source or source_port:
            bind_host = source or ("::" if family == socket.AF_INET6 else "0.0.0.0")
            try:
                sock.bind((bind_host, source_port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise DriverError(
                        f"{label}: source address {bind_host} is not an address of this host;"
                        " check the link's source (ip addr)"
                    ) from None
                if exc.errno == errno.EADDRINUSE:
                    raise DriverError(
                        f"{label}: source {_endpoint_text(bind_host, source_port)} is already"
                        " in use; choose another port"
                    ) from None
                raise DriverError(
                    f"{label}: cannot bind {_endpoint_text(bind_host, source_port)}: {exc.strerror}"
                ) from None
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            via = f" via {interface}" if interface else ""
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                raise DriverError(
                    f"{label}: no route to {_endpoint_text(*sockaddr)}{via}; check the link's"
                    " addresses and routes"
                ) from None
            raise DriverError(
                f"{label}: cannot reach {_endpoint_text(*sockaddr)}{via}: {exc.strerror}"
            ) from None
        sock.setblocking(False)
        _set_buffers(sock, buffer_bytes)
    except BaseException:
        sock.close()
        raise
    return sock


def open_listen_socket(
    address: str,
    port: int,
    *,
    interface: str | None = None,
    buffer_bytes: int = SOCKET_BUFFER_BYTES,
) -> socket.socket:
    """Open the remote portal's non-blocking UDP socket bound to `address`:`port`.

    An IPv6 wildcard (`::`) also accepts IPv4 (dual stack). Raises `DriverError`.
    """
    family = _family_of(address)
    label = f"listen {_endpoint_text(address, port)}"
    if family is None:
        raise DriverError(f"{label}: {address!r} is not an IP address")
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    _set_dont_fragment(sock)
    try:
        if family == socket.AF_INET6 and ipaddress.ip_address(address).is_unspecified:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if interface:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            except OSError as exc:
                raise DriverError(
                    f"{label}: cannot bind to interface {interface!r}: {exc.strerror}"
                ) from None
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DriverError(
                    f"{label}: the port is already in use; stop the other process or change"
                    " listen.port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise DriverError(
                    f"{label}: {address} is not an address of this host; use one of its"
                    " addresses or 0.0.0.0"
                ) from None
            if exc.errno == errno.EACCES:
                raise DriverError(
                    f"{label}: not permitted to use port {port}; run as root or use a port >= 1024"
                ) from None
            raise DriverError(f"{label}: cannot bind: {exc.strerror}") from None
        sock.setblocking(False)
        _set_buffers(sock, buffer_bytes)
    except BaseException:
        sock.close()
        raise
    return sock


#: Linux UDP socket options (linux/udp.h); older Pythons' socket module does not name them.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
#: Most datagrams one GSO send carries (the kernel's UDP_MAX_SEGMENTS is 64 or more).
GSO_MAX_SEGMENTS = 64
#: Most bytes one GSO send carries (the whole must fit one IP packet).
GSO_MAX_BYTES = 65_000
#: Environment switch: ``BRAID_UDP_GSO=0`` sends one datagram per system call (for A/B runs).
GSO_ENV = "BRAID_UDP_GSO"
# Errors that say "this socket, route or device cannot do UDP GSO" (EIO: no checksum
# offload on the device): GSO is turned off for good and the datagrams are sent one by one.
_GSO_UNSUPPORTED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})


def gso_enabled_by_environment() -> bool:
    """False when the environment turns UDP GSO off (``BRAID_UDP_GSO=0``)."""
    return os.environ.get(GSO_ENV, "1").strip() not in ("0", "no", "off", "false")


class SegmentSender:
    """Sends a batch of datagrams to one destination in few system calls with UDP GSO.

    Consecutive datagrams of one size (the last of such a run may be shorter) leave in one
    `sendmsg` carrying UDP_SEGMENT = that size; the kernel, or the NIC, cuts the run into
    exactly the same datagrams on the wire, in order. Endpoints without `sendmsg` (the
    in-memory ones) and single datagrams take one `send`/`sendto` each. The first refusal
    that means "no GSO here" turns GSO off for this sender; the datagrams are then sent
    one by one, so nothing is lost to the attempt.
    """

    __slots__ = ("enabled", "gso_datagrams", "gso_sends")

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.gso_sends = 0
        self.gso_datagrams = 0

    def send(self, endpoint: Any, datagrams: Sequence[bytes], address: Any = None) -> int:
        """Send `datagrams` in order to the endpoint's peer (or `address`); return drops."""
        sendmsg = getattr(endpoint, "sendmsg", None) if self.enabled else None
        count = len(datagrams)
        if sendmsg is None or count < 2:
            return _send_each(endpoint, datagrams, address)
        errors = 0
        start = 0
        while start < count:
            size = len(datagrams[start])
            limit = min(count, start + GSO_MAX_SEGMENTS, start + GSO_MAX_BYTES // max(size, 1))
            end = start + 1
            while end < limit and len(datagrams[end]) == size:
                end += 1
            if end < limit and len(datagrams[end]) < size:
                end += 1  # a shorter datagram may end the run
            if end - start == 1:
                errors += _send_each(endpoint, datagrams[start:end], address)
                start = end
                continue
            run = datagrams[start:end]
            ancillary = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
            try:
                if address is None:
                    sendmsg(run, ancillary)
                else:
                    sendmsg(run, ancillary, 0, address)
            except OSError as exc:
                if exc.errno in _GSO_UNSUPPORTED:
                    self.enabled = False
                    return errors + _send_each(endpoint, datagrams[start:], address)
                errors += end - start  # a full buffer or an unreachable peer: all dropped
            else:
                self.gso_sends += 1
                self.gso_datagrams += end - start
            start = end
        return errors


def _send_each(endpoint: Any, datagrams: Sequence[bytes], address: Any) -> int:
    errors = 0
    if address is None:
        send = endpoint.send
        for data in datagrams:
            try:
                send(data)
            except OSError:
                errors += 1
    else:
        sendto = endpoint.sendto
        for data in datagrams:
            try:
                sendto(data, address)
            except OSError:
                errors += 1
    return errors


#: Linux UDP socket option: receive coalesced runs of same-sized datagrams (linux/udp.h).
UDP_GRO = getattr(socket, "UDP_GRO", 104)
_GRO_ANCILLARY = socket.CMSG_SPACE(4)  # one int: the size of the coalesced datagrams


class SegmentReceiver:
    """Receives from a socket with UDP GRO on: one system call, up to 64 KB of datagrams.

    The kernel coalesces consecutive same-sized datagrams of one flow (a GSO send, or
    packets merged on arrival) and says their size in a UDP_GRO control message;
    `receive` cuts the buffer back into those datagrams, in order. Use `enable` to turn
    GRO on for a socket and get a receiver, or None if the socket or kernel cannot.
    """

    __slots__ = ("_recvmsg", "coalesced")

    def __init__(self, sock: socket.socket) -> None:
        self._recvmsg = sock.recvmsg
        self.coalesced = 0

    @classmethod
    def enable(cls, endpoint: Any) -> SegmentReceiver | None:
        """Turn UDP GRO on for a real UDP socket; None for other endpoints or on refusal."""
        if not isinstance(endpoint, socket.socket) or endpoint.type != socket.SOCK_DGRAM:
            return None
        try:
            endpoint.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
        except OSError:
            return None
        return cls(endpoint)

    def receive(self) -> tuple[list[bytes], Any]:
        """The next datagrams (one or a coalesced run) and their source address.

        Raises what `recvmsg` raises (BlockingIOError when nothing is waiting).
        """
        data, ancillary, _flags, address = self._recvmsg(MAX_RECEIVE_BYTES, _GRO_ANCILLARY)
        for level, kind, value in ancillary:
            if level == socket.SOL_UDP and kind == UDP_GRO and len(value) >= 2:
                size = int.from_bytes(value[:4], sys.byteorder) if len(value) >= 4 else 0
                if 0 < size < len(data):
                    self.coalesced += 1
                    return [data[i : i + size] for i in range(0, len(data), size)], address
        return [data], address
