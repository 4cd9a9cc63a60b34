"""The real TUN driver (root): created, addressed, MTU, up, routes; packets both ways
through the kernel; removed with its routes on close. Runs in a fresh namespace."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from typing import Any

import pytest
from iotest import (
    can_use_netns,
    enter_netns,
    in_child,
    ip,
    netns,
    parse_udp,
    run,
    tcp_segment,
    udp_packet,
    unique,
    veth,
)

from braid.io.base import DriverError, PacketDevice
from braid.io.coalesce import coalesce
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


def _open_tun(name: str, *, mtu: int, vnet_hdr: bool) -> TunDevice:
    """The tests' TUN: 10.73.0.1/30 and fd73::1/64, routes to 10.74.0.0/24 and fd74::/64."""
    return TunDevice.open(
        name,
        mtu=mtu,
        addresses=["10.73.0.1/30", "fd73::1/64"],
        routes=["10.74.0.0/24", "fd74::/64"],
        vnet_hdr=vnet_hdr,
    )


def _exercise(name: str, vnet_hdr: bool) -> dict[str, Any]:
    from pyroute2 import IPRoute

    seen: dict[str, Any] = {}
    opened = time.monotonic()
    with _open_tun(name, mtu=1380, vnet_hdr=vnet_hdr) as tun:
        with IPRoute() as ipr:  # first thing: both addresses take packets once open returns
            seen["local"] = [ipr.route("get", dst=a)[0]["type"] for a in ("10.73.0.1", "fd73::1")]
            seen["nodad"] = [
                bool(a.get("IFA_FLAGS", a["flags"]) & 0x02)  # IFA_F_NODAD
                for a in ipr.get_addr(family=socket.AF_INET6, address="fd73::1")
            ]
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
                f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index)
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
        # No IPv6 link-local address, so none of the kernel's router solicitations (sent
        # within a second of going up) or MLD reports, which no far portal would take.
        time.sleep(max(0.0, opened + 1.2 - time.monotonic()))
        chatter = []
        with contextlib.suppress(BlockingIOError):
            for _ in range(100):
                chatter.append(tun.read())
        seen["link_local_sent"] = [p[8:24].hex() for p in chatter if p[:1] == b"\x60"]
    seen["closed"] = tun.closed
    with IPRoute() as ipr:
        seen["after_links"] = ipr.link_lookup(ifname=name)
        seen["after_routes"] = [
            r.get("RTA_DST")
            for r in ipr.get_routes(family=socket.AF_INET)
            if r.get("RTA_DST") == "10.74.0.0"
        ]
    return seen


@pytest.mark.parametrize("vnet_hdr", [False, True])
def test_tun_device_round_trip_and_removal(vnet_hdr: bool) -> None:
    name = unique("btun")
    with netns("btt") as ns:

        def body() -> dict[str, Any]:
            enter_netns(ns)
            return _exercise(name, vnet_hdr)

        seen = in_child(body)
    assert seen["local"] == [2, 2]  # RTN_LOCAL: IPv6's too, not after the kernel's DAD work
    assert seen["nodad"] == [True]
    assert seen["protocol"]
    assert seen["mtu"] == 1380
    assert seen["up"]
    assert seen["addresses"] == ["10.73.0.1/30", "fd73::1/64"]  # (no fe80::)
    assert seen["link_local_sent"] == []
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


