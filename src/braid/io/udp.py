"""UDP path sockets: one per link, pinned to it; and the remote portal's listening socket.

A path socket is pinned to its link by `SO_BINDTODEVICE` (the interface) and/or
by binding to the link's source address, then connected to the remote portal,
so its datagrams leave by the intended link whatever the main routing table
says, and only the remote portal's datagrams are received on it. All sockets
are non-blocking with enlarged kernel buffers (so a burst does not overflow
them between two wakeups of the event loop).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket

from braid.io.base import DriverError

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
