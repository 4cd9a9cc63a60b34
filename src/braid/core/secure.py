# The security layer of wire version 3 (docs/protocol.md, docs/security.md), sans-I/O.
#
#   SecureSession wraps a TunnelSession and keeps its driver contract:
#     outbound: each version-1 frame the inner session produced is sealed into a version-3
#       record (version byte 3, the 16-byte header and the key id are associated data);
#     inbound: handshake messages are handled here; a transport record is opened (key id,
#       replay window, tag) and only then handed to the inner session as the version-1
#       frame it carries (version byte rewritten 3 -> 1; every other byte authenticated).
#   SecureServer is the remote portal's side: identity, admission gate, configured peers,
#   and the table session id -> SecureSession; it answers only authenticated initiations.
#
# Invariants:
# - The inner session sees only datagrams that authenticated under the session's keys and
#   passed the replay window, so a path is created, and its address learned by the driver,
#   only by proof (the driver learns an address only from an accepted datagram).
# - Nothing unauthenticated is ever answered, except cookie replies that the gate allows
#   (valid MAC1, under load, rate limited per source). Every dropped datagram is counted
#   under exactly one reason; no exception escapes `receive_datagram` for any input bytes.
# - A session id belongs to the peer whose initiation created it: an initiation from
#   another peer with that id is refused. A peer has at most one session: a fresh
#   authenticated initiation with a new session id ends the peer's older session.
# - The responder drops a delivered inner packet whose source address lies outside its
#   peer's allowed prefixes (counted `source_not_allowed`).
# - The initiator handshakes at start, when its keys are due for rotation
#   (`rekey_after_time`) and after `rehandshake_after` seconds without any authenticated
#   datagram (a restarted remote portal); retries back off (HandshakeRetry) and rotate over
#   the paths, preferring those that are up.
# - No I/O, no clock, no randomness of its own: `now`, `rng` and `wall_clock` (Unix time,
#   for handshake timestamps only) are passed in.

from __future__ import annotations

import ipaddress
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

from braid.core.cookie import (
    CookieJar,
    GateStatistics,
    HandshakeGate,
    TokenBucket,
    Verdict,
    source_bytes,
    source_key,
)
from braid.core.handshake import (
    INITIATION_LEN,
    TYPE_COOKIE_REPLY,
    TYPE_INITIATION,
    TYPE_RESPONSE,
    ZERO_PSK,
    HandshakeError,
    HandshakeRetry,
    Identity,
    Peer,
    PendingHandshake,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
    verify_mac1,
)
from braid.core.keys import (
    COMMON_HEADER_LEN,
    REKEY_AFTER_TIME,
    CryptoError,
    KeyRing,
    KeyRingStatistics,
)
from braid.core.session import (
    Event,
    SessionConfig,
    SessionStatistics,
    TunnelSession,
)
from braid.core.wire import VERSION as VERSION_1
from braid.core.wire import Buffer

__all__ = [
    "VERSION",
    "PeerSpec",
    "SecureConfig",
    "SecureServer",
    "SecureSession",
    "SecureStatistics",
    "ServerStatistics",
    "SessionOpened",
]

VERSION: Final = 3
"""The wire version this layer speaks (docs/protocol.md)."""
REHANDSHAKE_AFTER: Final = 3.0
"""The initiator handshakes again after this long without an authenticated datagram."""
DEFAULT_MAX_SESSIONS: Final = 1024
_MAX_SOURCE_CACHE: Final = 4096
_SOURCE_FLOOD_RATE: Final = 50.0
_SOURCE_FLOOD_BURST: Final = 20.0
_NO_MAC2: Final = bytes(16)

Rng = Callable[[int], bytes]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int] | tuple[str, int, int, int]

