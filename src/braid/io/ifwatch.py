"""Network interface events from the kernel (rtnetlink), for the local portal.

`InterfaceWatcher` opens a netlink socket subscribed to link and address changes; the
runtime polls its file descriptor and calls `read_events()`, which returns what happened
to which interface, by name:

- ``"down"``: the interface went down or lost its carrier (operstate not UP/UNKNOWN);
- ``"up"``: it is up with a carrier again;
- ``"address"``: an address was added to or removed from it (a DHCP renewal, a new lease).

Messages are parsed with pyroute2's rtnetlink marshal; only the socket is ours (pyroute2's
IPRoute runs an event loop of its own, which cannot share the portal's thread). Nothing
here raises on a malformed or unexpected message: it is skipped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from typing import Any, Final, Literal

from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from braid.io.base import DriverError

RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
IFF_UP: Final = 0x1
_UP_STATES: Final = ("UP", "UNKNOWN")

Change = Literal["up", "down", "address"]


_NLMSG_DONE: Final = 3
_NLMSG_ERROR: Final = 2
_RTM_GETADDR: Final = 22
_NLM_F_REQUEST_DUMP: Final = 0x1 | 0x300


_RTM_GETLINK: Final = 18


def _rtnl_query(request: bytes, *, dump: bool) -> list[Any]:
    """The messages the kernel answers the rtnetlink `request` with, parsed (up to
    NLMSG_DONE for a dump; one reply otherwise). What came before a failure, or []."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError:
        return []
    messages: list[Any] = []
    with sock:
        sock.settimeout(1.0)
        marshal = MarshalRtnl()
        try:
            sock.send(request)
            while True:
                batch = list(marshal.parse(sock.recv(65536)))
                messages.extend(batch)
                if not dump or any(
                    m["header"]["type"] in (_NLMSG_DONE, _NLMSG_ERROR) for m in batch
                ):
                    break
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return messages


def interface_tx_dropped(name: str) -> int | None:
    """The kernel's count of packets the interface dropped on transmit (IFLA_STATS64
    tx_dropped): for a TUN device, packets that found its queue full because the portal
    did not read them in time. None if the interface does not exist or netlink fails."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return None
    request = struct.pack("=IHHII", 32, _RTM_GETLINK, 0x1, 1, 0)
    request += struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    for msg in _rtnl_query(request, dump=False):
        try:
            if msg["header"]["type"] == RTM_NEWLINK and msg.get("index") == index:
                stats = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
                if stats is not None:
                    return int(stats["tx_dropped"])
        except (ValueError, KeyError, TypeError):
            pass
    return None


def interface_addresses(name: str) -> set[str]:
    """Every address (IPv4 and IPv6, in `ipaddress` text form) the interface has now; an
    empty set if it has none or does not exist. One netlink dump (RTM_GETADDR), for an
    address event: is a path's source address still there? (A partial answer: the caller
    rebinds, which is always safe.)"""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return set()
    found: set[str] = set()
    request = struct.pack("=IHHII", 24, _RTM_GETADDR, _NLM_F_REQUEST_DUMP, 1, 0)
    request += struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
    for msg in _rtnl_query(request, dump=True):
        try:
            if msg["header"]["type"] == RTM_NEWADDR and msg.get("index") == index:
                text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                if text:
                    found.add(str(ipaddress.ip_address(text)))
        except (ValueError, KeyError, TypeError):
            pass
    return found


class InterfaceWatcher:
    """Link and address events of the current network namespace (see the module doc)."""

    def __init__(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        except OSError as exc:
            raise DriverError(f"interface events: no rtnetlink socket: {exc.strerror}") from None
        try:
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise DriverError(f"interface events: cannot subscribe: {exc.strerror}") from None
        self._sock = sock
        self._marshal = MarshalRtnl()
        self._state: dict[str, bool] = {}  # name -> last known "usable"
        self._names: dict[int, str] = {}  # index -> name (addresses name only the index)
        self.malformed = 0

    def fileno(self) -> int:
        """The netlink socket, for the event loop's reader."""
        return self._sock.fileno()

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._sock.close()

    def read_events(self) -> list[tuple[str, Change]]:
        """Everything the kernel reported since the last call, in order."""
        events: list[tuple[str, Change]] = []
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: events were lost; the next ones still count
                continue
            try:
                messages = list(self._marshal.parse(data))
            except Exception:  # a message pyroute2 cannot parse: skip the datagram
                self.malformed += 1
                continue
            for msg in messages:
                event = self._event(msg)
                if event is not None:
                    events.append(event)
        return events

    def _event(self, msg: object) -> tuple[str, Change] | None:
        try:
            kind = msg["header"]["type"]  # type: ignore[index]
            index = msg.get("index")  # type: ignore[attr-defined]
        except (KeyError, TypeError, AttributeError):
            self.malformed += 1
            return None
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            name = msg.get_attr("IFLA_IFNAME")  # type: ignore[attr-defined]
            if not name:
                return None
            if isinstance(index, int):
                self._names[index] = name
            state = msg.get_attr("IFLA_OPERSTATE")  # type: ignore[attr-defined]
            flags = msg.get("flags") or 0  # type: ignore[attr-defined]
            usable = kind == RTM_NEWLINK and bool(flags & IFF_UP) and state in _UP_STATES
            before = self._state.get(name)
            self._state[name] = usable
            if before is None and usable:
                return None  # first news of an interface that is up: nothing changed
            if before == usable:
                return None
            return (name, "up" if usable else "down")
        if kind in (RTM_NEWADDR, RTM_DELADDR):
            name = msg.get_attr("IFA_LABEL") if hasattr(msg, "get_attr") else None
            if not name and isinstance(index, int):
                name = self._names.get(index)
                if name is None:
                    with contextlib.suppress(OSError):
                        name = socket.if_indextoname(index)
            if not name:
                return None
            return (str(name).split(":")[0], "address")  # "eth0:1" is an alias of eth0
        return None
