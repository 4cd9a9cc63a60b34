"""A local and a remote portal over the in-memory drivers, each with its API, in a thread.

The portals, the sessions and the API servers are the real ones; only the TUN devices
and the network are in-memory. Everything runs on one event loop in a background
thread, so tests (and a browser) talk to the APIs over real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from braid.control.api import Api, ApiServer
from braid.control.service import PortalService
from braid.core.classify import TrafficClass
from braid.core.keys import public_key
from braid.core.secure import PeerSpec, SecureConfig
from braid.core.session import SessionConfig
from braid.io.memory import MemoryNetwork, MemoryTun
from braid.runtime.portal import LocalPortal, PathLink, RemotePortal

T = TypeVar("T")

CONFIG = SessionConfig(
    scheduler="round-robin",
    keepalive_interval=0.05,
    hello_interval=0.05,
    dead_interval=0.25,
    # A class the harness traffic never matches: its scheduler is changed at run time.
    classes=(TrafficClass("voice", proto=frozenset({17}), ports=frozenset({5004}), priority=1),),
)
SERVER = ("198.51.100.1", 7100)
HOSTS = ("192.0.2.2", "203.0.113.2")


def _ipv4(protocol: int, src: str, dst: str, body: bytes) -> bytes:
    """An IPv4 header without options (its checksum right: header compression carries
    only packets it can rebuild) followed by `body`."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(body),
        0,
        0x4000,
        64,
        protocol,
        0,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
    )
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:] + body


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A minimal IPv4/UDP packet (UDP checksum zero: nothing in the path checks it)."""
    return _ipv4(17, src, dst, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def ipv4_tcp_syn(src: str, dst: str, sport: int, dport: int, mss: int) -> bytes:
    """A minimal IPv4 TCP SYN with one option, the MSS (TCP checksum zero: the clamp
    updates it incrementally and nothing in the path checks it)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 6 << 4, 0x02, 64240, 0, 0)
    return _ipv4(6, src, dst, tcp + struct.pack("!BBH", 2, 4, mss))


class Harness:
    """Both portals and their APIs on a background loop; `stop()` tears everything down."""

    def __init__(
        self, *, local_config: SessionConfig = CONFIG, remote_config: SessionConfig = CONFIG
    ) -> None:
        self.local_config = local_config
        """The local portal's session settings."""
        self.remote_config = remote_config
        """The remote portal's session settings."""
        self.token = secrets.token_hex(16)  # (urlsafe may start with "-": an option to argparse)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.traffic_task: asyncio.Task[None] | None = None
        self.call(self._setup())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the harness loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run `fn()` on the harness loop (portal state is only touched there)."""

        async def run() -> T:
            return fn()

        return self.call(run())

    async def _setup(self) -> None:
        self.net = MemoryNetwork()
        remote_key, local_key = os.urandom(32), os.urandom(32)
        self.remote_security = SecureConfig(
            private_key=remote_key,
            peers=(
                PeerSpec(
                    public_key(local_key),
                    allowed_ips=(ipaddress.ip_network("10.1.0.0/24"),),
                    name="site1",
                ),
            ),
        )
        self.local_security = SecureConfig(
            private_key=local_key, peers=(PeerSpec(public_key(remote_key)),)
        )
        self.remote_tun = MemoryTun("r0")
        self.remote = RemotePortal(
            self.remote_tun,
            self.net.endpoint(*SERVER),
            session_config=self.remote_config,
            security=self.remote_security,
        )
        self.local_tun = MemoryTun("l0")
        links = [
            PathLink(i, f"link{i}", self.net.connected_endpoint(host, SERVER), rate_bps=10**7)
            for i, host in enumerate(HOSTS)
        ]
        self.local = LocalPortal(
            self.local_tun, links, session_config=self.local_config, security=self.local_security
        )
        self.remote.start()
        self.local.start()
        counter = iter(range(1, 1000))

        def open_endpoint(
            *,
            remote: tuple[str, int],
            interface: str | None = None,
            source: str | None = None,
            link: str | None = None,
        ) -> Any:
            host = source or f"192.0.2.{100 + next(counter)}"
            return self.net.connected_endpoint(host, remote)

        self.local_service = PortalService(self.local, open_endpoint=open_endpoint)
        self.remote_service = PortalService(self.remote)
        self.local_server = ApiServer(Api(self.local_service, token=self.token), port=0)
        self.remote_server = ApiServer(Api(self.remote_service, token=self.token), port=0)
        await self.local_server.start()
        await self.remote_server.start()

    @property
    def local_url(self) -> str:
        return self.local_server.url

    @property
    def remote_url(self) -> str:
        return self.remote_server.url

    def start_traffic(self, *, interval: float = 0.005, burst: int = 8) -> None:
        """Keep sending UDP packets from the site into the tunnel (both directions)."""

        async def pump() -> None:
            n = 0
            payload = b"x" * 1000
            while True:
                for _ in range(burst):
                    n += 1
                    self.local_tun.inject(
                        ipv4_udp("10.1.0.2", "10.2.0.2", 1000 + n % 8, 5000, payload)
                    )
                    if self.remote.sessions:
                        self.remote_tun.inject(
                            ipv4_udp("10.2.0.2", "10.1.0.2", 5000, 1000 + n % 8, payload)
                        )
                self.local_tun.collect()
                self.remote_tun.collect()
                await asyncio.sleep(interval)

        async def begin() -> None:
            self.traffic_task = asyncio.get_running_loop().create_task(pump())

        self.call(begin())

    def wait_session(self, timeout: float = 5.0) -> str:
        """Wait until the remote portal has a session; its hex id."""

        async def wait() -> str:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while not self.remote.sessions:
                if loop.time() > end:
                    raise AssertionError("no session came up")
                await asyncio.sleep(0.01)
            return f"{next(iter(self.remote.sessions)):08x}"

        return self.call(wait(), timeout + 1)

    def stop(self) -> None:
        async def teardown() -> None:
            if self.traffic_task is not None:
                self.traffic_task.cancel()
            await self.local_server.stop()
            await self.remote_server.stop()
            self.local.close()
            self.remote.close()

        try:
            self.call(teardown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


def request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; (status, parsed JSON body or text, headers)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, text, headers = resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, text, headers = exc.code, exc.read().decode(), dict(exc.headers)
    ctype = headers.get("Content-Type", "")
    return status, (json.loads(text) if "json" in ctype and text else text), headers