_V1: Final = bytes((VERSION_1,))
_VWIRE: Final = bytes((VERSION,))
_TRANSPORT_TYPES: Final = frozenset((1, 2, 3, 4, 8, 9, 10))


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """A configured peer: its static public key, optional PSK and allowed inner sources.

    An empty `allowed_ips` allows every source (the local portal's view of its remote).
    """

    public_key: bytes
    preshared_key: bytes | None = None
    allowed_ips: tuple[Network, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise ValueError("public_key: must be 32 bytes")
        if self.preshared_key is not None and len(self.preshared_key) != 32:
            raise ValueError("preshared_key: must be 32 bytes")


@dataclass(frozen=True, slots=True)
class SecureConfig:
    """A portal's security settings: its private key, its peers and the mode.

    `encryption=False` is auth-only mode (integrity and replay protection, payload in
    clear): the local portal requests it; a remote portal accepts auth-only sessions only
    when it is configured so itself.
    """

    private_key: bytes
    peers: tuple[PeerSpec, ...]
    encryption: bool = True
    rekey_after_time: float = REKEY_AFTER_TIME
    rehandshake_after: float = REHANDSHAKE_AFTER

    def __post_init__(self) -> None:
        if len(self.private_key) != 32:
            raise ValueError("private_key: must be 32 bytes")
        if not self.peers:
            raise ValueError("peers: at least one peer is required")
        if not 0 < self.rekey_after_time <= REKEY_AFTER_TIME:
            raise ValueError(f"rekey_after_time: must be in (0, {REKEY_AFTER_TIME:g}] seconds")
        if not 0 < self.rehandshake_after < math.inf:
            raise ValueError("rehandshake_after: must be a positive number of seconds")


def _source(host: str, port: int) -> tuple[str, bytes]:
    """(rate-limit key, cookie source bytes) of an address; dotted IPv4 the fast way."""
    parts = host.split(".")
    if len(parts) == 4 and ":" not in host:
        packed = bytes(int(p) for p in parts)  # ValueError if out of range or not digits
        if all(p.isdigit() and len(p) <= 3 for p in parts):
            return host, packed + port.to_bytes(2, "big")
    return source_key(host), source_bytes(host, port)


_ALLOWED_CACHE = 4096
"""Source addresses an `AllowedSources` remembers as allowed (then it starts over)."""


class AllowedSources:
    """A set of prefixes, tested against the source address of raw IPv4/IPv6 packets."""

    __slots__ = ("_allowed", "_v4", "_v6", "everything")

    def __init__(self, networks: Iterable[Network]) -> None:
        self._v4: list[tuple[int, int]] = []
        self._v6: list[tuple[int, int]] = []
        self._allowed: set[bytes] = set()  # sources found in a prefix (4 or 16 bytes)
        nets = list(networks)
        self.everything = not nets
        for net in nets:
            pair = (int(net.network_address), int(net.netmask))
            (self._v4 if net.version == 4 else self._v6).append(pair)

    def allows(self, packet: bytes) -> bool:
        """True if the packet's source address lies in one of the prefixes."""
        if self.everything:
            return True
        if not packet:
            return False
        version = packet[0] >> 4
        if version == 4 and len(packet) >= 20:
            source = packet[12:16]
            table = self._v4
        elif version == 6 and len(packet) >= 40:
            source = packet[8:24]
            table = self._v6
        else:
            return False
        allowed = self._allowed
        if source in allowed:  # (a site's few hosts: one set look-up per packet)
            return True
        src = int.from_bytes(source, "big")
        if not any(src & mask == net for net, mask in table):
            return False
        if len(allowed) >= _ALLOWED_CACHE:
            allowed.clear()
        allowed.add(source)
        return True


@dataclass(frozen=True, slots=True)
class SecureStatistics:
    """A snapshot of a SecureSession's security state."""

    peer: str
    auth_only: bool
    handshakes_completed: int
    initiations_sent: int
    keys: KeyRingStatistics
    drops: dict[str, int]


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """SecureServer event: a handshake created `session`; `replaced` is ended by it."""

    session: SecureSession
    replaced: SecureSession | None


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """A snapshot of a SecureServer: sessions, datagrams dropped before any session."""

    sessions: int
    handshakes: int
    drops: dict[str, int]
    gate: GateStatistics


class SecureSession:
    """A TunnelSession behind wire-version-2 security; the same driver contract.

    Build the initiator (local portal) with `SecureSession.initiator`; responders (remote
    portal) are made by `SecureServer`.
    """

    __slots__ = (
        "_drops",
        "_handshakes",
        "_hs_out",
        "_initiations",
        "_jar",
        "_last_auth",
        "_now",
        "_pending",
        "_retry",
        "_rng",
        "allowed",
        "auth_only",
        "identity",
        "inner",
        "is_initiator",
        "peer",
        "peer_name",
        "rehandshake_after",
        "ring",
        "wall_clock",
    )

    def __init__(
        self,
        inner: TunnelSession,
        *,
        identity: Identity,
        peer: Peer,
        is_initiator: bool,
        rng: Rng,
        now: float,
        allowed: AllowedSources | None = None,
        auth_only: bool = False,
        rekey_after_time: float = REKEY_AFTER_TIME,
        rehandshake_after: float = REHANDSHAKE_AFTER,
        wall_clock: Callable[[], float] | None = None,
        peer_name: str = "",
    ) -> None:
        self.inner = inner
        self.identity = identity
        self.peer = peer
        self.peer_name = peer_name
        self.is_initiator = is_initiator
        self.allowed = allowed if allowed is not None else AllowedSources(())
        self.auth_only = auth_only
        self.rehandshake_after = rehandshake_after
        self.wall_clock = wall_clock
        self.ring = KeyRing(is_initiator=is_initiator, rekey_after_time=rekey_after_time)
        self._rng = rng
        self._now = now
        self._drops: dict[str, int] = {}
        self._hs_out: list[tuple[int, bytes]] = []
        self._pending: PendingHandshake | None = None
        self._retry = HandshakeRetry(rng)
        self._jar = CookieJar(peer.public_key) if is_initiator else None
        self._last_auth = now
        self._handshakes = 0
        self._initiations = 0
        if is_initiator:
            if wall_clock is None:
                raise ValueError("wall_clock: the initiator needs Unix time for timestamps")
            self._retry.start(now)

    @classmethod
    def initiator(
        cls,
        inner: TunnelSession,
        config: SecureConfig,
        *,
        rng: Rng,
        now: float,
        wall_clock: Callable[[], float],
    ) -> SecureSession:
        """The local portal's session: handshakes with `config.peers[0]` at once."""
        spec = config.peers[0]
        peer = Peer(spec.public_key, spec.preshared_key or ZERO_PSK)
        return cls(
            inner,
            identity=Identity(config.private_key),
            peer=peer,
            is_initiator=True,
            rng=rng,
            now=now,
            allowed=AllowedSources(spec.allowed_ips),
            auth_only=not config.encryption,
            rekey_after_time=config.rekey_after_time,
            rehandshake_after=config.rehandshake_after,
            wall_clock=wall_clock,
            peer_name=spec.name,
        )

    # -- the inner session's contract, delegated -----------------------------------------

    def __getattr__(self, name: str) -> Any:
        """Anything else of the inner session's API (e.g. new read-only queries)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def session_id(self) -> int:
        """The session id (chosen by the initiator)."""
        return self.inner.session_id

    @property
    def role(self) -> str:
        """ "local" or "remote"."""
        return self.inner.role

    @property
    def closed(self) -> bool:
        """True once the inner session ended."""
        return self.inner.closed

    @property
    def established(self) -> bool:
        """True while the session holds keys it can send with."""
        return self.ring.send_keys(now=self._now) is not None

    def path_ids(self) -> tuple[int, ...]:
        """The ids of the inner session's paths."""
        return self.inner.path_ids()

    def add_path(
        self,
        path_id: int,
        *,
        rate_bps: int | None = None,
        metric: int = 0,
        download_bps: int | None = None,
        now: float,
    ) -> None:
        """Add a path to the inner session (see TunnelSession.add_path)."""
        self._now = now
        self.inner.add_path(
            path_id, rate_bps=rate_bps, metric=metric, download_bps=download_bps, now=now
        )

    def remove_path(self, path_id: int, *, now: float) -> None:
        """Remove a path from the inner session."""
        self._now = now
        self.inner.remove_path(path_id, now=now)

    def close(self, *, now: float) -> None:
        """End the session (the inner CLOSE frames are sealed on the next drain)."""
        self._now = now
        self.inner.close(now=now)

    def send_packet(self, ip_packet: bytes, *, now: float) -> bool:
        """Send one inner IP packet (sealed when drained); False if it cannot be sent."""
        return self.inner.send_packet(ip_packet, now=now)

    def next_event(self) -> Event | None:
        """The inner session's oldest pending event, or None."""
        return self.inner.next_event()

    # -- inputs ------------------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        drops = self._drops
        drops[reason] = drops.get(reason, 0) + 1

    def receive_datagram(self, data: Buffer, *, now: float) -> int | None:
        """Process one datagram from the peer: the path id if accepted, None if dropped."""
        self._now = now
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) < COMMON_HEADER_LEN:
            self._drop("truncated")
            return None
        if data[0] != VERSION:
            self._drop("bad_version")
            return None
        kind = data[1]
        if kind in _TRANSPORT_TYPES:
            try:
                body = self.ring.open_datagram(data, now=now)
            except CryptoError as exc:
                self._drop(exc.reason)
                return None
            self._last_auth = now
            return self.inner.receive_datagram(_V1 + data[1:COMMON_HEADER_LEN] + body, now=now)
        if kind == TYPE_RESPONSE and self.is_initiator:
            self._on_response(data, now)
        elif kind == TYPE_COOKIE_REPLY and self.is_initiator:
            pending = self._pending
            jar = self._jar
            if (
                pending is None
                or jar is None
                or not jar.consume_reply(data, mac1=pending.mac1, now=now)
            ):
                self._drop("bad_cookie")
        elif kind in (TYPE_INITIATION, TYPE_RESPONSE, TYPE_COOKIE_REPLY):
            self._drop("unexpected")
        else:
            self._drop("bad_type")
        return None

    def _on_response(self, data: bytes, now: float) -> None:
        pending = self._pending
        if pending is None:
            self._drop("unexpected")
            return
        try:
            keys = consume_response(data, pending, identity=self.identity, now=now)
        except HandshakeError as exc:
            self._drop(exc.reason)
            return
        self.ring.install(keys, now=now)
        self._pending = None
        self._retry.succeeded()
        self._handshakes += 1
        self._last_auth = now

    def handle_timer(self, *, now: float) -> None:
        """Do whatever is due by `now`: key expiry, handshakes, the inner session's timers."""
        self._now = now
        self.ring.handle_timer(now=now)
        self.inner.handle_timer(now=now)
        if self.is_initiator and not self.inner.closed:
            self._maybe_initiate(now)

    def _maybe_initiate(self, now: float) -> None:
        retry = self._retry
        if not retry.active and (
            self.ring.needs_rekey(now=now) or now >= self._last_auth + self.rehandshake_after
        ):
            retry.start(now)
        if not retry.due(now):
            return
        ids = self.inner.path_ids()
        if not ids:
            return
        up = [p.path_id for p in self.inner.statistics().paths if p.up]
        candidates = up or list(ids)
        path_id = candidates[self._initiations % len(candidates)]  # rotate, also on retries
        jar = self._jar
        assert jar is not None and self.wall_clock is not None
        message, pending = create_initiation(
            identity=self.identity,
            peer=self.peer,
            session_id=self.inner.session_id,
            key_id=self.ring.allocate_key_id(),
            path_id=path_id,
            wall_time=self.wall_clock(),
            now=now,
            rng=self._rng,
            auth_only=self.auth_only,
            cookie=jar.cookie(now=now),
        )
        self._pending = pending
        self._hs_out.append((path_id, message))
        self._initiations += 1
        retry.sent(now)

    # -- outputs -----------------------------------------------------------------------

    def datagrams_to_send(self, *, now: float) -> list[tuple[int, bytes]]:
        """Handshake messages, then the inner session's frames sealed (path id, bytes)."""
        self._now = now
        if self.is_initiator and self._retry.due(now) and not self.inner.closed:
            self._maybe_initiate(now)
        frames = self.inner.datagrams_to_send(now=now)
        out = self._hs_out
        if out:
            self._hs_out = []
        else:
            out = []
        if not frames:
            return out
        ring = self.ring
        keys = ring.send_keys(now=now)
        if keys is None:
            self._drops["no_key"] = self._drops.get("no_key", 0) + len(frames)
            if self.is_initiator and not self._retry.active:
                self._retry.start(now)
            return out
        seal = ring.seal_datagram
        append = out.append
        for path_id, frame in frames:
            try:
                append((path_id, seal(_VWIRE + frame[1:COMMON_HEADER_LEN], frame[16:], now=now)))
            except CryptoError as exc:
                self._drop(exc.reason)
                if exc.reason == "counter_reuse" and self.is_initiator and not self._retry.active:
                    # (A path numbered again from a number these keys sealed: never with
                    # this session, which numbers on. New keys make it usable again.)
                    self._retry.start(now)
        return out

    def packets_to_deliver(self) -> list[bytes]:
        """Inner packets released in order (at the responder: only from allowed sources)."""
        packets = self.inner.packets_to_deliver()
        allowed = self.allowed
        if not packets or allowed.everything:
            return packets
        kept = [p for p in packets if allowed.allows(p)]
        if len(kept) != len(packets):
            self._drops["source_not_allowed"] = self._drops.get("source_not_allowed", 0) + (
                len(packets) - len(kept)
            )
        return kept

    def get_timer(self) -> float | None:
        """The one absolute time at which `handle_timer` must next be called (None: never)."""
        if self.inner.closed:
            return None
        timer = self.inner.get_timer()
        retry = self._retry
        if self.is_initiator:
            deadlines = [
                retry.deadline(),
                self.ring.get_timer(include_rekey=not retry.active),
            ]
            if not retry.active:
                deadlines.append(self._last_auth + self.rehandshake_after)
        else:
            deadlines = [self.ring.get_timer()]
        for deadline in deadlines:
            if deadline is not None and (timer is None or deadline < timer):
                timer = deadline
        return timer

    def statistics(self) -> SessionStatistics:
        """The inner session's snapshot, with the security drop counters merged in."""
        stats = self.inner.statistics()
        if not self._drops:
            return stats
        drops = dict(stats.drops)
        for reason, count in self._drops.items():
            drops[reason] = drops.get(reason, 0) + count
        return replace(stats, drops=drops)

    def security_statistics(self) -> SecureStatistics:
        """A snapshot of the keys, handshakes and security drops."""
        return SecureStatistics(
            peer=self.peer_name,
            auth_only=self.auth_only,
            handshakes_completed=self._handshakes,
            initiations_sent=self._initiations,
            keys=self.ring.statistics(now=self._now),
            drops=dict(self._drops),
        )


