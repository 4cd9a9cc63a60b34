"""The portals over the in-memory drivers: the real runtime and core, fake TUN and network."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from iotest import parse_udp, udp_packet
from seckeys import (
    LOCAL_PRIVATE,
    SITE_B_PRIVATE,
    local_security,
    remote_security,
    two_sites_security,
)

from braid.core.secure import SecureConfig
from braid.core.session import SessionConfig
from braid.io.memory import MemoryNetwork, MemoryTun
from braid.runtime.portal import LocalPortal, PathLink, RemotePortal
from braid.runtime.stats import StatsWriter

CONFIG = SessionConfig(
    scheduler="round-robin", keepalive_interval=0.05, hello_interval=0.05, dead_interval=0.25
)
SERVER = ("198.51.100.1", 7100)
HOSTS = ("192.0.2.2", "203.0.113.2")


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def until(condition: Callable[[], bool], timeout: float = 3.0, what: str = "") -> float:
    """Wait until `condition()`; return how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.002)
    return loop.time() - start


class Site:
    """A local portal with one path per host, over `net`, towards SERVER."""

    def __init__(
        self,
        net: MemoryNetwork,
        hosts: tuple[str, ...] = HOSTS,
        name: str = "l0",
        private: bytes = LOCAL_PRIVATE,
    ) -> None:
        self.tun = MemoryTun(name)
        self.links = [
            PathLink(i, f"link{i}", net.connected_endpoint(host, SERVER))
            for i, host in enumerate(hosts)
        ]
        self.portal = LocalPortal(
            self.tun, self.links, session_config=CONFIG, security=local_security(private=private)
        )
        self.received: list[bytes] = []

    def paths_up(self) -> list[bool]:
        return [p.up for p in self.portal.session.statistics().paths]

    def collect(self) -> list[bytes]:
        self.received.extend(self.tun.collect())
        return self.received


class Server:
    def __init__(
        self, net: MemoryNetwork, security: SecureConfig | None = None, **kwargs: Any
    ) -> None:
        self.tun = MemoryTun("r0")
        self.portal = RemotePortal(
            self.tun,
            net.endpoint(*SERVER),
            session_config=CONFIG,
            security=security or remote_security(),
            **kwargs,
        )
        self.received: list[bytes] = []

    def collect(self) -> list[bytes]:
        self.received.extend(self.tun.collect())
        return self.received


