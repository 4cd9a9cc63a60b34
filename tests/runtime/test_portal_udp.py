"""The portals over real UDP sockets on loopback (IPv4 and IPv6 paths) with in-memory TUNs."""

from __future__ import annotations

import asyncio
import time

import uvloop
from iotest import udp_packet
from seckeys import local_security, remote_security

from braid.core.session import SessionConfig
from braid.io.memory import MemoryTun
from braid.io.udp import open_listen_socket, open_path_socket
from braid.runtime.portal import LocalPortal, PathLink, RemotePortal

# (The bursts below come from no TCP: they do not back off, so early drop is off and
# every packet must arrive.)
CONFIG = SessionConfig(
    scheduler="round-robin", keepalive_interval=0.05, dead_interval=0.3, early_drop=0.0
)


async def until(condition, timeout: float = 5.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def test_real_sockets_mixed_families_and_throughput() -> None:
    async def main() -> None:
        listen = open_listen_socket("::", 0)  # dual stack: one IPv6 and one IPv4 path
        port = listen.getsockname()[1]
        links = [
            PathLink(0, "v6", open_path_socket(remote=("::1", port), source="::1", link="v6")),
            PathLink(
                1, "v4", open_path_socket(remote=("127.0.0.1", port), source="127.0.0.2", link="v4")
            ),
        ]
        ltun, rtun = MemoryTun("l0"), MemoryTun("r0")
        local = LocalPortal(ltun, links, session_config=CONFIG, security=local_security())
        remote = RemotePortal(rtun, listen, session_config=CONFIG, security=remote_security())
        remote.start()
        local.start()
        await until(
            lambda: [p.up for p in local.session.statistics().paths] == [True, True],
            what="both paths up",
        )

        # Throughput: 20 000 packets of 1400 bytes in bursts that fit the socket buffers.
        total, burst = 20_000, 200
        packet = udp_packet("10.1.0.5", "10.2.0.9", 1000, 5000, bytes(1372))
        got = 0
        start = time.perf_counter()
        for _ in range(total // burst):
            for _ in range(burst):
                ltun.inject(packet)
            target = got + burst

            def arrived(target: int = target) -> bool:
                nonlocal got
                got += len(rtun.collect())
                return got >= target

            await until(arrived, what="a burst")
        elapsed = time.perf_counter() - start
        rate = total / elapsed
        print(
            f"\nruntime over loopback UDP: {rate:,.0f} packets/s, {rate * 1400 * 8 / 1e6:.0f} Mbit/s"
        )
        assert got == total

        # Both families carried data; nothing was dropped anywhere.
        paths = remote.statistics().sessions[0].paths
        assert all(p.datagrams_received > total // 3 for p in paths), paths
        for portal in (local, remote):
            counters = portal.statistics().counters
            assert counters.socket_send_errors == 0
            assert counters.send_rejected == 0
            assert counters.tun_write_errors == 0

        # And back: the remote portal answers through the learned addresses.
        rtun.inject(udp_packet("10.2.0.9", "10.1.0.5", 5000, 1000, b"reply"))
        await until(lambda: bool(ltun.collect()), what="the reply")
        local.close()
        await until(lambda: not remote.sessions, what="session closed at the remote")
        remote.close()

    uvloop.run(asyncio.wait_for(main(), 60))


def test_local_portal_tolerates_a_remote_that_is_not_there_yet() -> None:
    """ICMP port unreachable turns into ECONNREFUSED on connected sockets: counted, no crash."""

    async def main() -> None:
        probe = open_listen_socket("127.0.0.1", 0)
        port = probe.getsockname()[1]
        probe.close()  # nobody listens on `port` now
        links = [PathLink(0, "a", open_path_socket(remote=("127.0.0.1", port), source="127.0.0.1"))]
        ltun = MemoryTun("l0")
        local = LocalPortal(ltun, links, session_config=CONFIG, security=local_security())
        local.start()
        await until(
            lambda: (
                local.statistics().counters.socket_receive_errors
                + local.statistics().counters.socket_send_errors
                > 0
            ),
            what="refused datagrams",
        )
        # The remote portal appears on that port: the session comes up by itself.
        rtun = MemoryTun("r0")
        remote = RemotePortal(
            rtun,
            open_listen_socket("127.0.0.1", port),
            session_config=CONFIG,
            security=remote_security(),
        )
        remote.start()
        await until(lambda: local.session.statistics().paths[0].up, what="path up")
        ltun.inject(udp_packet("10.1.0.5", "10.2.0.9", 1000, 5000, b"hello"))
        await until(lambda: bool(rtun.collect()), what="packet through")
        local.close()
        remote.close()

    asyncio.run(asyncio.wait_for(main(), 30))
