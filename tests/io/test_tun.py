"""The real TUN driver (root): created, addressed, MTU, up, routes; packets both ways
through the kernel; removed with its routes on close. Runs in a fresh namespace."""

from __future__ import annotations

import select
import socket
from typing import Any

import pytest
from iotest import can_use_netns, enter_netns, in_child, netns, parse_udp, udp_packet, unique

from braid.io.base import DriverError, PacketDevice
from braid.io.tun import TunDevice

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not can_use_netns(), reason="needs root, ip and /dev/net/tun"),
]


def _read_packet(tun: TunDevice, want: Any, timeout: float = 2.0) -> bytes:
    """The next packet from the TUN for which `want(packet)` holds (skips e.g. IPv6 RS/MLD)."""
    while True:
        assert select.select([tun], [], [], timeout)[0], "no packet from the TUN"
        packet = tun.read()
        if want(packet):
            return packet


def _exercise(name: str) -> dict[str, Any]:
    from pyroute2 import IPRoute

    seen: dict[str, Any] = {}
    with TunDevice.open(
        name,
        mtu=1380,
        addresses=["10.73.0.1/30", "fd73::1/64"],
        routes=["10.74.0.0/24", "fd74::/64"],
    ) as tun:
        seen["protocol"] = isinstance(tun, PacketDevice)
        with pytest.raises(BlockingIOError):  # non-blocking (after the kernel's own IPv6 chatter)
            for _ in range(100):
                tun.read()
        with IPRoute() as ipr:
            (link,) = ipr.get_links(ifname=name)
            seen["mtu"] = link.get("IFLA_MTU")
            seen["up"] = bool(link["flags"] & 1)
            index = link["index"]
            seen["addresses"] = sorted(
                f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=index)
                if a.get("IFA_ADDRESS") and not a.get("IFA_ADDRESS").startswith("fe80")
            )
            seen["routes"] = sorted(
                f"{r.get('RTA_DST')}/{r['dst_len']}"
                for family in (socket.AF_INET, socket.AF_INET6)
                for r in ipr.get_routes(family=family, oif=index)
                if r.get("RTA_DST") in ("10.74.0.0", "fd74::")
            )
        for family, local, far in (
            (socket.AF_INET, "10.73.0.1", "10.74.0.9"),
            (socket.AF_INET6, "fd73::1", "fd74::9"),
        ):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((local, 0))
            sport = sock.getsockname()[1]
            sock.sendto(b"through the kernel", (far, 5000))
            packet = _read_packet(tun, lambda p: parse_udp(p) is not None)
            seen[f"out{family}"] = parse_udp(packet)
            tun.write(udp_packet(far, local, 5000, sport, b"and back"))
            assert select.select([sock], [], [], 2.0)[0], "reply not delivered"
            data, source = sock.recvfrom(100)
            seen[f"in{family}"] = (data, source[0], source[1])
            sock.close()
        with pytest.raises(OSError):
            tun.write(b"\x00 not an IP packet")
    seen["closed"] = tun.closed
    with IPRoute() as ipr:
        seen["after_links"] = ipr.link_lookup(ifname=name)
        seen["after_routes"] = [
            r.get("RTA_DST")
            for r in ipr.get_routes(family=socket.AF_INET)
            if r.get("RTA_DST") == "10.74.0.0"
        ]
    return seen


def test_tun_device_round_trip_and_removal() -> None:
    name = unique("btun")
    with netns("btt") as ns:

        def body() -> dict[str, Any]:
            enter_netns(ns)
            return _exercise(name)

        seen = in_child(body)
    assert seen["protocol"]
    assert seen["mtu"] == 1380
    assert seen["up"]
    assert seen["addresses"] == ["10.73.0.1/30", "fd73::1/64"]
    assert seen["routes"] == ["10.74.0.0/24", "fd74::/64"]
    sport4 = seen[f"out{socket.AF_INET}"][2]
    assert seen[f"out{socket.AF_INET}"] == (
        "10.73.0.1",
        "10.74.0.9",
        sport4,
        5000,
        b"through the kernel",
    )
    assert seen[f"in{socket.AF_INET}"] == (b"and back", "10.74.0.9", 5000)
    sport6 = seen[f"out{socket.AF_INET6}"][2]
    assert seen[f"out{socket.AF_INET6}"] == (
        "fd73::1",
        "fd74::9",
        sport6,
        5000,
        b"through the kernel",
    )
    assert seen[f"in{socket.AF_INET6}"] == (b"and back", "fd74::9", 5000)
    assert seen["closed"]
    assert seen["after_links"] == []
    assert seen["after_routes"] == []


def test_tun_errors_are_one_line() -> None:
    name = unique("btun")
    with netns("btt") as ns:

        def body() -> list[str]:
            enter_netns(ns)
            messages = []
            for kwargs in (
                {"name": "lo"},
                {"name": name, "routes": ["10.75.0.0/24", "10.75.0.0/24"]},
                {"name": "x" * 16},
            ):
                try:
                    TunDevice.open(mtu=1400, addresses=["10.76.0.1/30"], **kwargs)
                except DriverError as exc:
                    messages.append(str(exc))
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                messages.append(f"left behind: {ipr.link_lookup(ifname=name)}")
            return messages

        messages = in_child(body)
    assert messages == [
        "tunnel lo: an interface of another kind already has this name; choose another tunnel.name",
        f"tunnel {name}: cannot add route 10.75.0.0/24: a route for it already exists;"
        " remove it or drop it from routes",
        "tunnel 'xxxxxxxxxxxxxxxx': interface names are 1..15 bytes",
        "left behind: []",
    ]