def flows(src: str, dst: str, count: int, nflows: int = 4, tag: bytes = b"") -> list[bytes]:
    """`count` UDP packets over `nflows` flows, each payload naming its flow and index."""
    return [
        udp_packet(
            src, dst, 1000 + i % nflows, 5000, b"%s f%d n%d" % (tag, i % nflows, i // nflows)
        )
        for i in range(count)
    ]


def assert_per_flow_order(sent: list[bytes], received: list[bytes]) -> None:
    assert sorted(received) == sorted(sent)
    for sport in {parse_udp(p)[2] for p in sent}:  # type: ignore[index]
        want = [p for p in sent if parse_udp(p)[2] == sport]  # type: ignore[index]
        got = [p for p in received if parse_udp(p)[2] == sport]  # type: ignore[index]
        assert got == want


async def started(*portals: LocalPortal | RemotePortal) -> None:
    for portal in portals:
        portal.start()
    await asyncio.sleep(0)


def test_packets_cross_both_ways_over_both_paths(tmp_path: Path) -> None:
    async def main() -> None:
        net = MemoryNetwork()
        server, site = Server(net), Site(net)
        await started(server.portal, site.portal)
        await until(lambda: site.paths_up() == [True, True], what="both paths up")

        stats_file = tmp_path / "stats.json"
        writer = StatsWriter(site.portal, stats_file, interval=0.05)
        writer.start()

        outbound = flows("10.1.0.5", "10.2.0.9", 400)
        for packet in outbound:
            site.tun.inject(packet)
        await until(lambda: len(server.collect()) >= len(outbound), what="outbound packets")
        assert_per_flow_order(outbound, server.received)

        inbound = flows("10.2.0.9", "10.1.0.5", 400, tag=b"in")
        for packet in inbound:
            server.tun.inject(packet)
        await until(lambda: len(site.collect()) >= len(inbound), what="inbound packets")
        assert_per_flow_order(inbound, site.received)

        local_paths = site.portal.session.statistics().paths
        # round-robin: each path carried about half of the data (plus control datagrams)
        assert all(p.datagrams_sent >= 200 for p in local_paths), local_paths
        (remote_session,) = server.portal.statistics().sessions
        assert remote_session.session_id == site.portal.session.session_id
        assert remote_session.packets_delivered == 400
        assert all(p.datagrams_sent >= 200 for p in remote_session.paths)
        counters = site.portal.statistics().counters
        assert counters.tun_packets_read == 400 and counters.tun_packets_written == 400
        assert counters.socket_send_errors == 0 and counters.send_rejected == 0

        await asyncio.sleep(0.1)
        writer.stop()
        doc = json.loads(stats_file.read_text())
        assert doc["role"] == "local" and doc["tunnel"] == "l0"
        assert doc["counters"]["tun_packets_read"] == 400
        (session,) = doc["sessions"]
        assert [p["name"] for p in session["paths"]] == ["link0", "link1"]
        assert [p["up"] for p in session["paths"]] == [True, True]
        assert session["packets_sent"] == 400

        # A clean stop of the local portal tells the remote one, which forgets the session.
        site.portal.close()
        await until(lambda: not server.portal.sessions, what="remote session closed")
        assert server.portal.statistics().counters.sessions_ended == 1
        assert site.tun.closed
        server.portal.close()

    run(main())


def test_a_silent_path_goes_down_and_traffic_moves() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        server, site = Server(net), Site(net)
        await started(server.portal, site.portal)
        await until(lambda: site.paths_up() == [True, True], what="both paths up")

        net.cut(HOSTS[0])
        took = await until(
            lambda: site.paths_up() == [False, True], timeout=2.0, what="path 0 down"
        )
        assert took <= CONFIG.dead_interval + 0.5  # generous: the machine may be busy

        before = server.portal.statistics().sessions[0].paths
        packets = flows("10.1.0.5", "10.2.0.9", 300)
        for packet in packets:
            site.tun.inject(packet)
        await until(lambda: len(server.collect()) >= 300, what="packets over the other path")
        assert_per_flow_order(packets, server.received)
        after = server.portal.statistics().sessions[0].paths
        assert after[0].datagrams_received == before[0].datagrams_received  # nothing via path 0
        assert after[1].datagrams_received - before[1].datagrams_received >= 300

        # The link returns: the path comes back and carries its share again.
        net.restore(HOSTS[0])
        await until(lambda: site.paths_up() == [True, True], timeout=2.0, what="path 0 back up")
        await asyncio.sleep(CONFIG.return_holddown + 0.1)  # a returning path's hold-down
        more = flows("10.1.0.5", "10.2.0.9", 300, tag=b"again")
        for packet in more:
            site.tun.inject(packet)
        await until(lambda: len(server.collect()) >= 600, what="packets over both paths")
        final = server.portal.statistics().sessions[0].paths
        assert final[0].datagrams_received - after[0].datagrams_received >= 100
        site.portal.close()
        server.portal.close()

    run(main())


def test_remote_routes_by_learned_inner_source() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        server = Server(net, two_sites_security())  # a: 10/8 only, b: fd00::/8 only
        a = Site(net, ("192.0.2.2", "203.0.113.2"), name="a0")
        b = Site(net, ("192.0.2.3", "203.0.113.3"), name="b0", private=SITE_B_PRIVATE)
        await started(server.portal, a.portal, b.portal)
        await until(lambda: len(server.portal.sessions) == 2, what="two sessions")
        # Nothing learned yet: with two sessions a packet has nowhere to go.
        server.tun.inject(udp_packet("10.2.0.9", "10.1.0.5", 5000, 1000, b"early"))
        await until(lambda: server.portal.statistics().counters.unroutable == 1, what="unroutable")

        a.tun.inject(udp_packet("10.1.0.5", "10.2.0.9", 1000, 5000, b"from a"))
        b.tun.inject(udp_packet("fd03::7", "fd02::9", 1000, 5000, b"from b"))
        await until(lambda: len(server.collect()) == 2, what="both sites heard")

        server.tun.inject(udp_packet("10.2.0.9", "10.1.0.5", 5000, 1000, b"to a"))
        server.tun.inject(udp_packet("fd02::9", "fd03::7", 5000, 1000, b"to b"))
        await until(lambda: len(a.collect()) == 1 and len(b.collect()) == 1, what="replies")
        assert parse_udp(a.received[0])[4] == b"to a"  # type: ignore[index]
        assert parse_udp(b.received[0])[4] == b"to b"  # type: ignore[index]

        # A source outside a site's allowed prefixes is dropped (b may not send from 10/8).
        b.tun.inject(udp_packet("10.1.0.5", "10.2.0.9", 1000, 5000, b"spoofed source"))
        await until(
            lambda: any(
                s.drops.get("source_not_allowed", 0) == 1
                for s in server.portal.statistics().sessions
            ),
            what="source_not_allowed counted",
        )
        assert len(server.collect()) == 2

        # Site a's session ends: its addresses are forgotten, b keeps working.
        a.portal.close()
        await until(lambda: len(server.portal.sessions) == 1, what="a's session gone")
        server.tun.inject(udp_packet("10.2.0.9", "fd03::7", 5000, 1000, b"single session"))
        await until(lambda: len(b.collect()) == 2, what="single session gets everything")
        b.portal.close()
        server.portal.close()

    run(main())


def test_local_portal_starts_a_new_session_after_close_from_remote() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        server, site = Server(net), Site(net)
        await started(server.portal, site.portal)
        await until(lambda: site.paths_up() == [True, True], what="both paths up")
        first = site.portal.session.session_id

        server.portal.close()  # e.g. the remote portal restarts
        await until(lambda: site.portal.session.session_id != first, what="a new session")
        replacement = Server(net)
        await started(replacement.portal)
        await until(lambda: site.paths_up() == [True, True], what="paths up again")
        site.tun.inject(udp_packet("10.1.0.5", "10.2.0.9", 1000, 5000, b"resumed"))
        await until(lambda: len(replacement.collect()) == 1, what="traffic resumes")
        assert list(replacement.portal.sessions) == [site.portal.session.session_id]
        site.portal.close()
        replacement.portal.close()

    run(main())


def test_remote_survives_garbage_and_forgets_idle_sessions() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        server = Server(net, session_idle_timeout=0.3)
        await started(server.portal)
        stray = net.endpoint("203.0.113.66", 4444)
        for junk in (b"", b"\x07hello", b"\x01" * 3, bytes(100)):
            stray.sendto(junk, SERVER)
        # A well-formed sealed DATA datagram for a session that does not exist: no session.
        stray.sendto(bytes([3, 1, 0, 0]) + bytes(4) + bytes(16) + bytes(30), SERVER)
        await until(lambda: server.portal.statistics().counters.datagrams_received == 5)
        counters = server.portal.statistics().counters
        assert (counters.malformed, counters.unknown_session) == (4, 1)
        assert server.portal.sessions == {}

        site = Site(net)
        await started(site.portal)
        await until(lambda: len(server.portal.sessions) == 1, what="session")
        site.portal.close()  # a clean close is noticed at once ...
        await until(lambda: not server.portal.sessions, what="closed session removed")

        silent = Site(net, ("192.0.2.9",))
        await started(silent.portal)
        await until(lambda: len(server.portal.sessions) == 1, what="second session")
        net.cut("192.0.2.9")  # ... a vanished one after the idle timeout
        await until(lambda: not server.portal.sessions, timeout=2.0, what="idle session removed")
        assert server.portal.statistics().counters.sessions_ended == 2
        silent.portal.close()
        server.portal.close()

    run(main())


def test_close_is_idempotent_and_releases_everything() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        server, site = Server(net), Site(net)
        await started(server.portal, site.portal)
        await until(lambda: site.paths_up() == [True, True], what="both paths up")
        site.portal.close()
        site.portal.close()
        server.portal.close()
        server.portal.close()
        assert site.tun.closed and server.tun.closed
        assert all(link.endpoint.fileno() == -1 for link in site.links)
        assert not site.portal.running and not server.portal.running
        await asyncio.sleep(0.3)  # no timer fires after close (it would raise in the loop)

    loop_errors: list[dict[str, Any]] = []

    async def guarded() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: loop_errors.append(ctx))
        await main()

    run(guarded())
    assert loop_errors == []


