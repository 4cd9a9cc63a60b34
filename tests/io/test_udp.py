"""UDP path sockets: loopback exchange, clear errors, and (root) pinning to a link."""

from __future__ import annotations

import select
import socket

import pytest
from iotest import can_use_netns, enter_netns, in_child, ip, link_stats, netns, unique, veth

from braid.io.base import DriverError
from braid.io.udp import open_listen_socket, open_path_socket

root = pytest.mark.skipif(not can_use_netns(), reason="needs root, ip and /dev/net/tun")


def wait_readable(sock: socket.socket, timeout: float = 2.0) -> None:
    assert select.select([sock], [], [], timeout)[0], "nothing arrived"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_path_socket_talks_to_listen_socket(host: str) -> None:
    server = open_listen_socket(host, 0)
    port = server.getsockname()[1]
    client = open_path_socket(remote=(host, port), source=host, link="lo")
    try:
        assert client.getblocking() is False and server.getblocking() is False
        with pytest.raises(BlockingIOError):
            client.recv(100)
        with pytest.raises(BlockingIOError):
            server.recvfrom(100)
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 1024 * 1024
        client.send(b"ping")
        wait_readable(server)
        data, source = server.recvfrom(100)
        assert data == b"ping"
        assert source[:2] == client.getsockname()[:2]
        server.sendto(b"pong", source)
        wait_readable(client)
        assert client.recv(100) == b"pong"
    finally:
        client.close()
        server.close()


def test_source_port_is_used() -> None:
    server = open_listen_socket("127.0.0.1", 0)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    free_port = probe.getsockname()[1]
    probe.close()
    client = open_path_socket(
        remote=("127.0.0.1", server.getsockname()[1]), source="127.0.0.1", source_port=free_port
    )
    try:
        assert client.getsockname() == ("127.0.0.1", free_port)
    finally:
        client.close()
        server.close()


def test_dual_stack_listen_accepts_ipv4() -> None:
    server = open_listen_socket("::", 0)
    port = server.getsockname()[1]
    client = open_path_socket(remote=("127.0.0.1", port), source="127.0.0.1")
    try:
        client.send(b"v4")
        wait_readable(server)
        data, source = server.recvfrom(100)
        assert data == b"v4"
        assert source[0] == "::ffff:127.0.0.1"
        server.sendto(b"back", source)
        wait_readable(client)
        assert client.recv(100) == b"back"
    finally:
        client.close()
        server.close()


def test_errors_name_the_link() -> None:
    with pytest.raises(DriverError) as info:
        open_path_socket(remote=("127.0.0.1", 7100), source="192.0.2.77", link="dsl")
    assert str(info.value) == (
        "link dsl: source address 192.0.2.77 is not an address of this host;"
        " check the link's source (ip addr)"
    )
    with pytest.raises(DriverError, match=r"^link lte: cannot resolve remote '2001:db8::1'"):
        open_path_socket(remote=("2001:db8::1", 7100), source="127.0.0.1", link="lte")
    with pytest.raises(DriverError, match=r"^link x: source .eth0. is not an IP address$"):
        open_path_socket(remote=("127.0.0.1", 7100), source="eth0", link="x")


def test_listen_errors() -> None:
    first = open_listen_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(DriverError) as info:
            open_listen_socket("127.0.0.1", port)
        assert str(info.value) == (
            f"listen 127.0.0.1:{port}: the port is already in use; stop the other process or"
            " change listen.port"
        )
    finally:
        first.close()
    with pytest.raises(DriverError, match=r"192\.0\.2\.77 is not an address of this host"):
        open_listen_socket("192.0.2.77", 7100)


@root
@pytest.mark.root
def test_missing_interface_is_one_clear_error() -> None:
    with pytest.raises(DriverError) as info:
        open_path_socket(remote=("127.0.0.1", 7100), interface="nosuchif0", link="dsl")
    assert str(info.value) == (
        "link dsl: interface 'nosuchif0' does not exist; check the link's interface (ip link)"
    )


@root
@pytest.mark.root
def test_no_route_is_one_clear_error() -> None:
    with netns("btu") as ns:

        def attempt() -> str:
            enter_netns(ns)
            try:
                open_path_socket(remote=("10.255.0.1", 7100), link="dsl")
            except DriverError as exc:
                return str(exc)
            return "no error"

        message = in_child(attempt)
    assert message == "link dsl: no route to 10.255.0.1:7100; check the link's addresses and routes"


@root
@pytest.mark.root
def test_pinned_socket_leaves_by_its_link_whatever_the_main_route() -> None:
    """Two links A and B; the main route to the remote points at B. A socket pinned to A (by
    interface, or by source address + policy rule) sends via A: counted on A's interface."""
    count = 200
    with netns("btp") as site, netns("btq") as far:
        va, vb = unique("va"), unique("vb")
        pa, pb = unique("pa"), unique("pb")
        veth(site, va, far, pa, "10.71.1.1/24", "10.71.1.2/24")
        veth(site, vb, far, pb, "10.71.2.1/24", "10.71.2.2/24")
        ip("addr", "add", "10.72.0.1/32", "dev", "lo", ns=far)
        ip("route", "add", "10.72.0.1/32", "via", "10.71.2.2", ns=site)  # main route: via B
        ip("route", "add", "default", "via", "10.71.1.2", "dev", va, "table", "100", ns=site)
        ip("rule", "add", "oif", va, "table", "100", ns=site)
        ip("rule", "add", "from", "10.71.1.1", "table", "100", ns=site)

        def exchange(interface: str | None, source: str | None) -> tuple[list[str], int]:
            enter_netns(far)
            server = open_listen_socket("10.72.0.1", 0)
            port = server.getsockname()[1]
            enter_netns(site)
            client = open_path_socket(
                remote=("10.72.0.1", port), interface=interface, source=source, link="a"
            )
            sources: set[str] = set()
            replies = 0
            for i in range(count):
                client.send(b"x%d" % i)
                wait_readable(server)
                data, address = server.recvfrom(100)
                sources.add(address[0])
                server.sendto(data, address)
                wait_readable(client)
                replies += client.recv(100) == data
            return sorted(sources), replies

        def deltas(interface: str | None, source: str | None) -> tuple[int, int, list[str], int]:
            before = link_stats(site, va)["tx_packets"], link_stats(site, vb)["tx_packets"]
            sources, replies = in_child(lambda: exchange(interface, source))
            after = link_stats(site, va)["tx_packets"], link_stats(site, vb)["tx_packets"]
            return after[0] - before[0], after[1] - before[1], sources, replies

        # Control: unpinned, the datagrams follow the main route (B).
        a, b, sources, replies = deltas(None, None)
        assert b >= count and a < 10, (a, b)
        assert sources == ["10.71.2.1"] and replies == count

        # Pinned by interface: A, whatever the main route says.
        a, b, sources, replies = deltas(va, None)
        assert a >= count and b < 10, (a, b)
        assert sources == ["10.71.1.1"] and replies == count

        # Pinned by source address (with the usual policy rule): A as well.
        a, b, sources, replies = deltas(None, "10.71.1.1")
        assert a >= count and b < 10, (a, b)
        assert sources == ["10.71.1.1"] and replies == count
