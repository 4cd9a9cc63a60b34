"""The pair harness: a local and a remote TunnelSession over an in-memory multi-path link.

Each path has two directions ("up": local to remote, "down": remote to local), each with
its own `LinkProfile`: base delay, uniform jitter (FIFO kept), loss, duplication and
reordering (a reordered datagram leaves the FIFO and takes an extra random delay). All
randomness comes from `random.Random(seed)`. Time is fake: `run_until` jumps to the next
event (the earlier of both sessions' timers, the next link arrival and the next scheduled
application packet) and drives the sessions exactly as a runtime would: one input, then
drain datagrams, deliveries and events.

The remote session is created, like the runtime does, by the first HELLO that arrives.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import struct
from dataclasses import dataclass, field
from typing import Final

from braid.core.compact import Decompressor
from braid.core.session import Event, SessionConfig, TunnelSession
from braid.core.wire import (
    DATA_HEADER_SIZE,
    FLAG_COMPACT,
    FLAG_CONTEXT,
    HEADER,
    is_hello,
    peek_session_id,
)

LOCAL: Final = "local"
REMOTE: Final = "remote"
UP = "up"  # local -> remote
DOWN = "down"  # remote -> local

_FLOW = struct.Struct("!II")


@dataclass(frozen=True)
class LinkProfile:
    """One direction of one path."""

    delay: float = 0.010
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.005


@dataclass
class DirectionStats:
    """What the link did to one direction of one path."""

    sent: int = 0
    dropped: list[int] = field(default_factory=list)  # path_seq of each dropped datagram
    duplicated: int = 0
    arrived: int = 0
    by_type: dict[int, int] = field(default_factory=dict)  # datagrams sent per frame type


def _ipv4_header(flow: int, protocol: int, total: int) -> bytes:
    """The IPv4 header of the test packets of `flow` (10.0.0.1 -> 10.1.x.y), with its
    checksum (header compression carries only packets it can rebuild)."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0,
        64,
        protocol,
        0,
        bytes((10, 0, 0, 1)),
        bytes((10, 1, (flow >> 8) & 0xFF, flow & 0xFF)),
    )
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]


def udp_packet(flow: int, seq: int, size: int = 120) -> bytes:
    """An IPv4/UDP packet of `size` bytes whose payload names its flow and sequence."""
    payload = _FLOW.pack(flow, seq).ljust(size - 28, b"\0")
    udp = struct.pack("!HHHH", 1024 + (flow % 50000), 5201, 8 + len(payload), 0)
    return _ipv4_header(flow, 17, 28 + len(payload)) + udp + payload


def tcp_packet(flow: int, seq: int, size: int = 1200, flags: int = 0x10) -> bytes:
    """An IPv4/TCP segment of `size` bytes whose payload names its flow and sequence; of
    40 bytes, no payload (a pure acknowledgement with the default `flags`, ACK): the flow is
    then in the source port and the sequence in the TCP sequence number."""
    payload = b"" if size == 40 else _FLOW.pack(flow, seq).ljust(size - 40, b"\0")
    tcp = struct.pack("!HHIIBBHHH", 1024 + flow, 5201, seq, 0, 0x50, flags, 65535, 0, 0)
    return _ipv4_header(flow, 6, 40 + len(payload)) + tcp + payload


def parse_packet(packet: bytes) -> tuple[int, int]:
    """(flow, seq) of a packet made by `udp_packet` or `tcp_packet`."""
    if packet[9] == 6 and len(packet) == 40:
        port, seq = struct.unpack_from("!H2xI", packet, 20)
        return port - 1024, seq
    flow, seq = _FLOW.unpack_from(packet, 40 if packet[9] == 6 else 28)
    return flow, seq


def _fill(config: SessionConfig | None, probe_rates: bool) -> SessionConfig:
    """`config` (the default one for None) with `probe_rates` as given."""
    return dataclasses.replace(config or SessionConfig(), probe_rates=probe_rates)