def test_each_datagram_is_timed_when_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local portal reads a path's socket in batches; each datagram gets the clock
    as read after it came in, not the batch's start. Here the handling of one datagram
    takes 30 ms (a busy core) while a datagram arrives on every path: timed at the
    batch's start, the one read in that same batch looked 30 ms early, and in the lab
    such a one-way delay and round trip stayed a path's minimum for 10 s."""

    async def main() -> None:
        net = MemoryNetwork()
        server, site = Server(net), Site(net)
        await started(server.portal, site.portal)
        await until(lambda: site.paths_up() == [True, True], what="both paths up")
        loop = asyncio.get_running_loop()
        session = site.portal.session
        late = {bytes([0xF0 + i]) * 64: link.endpoint for i, link in enumerate(site.links)}
        arrived: list[float] = []
        timed: dict[bytes, float] = {}
        original = type(session).receive_datagram

        def receive(self: Any, data: Any, *, now: float) -> int | None:
            if self is session:
                if not arrived:
                    time.sleep(0.03)  # (this datagram takes 30 ms to handle)
                    arrived.append(loop.time())
                    for datagram, endpoint in late.items():
                        endpoint._arrive(datagram, endpoint.getpeername())
                if bytes(data) in late:
                    timed[bytes(data)] = now
            return original(self, data, now=now)

        monkeypatch.setattr(type(session), "receive_datagram", receive)
        for packet in flows("10.2.0.9", "10.1.0.5", 40):
            server.tun.inject(packet)
        await until(lambda: len(timed) == len(late), what="the late datagrams read")
        assert min(timed.values()) >= arrived[0], (timed, arrived)
        # (dropped as malformed, and counted)
        assert sum(session.statistics().drops.values()) >= len(late)
        site.portal.close()
        server.portal.close()

    run(main())