def _tcp_download(
    name: str, tun_ns: str, client_ns: str, client: str, far: str, segments: int, mss: int
) -> dict[str, Any]:
    """A real TCP socket (in `client_ns`) connects through the TUN (in `tun_ns`) to
    `far`, answered by hand: a SYN-ACK, then `segments` data segments of `mss` bytes
    written with `write_batch`. What did the socket receive?"""
    v6 = ":" in far
    family = socket.AF_INET6 if v6 else socket.AF_INET
    ip_len = 40 if v6 else 20
    enter_netns(tun_ns)
    with _open_tun(name, mtu=1400, vnet_hdr=True) as tun:
        enter_netns(client_ns)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect((far, 80))

        def is_syn(p: bytes) -> bool:
            tcp = p[9] == 6 if not v6 else p[6] == 6
            return (
                len(p) >= ip_len + 20
                and p[0] >> 4 == (6 if v6 else 4)
                and tcp
                and (p[ip_len + 13] & 0x12 == 0x02)
            )

        syn = _read_packet(tun, is_syn)
        sport, _, client_seq = struct.unpack_from("!HHI", syn, ip_len)
        server_seq = 7_000_000
        mss_option = struct.pack("!BBH", 2, 4, mss)
        tun.write(
            tcp_segment(far, client, 80, sport, server_seq, b"", flags=0x12,
                        ack=client_seq + 1, window=65535, options=mss_option)
        )  # fmt: skip
        assert select.select([], [sock], [], 2)[1], "no connection"
        data = bytes(i % 251 for i in range(segments * mss))
        packets = [
            tcp_segment(far, client, 80, sport, server_seq + 1 + i, data[i : i + mss],
                        ack=client_seq + 1, window=65535, ip_id=i // mss)
            for i in range(0, len(data), mss)
        ]  # fmt: skip
        written, refused = tun.write_batch(packets)
        received = b""
        while len(received) < len(data) and select.select([sock], [], [], 2)[0]:
            received += sock.recv(1 << 20)
        sock.close()
        return {
            "writes": len(coalesce(packets)),
            "written": written,
            "refused": refused,
            "received": len(received),
            "intact": received == data,
        }


@pytest.mark.parametrize("forwarded", [False, True], ids=["local", "forwarded"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_joined_tcp_segments_reach_a_real_socket_whole_and_in_order(
    v6: bool, forwarded: bool
) -> None:
    """The kernel takes `write_batch`'s GSO writes (virtio-net header, partial checksum)
    and a real TCP socket receives every byte in order: 40 segments of 1000 bytes in one
    write. Delivered locally, or forwarded out of a veth without checksum offload, where
    the kernel cuts it back into segments and completes their checksums, which the
    receiving stack then checks."""
    name = unique("btun")
    far = "fd74::9" if v6 else "10.74.0.9"
    with netns("btt") as tun_ns, netns("btc") as client_ns:
        if forwarded:
            a, b = unique("bva"), unique("bvb")
            veth(tun_ns, a, client_ns, b, "10.72.0.1/24", "10.72.0.2/24")
            ip("addr", "add", "fd72::1/64", "dev", a, "nodad", ns=tun_ns)
            ip("addr", "add", "fd72::2/64", "dev", b, "nodad", ns=client_ns)
            ip("route", "add", "default", "via", "10.72.0.1", ns=client_ns)
            ip("-6", "route", "add", "default", "via", "fd72::1", ns=client_ns)
            run("ip", "netns", "exec", tun_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1")  # fmt: skip
            for ns, dev in ((tun_ns, a), (client_ns, b)):  # software checksums and GSO
                run("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off")
            client = "fd72::2" if v6 else "10.72.0.2"
        else:
            client_ns = tun_ns
            client = "fd73::1" if v6 else "10.73.0.1"

        def body() -> dict[str, Any]:
            return _tcp_download(name, tun_ns, client_ns, client, far, 40, 1000)

        seen = in_child(body)
    assert seen == {"writes": 1, "written": 40, "refused": 0, "received": 40000, "intact": True}


def test_queue_length_follows_the_rate_between_the_short_default_and_a_cap() -> None:
    from braid.io.tun import DEFAULT_TXQUEUELEN, MAX_TXQUEUELEN, queue_length_for

    assert queue_length_for(0.0) == DEFAULT_TXQUEUELEN
    assert queue_length_for(100e6 / 8) == DEFAULT_TXQUEUELEN  # WAN rates: unchanged
    assert 240 <= queue_length_for(500e6 / 8) <= 300  # ~6 ms at 500 Mbit/s
    assert queue_length_for(100e9 / 8) == MAX_TXQUEUELEN


def test_set_txqueuelen_changes_the_kernels_queue() -> None:
    name = unique("btun")
    with netns("btt") as ns:

        def body() -> list[Any]:
            from pyroute2 import IPRoute

            enter_netns(ns)
            with TunDevice.open(name, mtu=1400, vnet_hdr=True) as tun:
                seen: list[Any] = [tun.txqueuelen]
                seen.append(tun.set_txqueuelen(256))
                with IPRoute() as ipr:
                    (link,) = ipr.get_links(ifname=name)
                    seen.append(link.get("IFLA_TXQLEN"))
                seen.append(tun.txqueuelen)
            return seen

        assert in_child(body) == [64, True, 256, 256]


def test_a_multi_queue_tun_spreads_flows_over_the_processes_queues() -> None:
    """The multi-queue experiment's driver (docs/performance.md): a second open of the
    name attaches a second queue, keeps the first one's addresses and routes, and the
    kernel hands different flows to different queues, every packet to exactly one."""
    name = unique("btun")
    with netns("btt") as ns:

        def body() -> dict[str, Any]:
            import json

            enter_netns(ns)
            queues = [
                TunDevice.open(
                    name,
                    mtu=1400,
                    addresses=["10.73.0.1/30"],
                    routes=["10.74.0.0/24"],
                    vnet_hdr=True,
                    multi_queue=True,
                )
                for _ in range(2)
            ]
            try:
                info = json.loads(run("ip", "-d", "-j", "link", "show", name).stdout)[0]
                flows = 64
                for port in range(flows):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                        sock.bind(("10.73.0.1", 20000 + port))
                        sock.sendto(b"flow", ("10.74.0.9", 5000))
                read = [0, 0]
                while select.select(queues, [], [], 0.5)[0]:
                    for index, tun in enumerate(queues):
                        with contextlib.suppress(BlockingIOError):
                            while True:
                                packet = tun.read()
                                udp = parse_udp(packet)
                                if udp is not None and udp[3] == 5000:
                                    read[index] += 1
                return {"data": info["linkinfo"]["info_data"], "read": read}
            finally:
                for tun in queues:
                    tun.close()

        seen = in_child(body)
    assert seen["data"]["multi_queue"] is True
    assert seen["data"]["numqueues"] == 2
    assert sum(seen["read"]) == 64
    assert min(seen["read"]) > 0, seen["read"]  # both queues carry flows


def test_kernel_drops_in_front_of_an_unread_tun_are_counted() -> None:
    """What the kernel drops because the portal did not read the TUN in time is visible:
    `interface_tx_dropped` (the portals' `tun_kernel_drops`)."""
    from braid.io.ifwatch import interface_tx_dropped

    name = unique("btun")
    with netns("btd") as ns:

        def body() -> list[Any]:
            enter_netns(ns)
            with _open_tun(name, mtu=1400, vnet_hdr=True) as tun:
                tun.set_txqueuelen(8)
                seen: list[Any] = [interface_tx_dropped(name)]
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    for _ in range(50):  # nobody reads: 8 queue, the rest is dropped
                        sock.sendto(b"x" * 100, ("10.74.0.9", 9))
                seen.append(interface_tx_dropped(name))
                seen.append(interface_tx_dropped("nosuch0"))
            return seen

        before, after, missing = in_child(body)
    assert before == 0 and 35 <= after <= 50 and missing is None  # (IPv6 RS/MLD share it)