class PairNet:
    """Two sessions, N paths, fake time."""

    def __init__(
        self,
        seed: int,
        paths: dict[int, LinkProfile | tuple[LinkProfile, LinkProfile]],
        *,
        config: SessionConfig | None = None,
        remote_config: SessionConfig | None = None,
        rates: dict[int, int] | None = None,
        metrics: dict[int, int] | None = None,
        downloads: dict[int, int] | None = None,
        session_id: int = 0x5EED1234,
        probe_rates: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.profiles: dict[tuple[str, int], LinkProfile] = {}
        for path_id, profile in paths.items():
            up, down = profile if isinstance(profile, tuple) else (profile, profile)
            self.profiles[(UP, path_id)] = up
            self.profiles[(DOWN, path_id)] = down
        self.stats = {key: DirectionStats() for key in self.profiles}
        # Fill PROBEs (`probe_rates`) look for a link's capacity, which these links do not
        # have (a startup over them never ends): off unless a test asks for them.
        remote_config = remote_config if remote_config is not None else config
        self.remote_config = _fill(remote_config, probe_rates)
        config = _fill(config, probe_rates)
        self.local = TunnelSession(config, role=LOCAL, session_id=session_id, now=0.0)
        self.remote: TunnelSession | None = None
        self.remote_refused = 0
        self.silent: set[int] = set()
        self.delivered: dict[str, list[tuple[float, bytes]]] = {LOCAL: [], REMOTE: []}
        self.events: dict[str, list[tuple[float, Event]]] = {LOCAL: [], REMOTE: []}
        self.sent: dict[str, list[tuple[float, int, bytes]]] = {LOCAL: [], REMOTE: []}
        self.send_refused = {LOCAL: 0, REMOTE: 0}
        self._arrivals: list[tuple[float, int, str, int, bytes]] = []
        self._traffic: list[tuple[float, int, str, bytes]] = []
        self._order = 0
        self._fifo: dict[tuple[str, int], float] = {}
        for path_id in sorted(paths):
            rate = (rates or {}).get(path_id)
            metric = (metrics or {}).get(path_id, 0)
            download = (downloads or {}).get(path_id)
            self.local.add_path(
                path_id, rate_bps=rate, metric=metric, download_bps=download, now=0.0
            )
        self._drain(LOCAL)

    # -- traffic -----------------------------------------------------------------------

    def schedule(self, side: str, at: float, packet: bytes) -> None:
        """Make `side`'s application send `packet` at time `at`."""
        heapq.heappush(self._traffic, (at, self._next_order(), side, packet))

    def schedule_flows(
        self,
        side: str,
        *,
        start: float,
        stop: float,
        interval: float,
        flows: int,
        size: int = 120,
    ) -> int:
        """Send one packet every `interval`, cycling over `flows` flows; returns the count."""
        count = 0
        seqs = [0] * flows
        at = start
        while at < stop:
            flow = count % flows
            self.schedule(side, at, udp_packet(flow, seqs[flow], size))
            seqs[flow] += 1
            count += 1
            at = start + count * interval
        return count

    # -- the loop ----------------------------------------------------------------------

    def session(self, side: str) -> TunnelSession:
        """The session of `side` (the remote one must exist by now)."""
        if side == LOCAL:
            return self.local
        assert self.remote is not None, f"no remote session yet (seed={self.seed})"
        return self.remote

    def run_until(self, end: float) -> None:
        """Advance fake time to `end`, processing every event due on the way."""
        spins = 0
        while True:
            at = self._next_time()
            if at is None or at > end:
                break
            if at <= self.now:
                spins += 1
                assert spins < 100_000, f"busy loop at t={self.now} (seed={self.seed})"
                at = self.now
            else:
                spins = 0
            self.now = at
            self._step(at)
        self.now = max(self.now, end)

    def _next_time(self) -> float | None:
        candidates = []
        if self._arrivals:
            candidates.append(self._arrivals[0][0])
        if self._traffic:
            candidates.append(self._traffic[0][0])
        for session in (self.local, self.remote):
            if session is not None:
                timer = session.get_timer()
                if timer is not None:
                    candidates.append(timer)
        return min(candidates) if candidates else None

    def _step(self, now: float) -> None:
        while self._arrivals and self._arrivals[0][0] <= now:
            _, _, side, path_id, data = heapq.heappop(self._arrivals)
            self._arrive(side, path_id, data, now)
        while self._traffic and self._traffic[0][0] <= now:
            _, _, side, packet = heapq.heappop(self._traffic)
            session = self.local if side == LOCAL else self.remote
            if session is None or not session.send_packet(packet, now=now):
                self.send_refused[side] += 1
            self._drain(side)
        for side, session in ((LOCAL, self.local), (REMOTE, self.remote)):
            if session is None:
                continue
            timer = session.get_timer()
            if timer is not None and timer <= now:
                session.handle_timer(now=now)
                self._drain(side)

    def _arrive(self, side: str, path_id: int, data: bytes, now: float) -> None:
        if side == REMOTE and self.remote is None:
            if not is_hello(data):
                self.remote_refused += 1
                return
            self.remote = TunnelSession(
                self.remote_config, role=REMOTE, session_id=peek_session_id(data), now=now
            )
        self.session(side).receive_datagram(data, now=now)
        self._drain(side)

    def _drain(self, side: str) -> None:
        session = self.session(side)
        now = self.now
        direction = UP if side == LOCAL else DOWN
        destination = REMOTE if side == LOCAL else LOCAL
        for path_id, data in session.datagrams_to_send(now=now):
            self.sent[side].append((now, path_id, data))
            self._transmit(direction, destination, path_id, data)
        for packet in session.packets_to_deliver():
            self.delivered[side].append((now, packet))
        while (event := session.next_event()) is not None:
            self.events[side].append((now, event))

    def _transmit(self, direction: str, destination: str, path_id: int, data: bytes) -> None:
        key = (direction, path_id)
        profile = self.profiles[key]
        stats = self.stats[key]
        stats.sent += 1
        stats.by_type[data[1]] = stats.by_type.get(data[1], 0) + 1
        rng = self.rng
        if path_id in self.silent or rng.random() < profile.loss:
            stats.dropped.append(HEADER.unpack_from(data)[5])
            return
        copies = 1
        if profile.duplicate and rng.random() < profile.duplicate:
            copies = 2
            stats.duplicated += 1
        for _ in range(copies):
            at = self.now + profile.delay + rng.uniform(0.0, profile.jitter)
            if profile.reorder and rng.random() < profile.reorder:
                at += rng.uniform(0.0, profile.reorder_delay)
            else:
                at = max(at, self._fifo.get(key, 0.0))
                self._fifo[key] = at
            stats.arrived += 1
            heapq.heappush(self._arrivals, (at, self._next_order(), destination, path_id, data))

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    # -- checks ------------------------------------------------------------------------

    def flows_delivered(self, side: str) -> dict[int, list[int]]:
        """Per flow, the sequence numbers `side` delivered, in delivery order."""
        flows: dict[int, list[int]] = {}
        for _, packet in self.delivered[side]:
            flow, seq = parse_packet(packet)
            flows.setdefault(flow, []).append(seq)
        return flows

    def data_sent(self, side: str) -> list[tuple[float, int, bytes, bytes]]:
        """(time, path id, datagram, inner packet) of every DATA `side` put on the link, in
        order; the inner packet rebuilt when the datagram carried it compressed."""
        contexts = Decompressor()
        out = []
        for at, pid, data in self.sent[side]:
            if data[1] != 1:
                continue
            bucket = int.from_bytes(data[20:22], "big")
            payload = data[DATA_HEADER_SIZE:]
            if data[2] & FLAG_CONTEXT:
                packet = contexts.learn(bucket, payload)
            elif data[2] & FLAG_COMPACT:
                packet = contexts.expand(bucket, payload)
            else:
                packet = payload
            out.append((at, pid, data, packet))
        return out

    def data_sent_on(self, side: str, path_id: int, *, since: float = 0.0) -> int:
        """DATA datagrams `side` sent on `path_id` at or after `since`."""
        return sum(
            1
            for at, pid, data in self.sent[side]
            if pid == path_id and at >= since and data[1] == 1
        )


def assert_round_trips_held(syn_ack: float, rtts: list[float], fast: float, slow: float) -> None:
    """`equalize = "ack"` over a `fast` and a `slow` path (one-way delays, seconds): a
    connection's SYN-ACK and its segments' round trips, as its sender sees them, took the
    fast path both ways plus `ACK_HOLD_SHARE` of the spread, and no more than that."""
    from braid.core.ackhold import ACK_HOLD_SHARE

    expected = 2 * fast + ACK_HOLD_SHARE * (slow - fast)
    assert syn_ack >= expected - 0.002, syn_ack
    assert min(rtts) >= expected - 0.002, min(rtts)
    median = sorted(rtts)[len(rtts) // 2]
    assert median < expected + 0.004, median
