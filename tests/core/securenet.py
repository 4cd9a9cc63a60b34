"""A secure pair harness: a local SecureSession and a SecureServer over in-memory paths.

Fake time; every path has a one-way delay per direction (FIFO). The harness drives both
ends as the runtime does: one input, then drain datagrams, deliveries and events, and
fire timers at `get_timer()`. The remote side learns each path's address only from
datagrams the server accepted, exactly like `RemotePortal`. Extra datagrams (a third
party's) can be injected with `inject`.
"""

from __future__ import annotations

import heapq
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from braid.core.keys import generate_private_key, public_key
from braid.core.secure import PeerSpec, SecureConfig, SecureServer, SecureSession, SessionOpened
from braid.core.session import SessionConfig, TunnelSession

CONFIG = SessionConfig(scheduler="round-robin")
WALL_BASE = 1_750_000_000.0


def rng_from(seed: int) -> Callable[[int], bytes]:
    """A deterministic byte source."""
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


@dataclass
class Keys:
    """A key pair set for one pair of portals."""

    local_private: bytes
    remote_private: bytes

    @classmethod
    def fresh(cls, rng: Callable[[int], bytes] = os.urandom) -> Keys:
        return cls(generate_private_key(rng), generate_private_key(rng))


def address(path_id: int) -> tuple[str, int]:
    """The source address of the local portal's path `path_id`."""
    return (f"192.0.2.{path_id + 1}", 40000 + path_id)


