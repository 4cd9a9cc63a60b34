"""TUN device driver: a layer-3 interface whose packets this process reads and writes.

The device is created with `TUNSETIFF` (IFF_TUN | IFF_NO_PI: one raw IP packet
per read/write, no packet-information prefix), then addressed, given its MTU,
brought up and given its routes over netlink (pyroute2). It is not persistent:
closing the file descriptor removes the interface, its addresses and its routes.

With `vnet_hdr=True` (the portals' default; ``BRAID_TUN_OFFLOAD=0`` turns it off for
A/B runs) the device also has IFF_VNET_HDR: every read and write carries a 10-byte
virtio-net header, which `read`/`write` hide, and `write_batch` joins consecutive
segments of a TCP flow into one GSO write (`braid.io.coalesce`). No offload is
requested for reads (TUNSETOFFLOAD stays 0): the kernel still hands over whole,
checksummed packets of at most the MTU.

With `multi_queue=True` (only for the experiment of docs/performance.md, switched on by
``BRAID_TUN_MULTIQUEUE=1``) the device has IFF_MULTI_QUEUE: a second process opening the
same name attaches one more queue, the kernel spreads outgoing flows over the queues, and
addresses and routes the first queue already set are taken as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final, Self

from braid.io.base import MAX_DATAGRAM_BYTES, DriverError
from braid.io.coalesce import PLAIN_HEADER, VNET_HDR_LEN, coalesce

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100
MULTIQUEUE_ENV = "BRAID_TUN_MULTIQUEUE"
"""Environment switch: ``BRAID_TUN_MULTIQUEUE=1`` opens the portals' TUN with
IFF_MULTI_QUEUE, so several ``braid up`` processes share it (one worker each; the
experiment of ``bench/bench_multiqueue.py``, not kept: docs/performance.md)."""
OFFLOAD_ENV = "BRAID_TUN_OFFLOAD"
"""Environment switch: ``BRAID_TUN_OFFLOAD=0`` opens the portals' TUN without IFF_VNET_HDR
(one packet per write; for A/B measurements)."""
IFNAMSIZ = 16
DEFAULT_TXQUEUELEN = 64
"""Packets the kernel queues for the portal while queue control works by pausing (early
drop off or quiet): once braid's own queue is full, every packet here is latency for all
flows, pings included (Linux's default, 500, is ~150 ms at 40 Mbit/s). The portals raise
it at high rates (`queue_length_for`)."""
EARLY_DROP_TXQUEUELEN = 1000
"""Packets the kernel queues while early drop is active: it keeps braid's queues below
the limit, so the portal rarely pauses and this queue is a shock absorber for the
sending host's bursts, not a standing queue. At 64 a CUBIC flow over the lab's four links
lost 60 packets per 20 s there (56-61 Mbit/s). At 512 it still overflowed: a CUBIC flow
sends a window's worth at line rate when the egress releases a batch of in-order data
(and so its ACKs), faster than the portal reads, and lost packets there in bursts: 240
in one 20 s run, 733 and 393 in two series of three (78.3, 65.3, 80.6 and 78.3, 79.2,
82.6 Mbit/s). At 1000 none: the
congestion signal is early drop's one packet (82.1, 83.7, 85.2 Mbit/s; ping under load
unchanged). Without early drop, 512 stood full whenever queue control paused (ping p50
112-120 ms on 10+40; during a cut to one 10 Mbit/s link, p95 610 ms)."""
MAX_TXQUEUELEN = 1000
TXQUEUE_TIME = 0.006
"""Seconds of the sessions' summed rate the TUN queue holds once that is more than
`DEFAULT_TXQUEUELEN` packets (see `queue_length_for`)."""
SIOCSIFTXQLEN = 0x8943


def queue_length_for(rate: float, packet: int = 1400, *, floor: int = DEFAULT_TXQUEUELEN) -> int:
    """The TUN queue length (packets) for a summed sending rate of `rate` bytes/s:
    `TXQUEUE_TIME` of it, at least `floor` (`DEFAULT_TXQUEUELEN`, or
    `EARLY_DROP_TXQUEUELEN` while early drop is active), at most `MAX_TXQUEUELEN`.

    A sending host's TCP hands the TUN bursts of up to ~46 packets (its own GSO segments,
    cut by the kernel in front of the device): 64 packets hold barely one, and at a few
    hundred Mbit/s the queue overflows between two of the portal's reads (one TCP flow
    over an unshaped link: 274-289 Mbit/s with 64, 413-417 with 128, 467-512 with 256).
    At WAN rates (up to ~100 Mbit/s) 6 ms is less than 64 packets: the short queue of
    queue control stays as it was."""
    wanted = int(rate * TXQUEUE_TIME / packet) + 1
    return min(max(wanted, floor), MAX_TXQUEUELEN)


Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOCAL_WAIT: Final = 1.0
"""Seconds `open` waits at most for the kernel to make the IPv6 addresses local."""
_RTN_LOCAL: Final = 2
_IFA_F_NODAD: Final = 0x02
"""ifaddrmsg flag: skip duplicate address detection (linux/if_addr.h)."""


def _netlink_reason(exc: Exception) -> str:
    """A short reason for a pyroute2 NetlinkError (or any OSError)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return str(exc) or type(exc).__name__


