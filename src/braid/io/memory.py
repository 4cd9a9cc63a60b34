"""In-memory drivers with the interfaces of the real ones, for runtime tests.

- `MemoryTun`: a `PacketDevice` whose packets a test injects (`inject`) and
  collects (`collect`); it is one end of a kernel `AF_UNIX` datagram socketpair,
  so it has real non-blocking semantics and a pollable file descriptor.
- `MemoryNetwork` + `MemoryEndpoint`: a datagram network joining fake sockets by
  address. Delivery is immediate (in the sender's call), per-endpoint queues are
  bounded (overflow is dropped, as a kernel receive buffer would), and a test can
  cut an address off (`cut`/`restore`: its datagrams vanish both ways, so the
  tunnel sees silence) or install a `drop` hook for finer control. Each endpoint
  owns an eventfd that is readable while its queue is non-empty, so the runtime
  waits on it with `loop.add_reader` exactly as on a real socket.

Invariant: an endpoint's eventfd is readable if and only if its queue is
non-empty (it is signalled on the empty -> non-empty transition and cleared when
a receive empties the queue).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from braid.io.base import MAX_DATAGRAM_BYTES, Address, DatagramEndpoint, PacketDevice

__all__ = [
    "DatagramEndpoint",
    "MemoryEndpoint",
    "MemoryNetwork",
    "MemoryTun",
    "NetworkStatistics",
    "PacketDevice",
]

#: Datagrams queued per endpoint before further arrivals are dropped.
ENDPOINT_QUEUE_LIMIT = 8192

#: The hook type of `MemoryNetwork.drop`: (source, destination, datagram) -> drop it?
DropHook = Callable[[tuple[str, int], tuple[str, int], bytes], bool]


class MemoryTun:
    """A fake TUN device: the runtime reads/writes one side, the test the other."""

    def __init__(self, name: str = "mem0", *, mtu: int = 1400) -> None:
        self._name = name
        self._mtu = mtu
        self._device, self._peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for end in (self._device, self._peer):
            end.setblocking(False)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.injected = 0
        self.collected = 0

    # -- the device side (PacketDevice) -----------------------------------------

    @property
    def name(self) -> str:
        """The fake interface name."""
        return self._name

    @property
    def mtu(self) -> int:
        """The fake device MTU."""
        return self._mtu

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._device.fileno() < 0

    def fileno(self) -> int:
        """The device side's file descriptor (readable while injected packets wait)."""
        return self._device.fileno()

    def read(self) -> bytes:
        """Return the next injected packet; raise `BlockingIOError` when none is waiting."""
        return self._device.recv(MAX_DATAGRAM_BYTES)

    def write(self, packet: bytes, /) -> int:
        """Accept one packet from the runtime (for the test to `collect`)."""
        return self._device.send(packet)

    def close(self) -> None:
        """Close both ends."""
        self._device.close()
        self._peer.close()

    # -- the test side --------------------------------------------------------------

    def peer_fileno(self) -> int:
        """The test side's file descriptor (readable while written packets wait)."""
        return self._peer.fileno()

    def inject(self, packet: bytes) -> None:
        """Make `packet` appear as if the system routed it into the device."""
        self._peer.send(packet)
        self.injected += 1

    def collect(self) -> list[bytes]:
        """Return every packet the runtime has written so far (non-blocking)."""
        packets: list[bytes] = []
        while True:
            try:
                packets.append(self._peer.recv(MAX_DATAGRAM_BYTES))
            except BlockingIOError:
                break
        self.collected += len(packets)
        return packets