@dataclass
class SecureNet:
    keys: Keys
    delays: list[float]
    local_encryption: bool = True
    remote_encryption: bool = True
    rekey_after_time: float = 120.0
    allowed: tuple[str, ...] = ("10.0.0.0/24",)
    seed: int = 1
    remote_public: bytes | None = None  # override: what the local portal believes
    local_public: bytes | None = None  # override: what the remote portal lists
    now: float = 0.0
    delivered: dict[str, list[bytes]] = field(default_factory=lambda: {"local": [], "remote": []})
    wire: list[tuple[str, int, bytes]] = field(default_factory=list)  # (dir, path, bytes)

    def __post_init__(self) -> None:
        import ipaddress

        rng = rng_from(self.seed)
        remote_pub = self.remote_public or public_key(self.keys.remote_private)
        local_pub = self.local_public or public_key(self.keys.local_private)
        self.local_config = SecureConfig(
            private_key=self.keys.local_private,
            peers=(PeerSpec(remote_pub),),
            encryption=self.local_encryption,
            rekey_after_time=self.rekey_after_time,
        )
        self.remote_config = SecureConfig(
            private_key=self.keys.remote_private,
            peers=(
                PeerSpec(
                    local_pub,
                    allowed_ips=tuple(ipaddress.ip_network(a) for a in self.allowed),
                    name="site",
                ),
            ),
            encryption=self.remote_encryption,
            rekey_after_time=self.rekey_after_time,
        )
        inner = TunnelSession(CONFIG, role="local", session_id=0x5EC0_0001, now=0.0)
        self.local = SecureSession.initiator(
            inner,
            self.local_config,
            rng=rng,
            now=0.0,
            wall_clock=lambda: WALL_BASE + self.now,
        )
        for pid in range(len(self.delays)):
            self.local.add_path(pid, now=0.0)
        self.server = SecureServer(self.remote_config, session_config=CONFIG, rng=rng, now=0.0)
        self.addresses: dict[int, dict[int, tuple[str, int]]] = {}  # session id -> path -> addr
        self.opened: list[SessionOpened] = []
        self._queue: list[tuple[float, int, str, int, bytes, tuple[str, int] | None]] = []
        self._order = 0
        self._apps: list[tuple[float, int, str, bytes]] = []
        self._drain_local()

    # -- scheduling --

    def _push(
        self, at: float, side: str, path_id: int, data: bytes, src: tuple[str, int] | None
    ) -> None:
        self._order += 1
        heapq.heappush(self._queue, (at, self._order, side, path_id, data, src))

    def inject(self, data: bytes, src: tuple[str, int], at: float | None = None) -> None:
        """A datagram from `src` arrives at the remote portal."""
        self._push(self.now if at is None else at, "remote", -1, data, src)

    def send(self, side: str, packet: bytes, at: float) -> None:
        """An application packet enters `side`'s tunnel at `at`."""
        self._order += 1
        heapq.heappush(self._apps, (at, self._order, side, packet))

    @property
    def remote(self) -> SecureSession | None:
        sessions = self.server.sessions
        return next(iter(sessions.values())) if sessions else None

    def run_until(self, end: float) -> None:
        while True:
            candidates = []
            if self._queue:
                candidates.append(self._queue[0][0])
            if self._apps:
                candidates.append(self._apps[0][0])
            t = self.local.get_timer()
            if t is not None:
                candidates.append(t)
            for s in self.server.sessions.values():
                t = s.get_timer()
                if t is not None:
                    candidates.append(t)
            nxt = min(candidates) if candidates else None
            if nxt is None or nxt > end:
                self.now = max(self.now, end)
                return
            self.now = max(self.now, nxt)
            self._step(self.now)

    def _step(self, now: float) -> None:
        if self._queue and self._queue[0][0] <= now:
            _, _, side, pid, data, src = heapq.heappop(self._queue)
            if side == "local":
                self.local.receive_datagram(data, now=now)
                self._drain_local()
            else:
                self._remote_receive(data, src or address(pid), now)
            return
        if self._apps and self._apps[0][0] <= now:
            _, _, side, packet = heapq.heappop(self._apps)
            if side == "local":
                self.local.send_packet(packet, now=now)
                self._drain_local()
            else:
                remote = self.remote
                if remote is not None:
                    remote.send_packet(packet, now=now)
                    self._drain_remote(remote)
            return
        t = self.local.get_timer()
        if t is not None and t <= now:
            self.local.handle_timer(now=now)
            self._drain_local()
        for s in list(self.server.sessions.values()):
            t = s.get_timer()
            if t is not None and t <= now:
                s.handle_timer(now=now)
                self._drain_remote(s)

    def _remote_receive(self, data: bytes, src: tuple[str, int], now: float) -> None:
        result = self.server.receive_datagram(data, src, now=now)
        for reply, dst in self.server.replies_to_send():
            self._to_local(reply, dst)
        event = self.server.next_event()
        while event is not None:
            self.opened.append(event)
            if event.replaced is not None:
                self.server.forget(event.replaced)
            event = self.server.next_event()
        if result is not None:
            session, pid = result
            if pid is not None:
                self.addresses.setdefault(session.session_id, {})[pid] = src
            self._drain_remote(session)

    def _to_local(self, data: bytes, dst: tuple[str, int] | tuple[str, int, int, int]) -> None:
        for pid in range(len(self.delays)):
            if address(pid) == dst:
                self.wire.append(("down", pid, data))
                self._push(self.now + self.delays[pid], "local", pid, data, None)
                return
        # sent to an address that is not one of ours (e.g. a spoofer): recorded only
        self.wire.append(("elsewhere", -1, data))

    def _drain_local(self) -> None:
        for pid, data in self.local.datagrams_to_send(now=self.now):
            self.wire.append(("up", pid, data))
            self._push(self.now + self.delays[pid], "remote", pid, data, None)
        self.delivered["local"].extend(self.local.packets_to_deliver())
        while self.local.next_event() is not None:
            pass

    def _drain_remote(self, session: SecureSession) -> None:
        addrs = self.addresses.get(session.session_id, {})
        for pid, data in session.datagrams_to_send(now=self.now):
            dst = addrs.get(pid)
            if dst is not None:
                self._to_local(data, dst)
        self.delivered["remote"].extend(session.packets_to_deliver())
        while session.next_event() is not None:
            pass
