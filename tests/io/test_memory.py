"""The in-memory drivers behave like the real ones: non-blocking, pollable, datagram-shaped."""

from __future__ import annotations

import select
import socket

import pytest

from braid.io.base import DatagramEndpoint, PacketDevice
from braid.io.memory import ENDPOINT_QUEUE_LIMIT, MemoryNetwork, MemoryTun


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_interfaces_are_satisfied() -> None:
    net = MemoryNetwork()
    tun = MemoryTun("t0", mtu=1300)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert isinstance(tun, PacketDevice)
        assert isinstance(net.endpoint("10.0.0.1", 1), DatagramEndpoint)
        assert isinstance(sock, DatagramEndpoint)  # a real socket is an endpoint as is
        assert (tun.name, tun.mtu) == ("t0", 1300)
    finally:
        sock.close()
        tun.close()


def test_tun_inject_read_write_collect() -> None:
    tun = MemoryTun()
    try:
        with pytest.raises(BlockingIOError):
            tun.read()
        assert not readable(tun.fileno())
        tun.inject(b"\x45first")
        tun.inject(b"\x45second")
        assert readable(tun.fileno())
        assert tun.read() == b"\x45first"
        assert tun.read() == b"\x45second"
        with pytest.raises(BlockingIOError):
            tun.read()
        assert tun.collect() == []
        tun.write(b"\x60one")
        tun.write(b"\x60two")
        assert readable(tun.peer_fileno())
        assert tun.collect() == [b"\x60one", b"\x60two"]
        assert (tun.injected, tun.collected) == (2, 2)
    finally:
        tun.close()
    assert tun.closed


def test_network_delivers_with_source_addresses() -> None:
    net = MemoryNetwork()
    server = net.endpoint("198.51.100.1", 7100)
    client = net.connected_endpoint("192.0.2.2", ("198.51.100.1", 7100))
    assert not readable(server.fileno())
    client.send(b"hello")
    assert readable(server.fileno())
    data, source = server.recvfrom(65535)
    assert data == b"hello"
    assert source == client.getsockname()
    assert not readable(server.fileno())  # readable iff something is queued
    with pytest.raises(BlockingIOError):
        server.recvfrom(65535)
    server.sendto(b"reply", source)
    assert client.recv(65535) == b"reply"
    assert net.statistics().delivered == 2


def test_connected_endpoint_ignores_other_sources() -> None:
    net = MemoryNetwork()
    net.endpoint("198.51.100.1", 7100)
    stranger = net.endpoint("203.0.113.9", 9)
    client = net.connected_endpoint("192.0.2.2", ("198.51.100.1", 7100))
    stranger.sendto(b"spam", client.getsockname())
    with pytest.raises(BlockingIOError):
        client.recv(65535)


def test_cut_and_restore_and_drop_hook() -> None:
    net = MemoryNetwork()
    server = net.endpoint("198.51.100.1", 7100)
    a = net.connected_endpoint("192.0.2.2", ("198.51.100.1", 7100))
    b = net.connected_endpoint("203.0.113.2", ("198.51.100.1", 7100))
    net.cut("192.0.2.2")
    a.send(b"lost")
    b.send(b"kept")
    assert server.recvfrom(100)[0] == b"kept"
    server.sendto(b"lost too", a.getsockname())
    with pytest.raises(BlockingIOError):
        a.recv(100)
    net.restore("192.0.2.2")
    a.send(b"back")
    assert server.recvfrom(100)[0] == b"back"
    net.drop = lambda src, dst, data: data.startswith(b"x")
    a.send(b"xdrop")
    a.send(b"ok")
    assert server.recvfrom(100)[0] == b"ok"
    assert net.statistics().dropped == 3


def test_queue_is_bounded() -> None:
    net = MemoryNetwork()
    server = net.endpoint("198.51.100.1", 7100)
    client = net.connected_endpoint("192.0.2.2", ("198.51.100.1", 7100))
    for _ in range(ENDPOINT_QUEUE_LIMIT + 10):
        client.send(b"x")
    assert server.overflowed == 10
    count = 0
    while True:
        try:
            server.recvfrom(10)
        except BlockingIOError:
            break
        count += 1
    assert count == ENDPOINT_QUEUE_LIMIT


def test_closed_endpoint_leaves_the_network() -> None:
    net = MemoryNetwork()
    server = net.endpoint("198.51.100.1", 7100)
    client = net.connected_endpoint("192.0.2.2", ("198.51.100.1", 7100))
    server.close()
    client.send(b"nobody")
    assert net.statistics().dropped == 1
    again = net.endpoint("198.51.100.1", 7100)  # the address is free again
    client.send(b"somebody")
    assert again.recvfrom(100)[0] == b"somebody"
    with pytest.raises(OSError):
        net.endpoint("198.51.100.1", 7100)
