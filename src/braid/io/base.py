"""The driver interfaces the runtime needs, and the one driver error type.

Both are deliberately the shape of what the kernel already gives us, so the real
drivers cost nothing on the hot path: a `DatagramEndpoint` is any object with the
non-blocking datagram methods of `socket.socket` (a real UDP socket satisfies it
as is), and a `PacketDevice` is a non-blocking packet file such as a TUN device.

Non-blocking convention (as for sockets): `read()`/`recv()`/`recvfrom()` raise
`BlockingIOError` when nothing is waiting; they never block. The in-memory fakes
in `braid.io.memory` follow the same interfaces and conventions, including a real
file descriptor that becomes readable when data is waiting, so the runtime can
wait on them with `loop.add_reader` exactly as on the real drivers.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: A socket address as returned by `recvfrom()`: `(host, port)` for IPv4 and
#: `(host, port, flowinfo, scope_id)` for IPv6.
Address = Any

#: The largest datagram or packet the drivers read in one call.
MAX_DATAGRAM_BYTES = 65535


class DriverError(Exception):
    """A driver could not be set up; the message is one line naming what and how to fix it."""


@runtime_checkable
class PacketDevice(Protocol):
    """A layer-3 packet device (a TUN device or a fake): one inner IP packet per read/write."""

    @property
    def name(self) -> str:
        """The interface name."""
        ...

    @property
    def mtu(self) -> int:
        """The device MTU in bytes."""
        ...

    def fileno(self) -> int:
        """A file descriptor that is readable while packets are waiting."""
        ...

    def read(self) -> bytes:
        """Return the next packet; raise `BlockingIOError` when none is waiting."""
        ...

    def write(self, packet: bytes, /) -> int:
        """Hand one IP packet to the system; raise `OSError` if it refuses it."""
        ...

    def close(self) -> None:
        """Release the device (a real TUN device disappears with its routes)."""
        ...


@runtime_checkable
class DatagramEndpoint(Protocol):
    """A non-blocking datagram socket; `socket.socket` satisfies this as is."""

    def fileno(self) -> int:
        """A file descriptor that is readable while datagrams are waiting."""
        ...

    def send(self, data: bytes, /) -> int:
        """Send to the connected peer; raise `OSError` (e.g. `BlockingIOError`) on failure."""
        ...

    def sendto(self, data: bytes, address: Address, /) -> int:
        """Send to `address`; raise `OSError` (e.g. `BlockingIOError`) on failure."""
        ...

    def recv(self, bufsize: int, /) -> bytes:
        """Return the next datagram; raise `BlockingIOError` when none is waiting."""
        ...

    def recvfrom(self, bufsize: int, /) -> tuple[bytes, Address]:
        """Return `(datagram, source address)`; raise `BlockingIOError` when none is waiting."""
        ...

    def getsockname(self) -> Address:
        """The local address the endpoint is bound to."""
        ...

    def close(self) -> None:
        """Close the endpoint."""
        ...