def _no_link_local(name: str) -> None:
    """No IPv6 link-local address on the TUN (addr_gen_mode 1, set before it goes up): a
    layer-3 tunnel needs none, and with one the kernel sends router solicitations and MLD
    reports from it into the tunnel, where the far portal drops them (`source_not_allowed`:
    fe80::/10 is no site's). Nothing to do where IPv6 is off (no such file) or the sysctl
    is read-only (a container): the kernel's packets are then dropped as before."""
    path = f"/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"
    with contextlib.suppress(OSError), open(path, "w") as mode:
        mode.write("1")


class TunDevice:
    """An open, configured TUN device. Use `TunDevice.open(...)`; close it to remove it."""

    __slots__ = ("_fd", "_mtu", "_multi", "_name", "_vnet", "addresses", "routes", "txqueuelen")

    def __init__(
        self,
        fd: int,
        name: str,
        mtu: int,
        addresses: tuple[Interface, ...] = (),
        routes: tuple[Network, ...] = (),
        txqueuelen: int = DEFAULT_TXQUEUELEN,
        vnet_hdr: bool = False,
        multi_queue: bool = False,
    ) -> None:
        self._fd = fd
        self._name = name
        self._mtu = mtu
        self._vnet = vnet_hdr
        self._multi = multi_queue
        self.addresses = addresses
        self.routes = routes
        self.txqueuelen = txqueuelen

    @classmethod
    def open(
        cls,
        name: str,
        *,
        mtu: int,
        addresses: Iterable[str | Interface] = (),
        routes: Iterable[str | Network] = (),
        txqueuelen: int = DEFAULT_TXQUEUELEN,
        vnet_hdr: bool = False,
        multi_queue: bool = False,
    ) -> Self:
        """Create the TUN device `name`, set its MTU and addresses, bring it up, add routes.

        `txqueuelen` bounds the packets the kernel holds for us while the portal does
        not read the device (queue control): short, so the backlog is a short queue.
        `vnet_hdr` adds IFF_VNET_HDR, for `write_batch`'s GSO writes (see the module doc).
        `multi_queue` adds IFF_MULTI_QUEUE: opening a name that exists with it attaches one
        more queue (the configuration already there is kept).

        Raises `DriverError` (one line naming the device and the fix) if the device
        cannot be created or configured; nothing is left behind in that case.
        """
        addrs = tuple(ipaddress.ip_interface(a) for a in addresses)
        nets = tuple(ipaddress.ip_network(r) for r in routes)
        encoded = name.encode()
        if not encoded or len(encoded) >= IFNAMSIZ:
            raise DriverError(f"tunnel {name!r}: interface names are 1..15 bytes")
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DriverError(
                f"tunnel {name}: {TUN_PATH} is missing; load the tun module (modprobe tun)"
                " or give the container the device"
            ) from None
        except PermissionError:
            raise DriverError(
                f"tunnel {name}: no permission to open {TUN_PATH}; run as root (CAP_NET_ADMIN)"
            ) from None
        except OSError as exc:
            raise DriverError(f"tunnel {name}: cannot open {TUN_PATH}: {exc.strerror}") from None
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
            flags |= IFF_MULTI_QUEUE if multi_queue else 0
            ifr = struct.pack("16sH22x", encoded, flags)
            try:
                result = fcntl.ioctl(fd, TUNSETIFF, ifr)
            except OSError as exc:
                raise DriverError(_tunsetiff_message(name, exc)) from None
            actual = result[:IFNAMSIZ].rstrip(b"\0").decode()
            device = cls(fd, actual, mtu, addrs, nets, txqueuelen, vnet_hdr, multi_queue)
            device._configure()
        except BaseException:
            os.close(fd)
            raise
        return device

    def _configure(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._configure_netlink()
            return
        # pyroute2's synchronous API runs an event loop of its own, which cannot
        # happen in a thread whose loop is running: do the netlink work in a thread.
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self._configure_netlink()
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=work, name="braid-netlink")
        worker.start()
        worker.join()
        if failure:
            raise failure[0]

    def _configure_netlink(self) -> None:
        from pyroute2 import IPRoute  # imported lazily: only the real driver needs netlink

        name = self._name
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise DriverError(f"tunnel {name}: created but not visible over netlink")
            index = found[0]
            try:
                ipr.link("set", index=index, mtu=self._mtu, txqlen=self.txqueuelen)
            except Exception as exc:
                raise DriverError(
                    f"tunnel {name}: cannot set mtu {self._mtu}: {_netlink_reason(exc)}"
                ) from None
            for addr in self.addresses:
                try:
                    # IPv6: no duplicate address detection on a point-to-point tunnel
                    # (IFA_F_NODAD), so the address is usable as a source at once and
                    # not after the kernel's DAD work has run, which can lag under load.
                    ipr.addr(
                        "add",
                        index=index,
                        address=str(addr.ip),
                        prefixlen=addr.network.prefixlen,
                        flags=_IFA_F_NODAD if addr.version == 6 else 0,
                    )
                except Exception as exc:
                    if self._multi and getattr(exc, "code", None) == errno.EEXIST:
                        continue  # set by the process of another queue
                    raise DriverError(
                        f"tunnel {name}: cannot add address {addr}: {_netlink_reason(exc)}"
                    ) from None
            _no_link_local(name)
            try:
                ipr.link("set", index=index, state="up")
            except Exception as exc:
                raise DriverError(
                    f"tunnel {name}: cannot bring it up: {_netlink_reason(exc)}"
                ) from None
            for net in self.routes:
                try:
                    ipr.route("add", dst=str(net), oif=index)
                except Exception as exc:
                    reason = _netlink_reason(exc)
                    if self._multi and getattr(exc, "code", None) == errno.EEXIST:
                        continue  # set by the process of another queue
                    if getattr(exc, "code", None) == errno.EEXIST:
                        reason = "a route for it already exists; remove it or drop it from routes"
                    raise DriverError(f"tunnel {name}: cannot add route {net}: {reason}") from None
            self._await_local(ipr)

    def _await_local(self, ipr: Any) -> None:
        """Wait (at most LOCAL_WAIT) until each IPv6 address receives packets. The kernel
        installs an IPv6 address's local route from a work queue after the link comes
        up, so a packet that arrives in between is dropped (Ip6InAddrErrors); IPv4's is
        there at once."""
        pending = [str(a.ip) for a in self.addresses if a.version == 6]
        deadline = time.monotonic() + LOCAL_WAIT
        while pending and time.monotonic() < deadline:
            try:
                pending = [
                    ip for ip in pending if ipr.route("get", dst=ip)[0]["type"] != _RTN_LOCAL
                ]
            except Exception:  # a failed lookup: stop waiting (nothing to wait for)
                return
            if pending:
                time.sleep(0.001)

    @property
    def name(self) -> str:
        """The interface name the kernel gave the device."""
        return self._name

    @property
    def mtu(self) -> int:
        """The MTU the device was configured with."""
        return self._mtu

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._fd < 0

    def fileno(self) -> int:
        """The device's file descriptor (non-blocking)."""
        return self._fd

    def read(self) -> bytes:
        """Return the next packet the system routed into the device.

        Raises `BlockingIOError` when none is waiting.
        """
        if self._vnet:
            return os.read(self._fd, MAX_DATAGRAM_BYTES + VNET_HDR_LEN)[VNET_HDR_LEN:]
        return os.read(self._fd, MAX_DATAGRAM_BYTES)

    def write(self, packet: bytes, /) -> int:
        """Hand one IP packet to the system; raises `OSError` if the kernel refuses it."""
        if self._vnet:
            return os.writev(self._fd, (PLAIN_HEADER, packet)) - VNET_HDR_LEN
        return os.write(self._fd, packet)

    def set_txqueuelen(self, length: int) -> bool:
        """Change the kernel's queue length for the device (SIOCSIFTXQLEN); False if it
        refused (the old length stays)."""
        ifr = struct.pack("16si12x", self._name.encode(), length)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                fcntl.ioctl(sock.fileno(), SIOCSIFTXQLEN, ifr)
        except OSError:
            return False
        self.txqueuelen = length
        return True

    @property
    def vnet_hdr(self) -> bool:
        """Whether the device has IFF_VNET_HDR (`write_batch` joins TCP segments)."""
        return self._vnet

    def write_batch(self, packets: list[bytes], /) -> tuple[int, int]:
        """Hand `packets` to the system, in order per flow, with as few writes as the
        device allows (see the module doc): (packets written, packets refused)."""
        fd = self._fd
        written = refused = 0
        if not self._vnet:
            for packet in packets:
                try:
                    os.write(fd, packet)
                    written += 1
                except OSError:
                    refused += 1
            return written, refused
        for buffers, count in coalesce(packets):
            try:
                os.writev(fd, buffers)
                written += count
            except OSError:
                refused += count
        return written, refused

    def close(self) -> None:
        """Close the device: the kernel removes the interface with its addresses and routes."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TunDevice(name={self._name!r}, mtu={self._mtu}, fd={self._fd}, vnet_hdr={self._vnet})"
        )


def _tunsetiff_message(name: str, exc: OSError) -> str:
    code = exc.errno
    if code == errno.EPERM:
        return f"tunnel {name}: not permitted to create TUN devices; run as root (CAP_NET_ADMIN)"
    if code == errno.EBUSY:
        return (
            f"tunnel {name}: the interface is in use by another process;"
            " stop it or choose another tunnel.name"
        )
    if code == errno.EINVAL:
        return (
            f"tunnel {name}: an interface of another kind already has this name;"
            " choose another tunnel.name"
        )
    return f"tunnel {name}: cannot create the TUN device: {exc.strerror}"


def multiqueue_by_environment() -> bool:
    """True when the environment asks for a multi-queue TUN (see MULTIQUEUE_ENV)."""
    return os.environ.get(MULTIQUEUE_ENV, "0").strip() in ("1", "yes", "on", "true")


def offload_enabled_by_environment() -> bool:
    """False when the environment turns the TUN's virtio-net header off (see OFFLOAD_ENV)."""
    return os.environ.get(OFFLOAD_ENV, "1").strip() not in ("0", "no", "off", "false")