class SecureServer:
    """The remote portal's security: identity, admission gate, peers and their sessions.

    Feed every received datagram to `receive_datagram` with its source address. Then drain
    `replies_to_send()` (handshake responses and cookie replies, each to its source) and
    `next_event()` (SessionOpened). Call `forget(session)` when a session ended.
    """

    def __init__(
        self,
        config: SecureConfig,
        *,
        session_config: SessionConfig,
        rng: Rng,
        now: float,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        gate: HandshakeGate | None = None,
    ) -> None:
        self.config = config
        self.session_config = session_config
        self.identity = Identity(config.private_key)
        self.max_sessions = max_sessions
        self._rng = rng
        self.gate = gate or HandshakeGate(
            public_key=self.identity.public_key,
            mac1_key=self.identity.mac1_key,
            rng=rng,
            now=now,
        )
        self._specs: dict[bytes, PeerSpec] = {}
        self._peers: dict[bytes, Peer] = {}
        self._allowed: dict[bytes, AllowedSources] = {}
        for spec in config.peers:
            if spec.public_key in self._peers:
                raise ValueError("peers: a public key is listed twice")
            self._specs[spec.public_key] = spec
            self._peers[spec.public_key] = Peer(
                spec.public_key,
                spec.preshared_key or ZERO_PSK,
                allow_auth_only=not config.encryption,
            )
            self._allowed[spec.public_key] = AllowedSources(spec.allowed_ips)
        self._sessions: dict[int, SecureSession] = {}
        self._by_peer: dict[bytes, SecureSession] = {}
        self._replies: list[tuple[bytes, Address]] = []
        self._events: deque[SessionOpened] = deque()
        self._drops: dict[str, int] = {}
        self._handshakes = 0
        # (host, port) -> (rate-limit key, cookie source bytes): parsing addresses costs
        # more than the MAC1 check, so a flood from few sources pays it once per source.
        # The bucket admits at most _SOURCE_FLOOD_RATE cookie-less initiations per second
        # from one address to the MAC1 check and the gate.
        self._sources: dict[Address, tuple[str, bytes, TokenBucket]] = {}

    @property
    def sessions(self) -> dict[int, SecureSession]:
        """The live sessions by session id (a copy)."""
        return dict(self._sessions)

    def _drop(self, reason: str) -> None:
        drops = self._drops
        drops[reason] = drops.get(reason, 0) + 1

    def receive_datagram(
        self, data: Buffer, address: Address, *, now: float
    ) -> tuple[SecureSession, int | None] | None:
        """Process one datagram from `address` ((host, port, ...)).

        Returns (session, accepted path id or None) when the datagram went to a session
        (flush it afterwards), None when it was handled (or dropped) here.
        """
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) < 8:
            self._drop("truncated")
            return None
        if data[0] != VERSION:
            self._drop("bad_version")
            return None
        kind = data[1]
        if kind in _TRANSPORT_TYPES:
            session = self._sessions.get(int.from_bytes(data[4:8], "big"))
            if session is None:
                self._drop("unknown_session")
                return None
            return session, session.receive_datagram(data, now=now)
        if kind != TYPE_INITIATION:
            self._drop("unexpected" if kind in (TYPE_RESPONSE, TYPE_COOKIE_REPLY) else "bad_type")
            return None
        self._initiation(data, address, now)
        return None

    def _initiation(self, data: bytes, address: Address, now: float) -> None:
        if len(data) != INITIATION_LEN:
            self._drop("bad_length")
            return
        sources = self._sources
        known = sources.get(address)
        if known is not None and data[-16:] == _NO_MAC2 and not known[2].take(now=now):
            # This source already sent more initiations without a cookie than any genuine
            # initiator does: dropped before even MAC1 (a dict lookup and a token bucket).
            # Initiations carrying a MAC2 still go through the gate (cookie holders pass).
            self._drop("source_flood")
            return
        if not verify_mac1(data, self.identity.mac1_key):  # cheapest crypto rejection
            self._drop("bad_mac1")
            return
        if known is None:
            try:
                known = (
                    *_source(address[0], address[1]),
                    TokenBucket(_SOURCE_FLOOD_RATE, _SOURCE_FLOOD_BURST, now=now),
                )
            except (ValueError, IndexError, TypeError, AttributeError):
                self._drop("bad_source")
                return
            if len(sources) >= _MAX_SOURCE_CACHE:
                sources.clear()
            sources[address] = known
        key, source, _ = known
        gate = self.gate
        verdict = gate.check(data, key, source, now=now, mac1_verified=True)
        if verdict is Verdict.COOKIE:
            self._replies.append((gate.create_reply(data, source, now=now), address))
            self._drop("cookie_sent")
            return
        if verdict is not Verdict.ACCEPT:
            self._drop(verdict.value)
            return
        try:
            initiation = consume_initiation(
                data, identity=self.identity, peers=self._peers, now=now
            )
        except HandshakeError as exc:
            self._drop(exc.reason)
            return
        peer_key = initiation.peer.public_key
        session = self._sessions.get(initiation.session_id)
        if session is not None and session.peer is not initiation.peer:
            self._drop("session_owned")
            return
        if session is None or session.closed:
            if session is None and len(self._sessions) >= self.max_sessions:
                self._drop("too_many_sessions")
                return
            replaced = self._by_peer.get(peer_key)
            if replaced is not None:
                self.forget(replaced)
                replaced.close(now=now)
            spec = self._specs[peer_key]
            inner = TunnelSession(
                self.session_config, role="remote", session_id=initiation.session_id, now=now
            )
            session = SecureSession(
                inner,
                identity=self.identity,
                peer=initiation.peer,
                is_initiator=False,
                rng=self._rng,
                now=now,
                allowed=self._allowed[peer_key],
                auth_only=initiation.auth_only,
                peer_name=spec.name,
            )
            self._sessions[initiation.session_id] = session
            self._by_peer[peer_key] = session
            self._events.append(SessionOpened(session, replaced))
        response, keys = create_response(initiation, now=now, rng=self._rng)
        session.ring.install(keys, now=now)
        session._handshakes += 1
        self._handshakes += 1
        self._replies.append((response, address))

    def forget(self, session: SecureSession) -> None:
        """Remove an ended session from the tables (idempotent)."""
        sid = session.session_id
        if self._sessions.get(sid) is session:
            del self._sessions[sid]
        key = session.peer.public_key
        if self._by_peer.get(key) is session:
            del self._by_peer[key]

    def replies_to_send(self) -> list[tuple[bytes, Address]]:
        """Handshake responses and cookie replies, each with the address to send it to."""
        replies = self._replies
        if not replies:
            return replies
        self._replies = []
        return replies

    def next_event(self) -> SessionOpened | None:
        """The oldest SessionOpened event, or None."""
        return self._events.popleft() if self._events else None

    def statistics(self) -> ServerStatistics:
        """A snapshot: live sessions, handshakes answered, drops before any session."""
        return ServerStatistics(
            sessions=len(self._sessions),
            handshakes=self._handshakes,
            drops=dict(self._drops),
            gate=self.gate.statistics(),
        )