class MemoryEndpoint:
    """A fake non-blocking UDP socket on a `MemoryNetwork` (a `DatagramEndpoint`)."""

    def __init__(self, network: MemoryNetwork, address: tuple[str, int]) -> None:
        self._network = network
        self._address = address
        self._peer: tuple[str, int] | None = None
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.sent = 0
        self.received = 0
        self.overflowed = 0

    def fileno(self) -> int:
        """An eventfd readable while datagrams are queued (-1 once closed)."""
        return self._event

    def getsockname(self) -> tuple[str, int]:
        """This endpoint's address."""
        return self._address

    def getpeername(self) -> tuple[str, int]:
        """The connected peer's address."""
        if self._peer is None:
            raise OSError("endpoint is not connected")
        return self._peer

    def connect(self, address: tuple[str, int]) -> None:
        """Fix the peer for `send`; datagrams from other sources are then ignored."""
        self._peer = address

    def send(self, data: bytes, /) -> int:
        """Send to the connected peer."""
        if self._peer is None:
            raise OSError("endpoint is not connected")
        return self.sendto(data, self._peer)

    def sendto(self, data: bytes, address: Address, /) -> int:
        """Send one datagram to `address` (silently lost if nobody is there)."""
        if self._event < 0:
            raise OSError("endpoint is closed")
        self.sent += 1
        self._network._deliver(self._address, (str(address[0]), int(address[1])), bytes(data))
        return len(data)

    def recv(self, bufsize: int, /) -> bytes:
        """Return the next datagram; raise `BlockingIOError` if none is waiting."""
        return self.recvfrom(bufsize)[0]

    def recvfrom(self, bufsize: int, /) -> tuple[bytes, tuple[str, int]]:
        """Return the next `(datagram, source)`; raise `BlockingIOError` if none is waiting."""
        queue = self._queue
        if not queue:
            raise BlockingIOError(11, "no datagram waiting")
        data, source = queue.popleft()
        if not queue:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._event)
        self.received += 1
        return data[:bufsize], source

    def close(self) -> None:
        """Leave the network and release the eventfd."""
        if self._event >= 0:
            self._network._endpoints.pop(self._address, None)
            os.close(self._event)
            self._event = -1
            self._queue.clear()

    def _arrive(self, data: bytes, source: tuple[str, int]) -> None:
        if self._peer is not None and source != self._peer:
            return
        queue = self._queue
        if len(queue) >= ENDPOINT_QUEUE_LIMIT:
            self.overflowed += 1
            return
        queue.append((data, source))
        if len(queue) == 1:
            os.eventfd_write(self._event, 1)


@dataclass(frozen=True, slots=True)
class NetworkStatistics:
    """Counters of a `MemoryNetwork`."""

    delivered: int
    dropped: int


class MemoryNetwork:
    """A datagram network joining `MemoryEndpoint`s by `(host, port)` address."""

    def __init__(self) -> None:
        self._endpoints: dict[tuple[str, int], MemoryEndpoint] = {}
        self._cut: set[str | tuple[str, int]] = set()
        self._next_port = 40000
        #: Optional hook deciding per datagram whether to drop it.
        self.drop: DropHook | None = None
        self.delivered = 0
        self.dropped = 0

    def endpoint(self, host: str, port: int = 0) -> MemoryEndpoint:
        """Create an endpoint at `host`:`port` (a free port if 0)."""
        if port == 0:
            while (host, self._next_port) in self._endpoints:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        address = (host, port)
        if address in self._endpoints:
            raise OSError(f"address {host}:{port} already in use")
        ep = MemoryEndpoint(self, address)
        self._endpoints[address] = ep
        return ep

    def connected_endpoint(self, host: str, remote: tuple[str, int]) -> MemoryEndpoint:
        """Create an endpoint at `host` (free port) connected to `remote`."""
        ep = self.endpoint(host)
        ep.connect(remote)
        return ep

    def cut(self, where: str | tuple[str, int]) -> None:
        """Silently drop every datagram from or to a host (or exact address)."""
        self._cut.add(where)

    def restore(self, where: str | tuple[str, int]) -> None:
        """Undo `cut`."""
        self._cut.discard(where)

    def _is_cut(self, address: tuple[str, int]) -> bool:
        cut = self._cut
        return bool(cut) and (address in cut or address[0] in cut)

    def _deliver(self, source: tuple[str, int], destination: tuple[str, int], data: bytes) -> None:
        if self._is_cut(source) or self._is_cut(destination):
            self.dropped += 1
            return
        hook = self.drop
        if hook is not None and hook(source, destination, data):
            self.dropped += 1
            return
        target = self._endpoints.get(destination)
        if target is None:
            self.dropped += 1
            return
        self.delivered += 1
        target._arrive(data, source)

    def statistics(self) -> NetworkStatistics:
        """Counters: delivered and dropped datagrams."""
        return NetworkStatistics(delivered=self.delivered, dropped=self.dropped)
