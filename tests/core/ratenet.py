"""A rate-limited two-portal network for the aggregation tests (fake time, no I/O).

Each path direction is a bottleneck: `rate` bytes/s (changeable at run time), one-way
`delay`, a drop-tail queue of `queue_time` seconds at the rate (like the lab's tbf). The local portal's source is saturating and
respects queue control like the runtime does: it sends while `session.writable`. It is not
a TCP (it never backs off), so the default config has no early drops.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from braid.core.session import SessionConfig, TunnelSession

from .pairnet import udp_packet

SID = 0x5EED0005


@dataclass
class Bottleneck:
    """One direction of one path."""

    rate: float
    delay: float
    queue_time: float = 0.05  # drop-tail queue, seconds at the rate (like the lab's tbf)
    free_at: float = 0.0
    dropped: int = 0
    max_backlog: float = 0.0  # seconds of queue seen by an arriving datagram
    backlog_samples: list[tuple[float, float]] = field(default_factory=list)
    loss: float = 0.0  # random loss after the queue (issue 7)
    mtu: int | None = None  # larger datagrams vanish (a path MTU black hole, issue 7)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    lost: int = 0
    extra: float = 0.0  # seconds more on the way, as if queued behind other traffic

    def transmit(self, size: int, now: float) -> float | None:
        """The arrival time of a datagram of `size` bytes sent now (None: dropped)."""
        if self.mtu is not None and size > self.mtu:
            self.lost += 1
            return None
        wait = max(self.free_at - now, 0.0)
        if wait > self.queue_time:
            self.dropped += 1
            return None
        depart = now + wait + size / self.rate
        self.free_at = depart
        self.max_backlog = max(self.max_backlog, wait)
        self.backlog_samples.append((now, wait))
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
            return None
        return depart + self.delay + self.extra


class RateNet:
    """Local and remote sessions over rate-limited paths; a saturating local source."""

    def __init__(
        self,
        links: dict[int, tuple[float, float]],
        *,
        config: SessionConfig | None = None,
        hints: bool = True,
        packet_size: int = 1200,
        source_rate: float | None = None,
    ) -> None:
        # (The source does not back off on loss: early drops would only lose its packets.
        # NACK recovery off unless asked for: these measure the paths and the scheduler.)
        config = config or SessionConfig(early_drop=0.0, nack=False)
        self.now = 0.0
        self.local = TunnelSession(config, role="local", session_id=SID, now=0.0)
        self.remote = TunnelSession(config, role="remote", session_id=SID, now=0.0)
        self.up = {pid: Bottleneck(rate, delay) for pid, (rate, delay) in links.items()}
        self.down = {pid: Bottleneck(rate, delay) for pid, (rate, delay) in links.items()}
        for pid in links:  # each link direction its own (reproducible) loss pattern
            self.up[pid].rng = random.Random(2 * pid + 1)
            self.down[pid].rng = random.Random(2 * pid + 2)
        for pid, (rate, _) in links.items():
            self.local.add_path(pid, rate_bps=int(rate * 8) if hints else None, now=0.0)
        self.events: list[tuple[float, int, str, int, bytes]] = []
        self.order = 0
        self.packet_size = packet_size
        self.source_rate = source_rate
        self.next_source = 0.0
        self.sent = 0
        self.delivered: list[tuple[float, int]] = []  # (time, size)
        self.deliver_seqs: list[int] = []
        self.sent_at: list[float] = []  # (by source sequence number)
        self.refused = 0

    def limit_source(self, rate: float | None) -> None:
        """From now on the source offers `rate` bytes/s (None: saturating again)."""
        self.source_rate = rate
        self.next_source = self.now

    def set_rate(self, path_id: int, rate: float) -> None:
        """Change the capacity of a path (both directions)."""
        self.up[path_id].rate = rate
        self.down[path_id].rate = rate

    def _send_out(self, side: str, now: float) -> None:
        session = self.local if side == "local" else self.remote
        links = self.up if side == "local" else self.down
        target = "remote" if side == "local" else "local"
        for pid, data in session.datagrams_to_send(now=now):
            arrival = links[pid].transmit(len(data), now)
            if arrival is not None:
                self.order += 1
                heapq.heappush(self.events, (arrival, self.order, target, pid, data))
        if side == "remote":
            for packet in session.packets_to_deliver():
                self.delivered.append((now, len(packet)))
                self.deliver_seqs.append(int.from_bytes(packet[32:36], "big"))
        else:
            session.packets_to_deliver()
        while session.next_event() is not None:
            pass

    def _source(self, now: float) -> None:
        local = self.local
        if self.source_rate is None:
            while local.writable:
                if not local.send_packet(udp_packet(1, self.sent, self.packet_size), now=now):
                    self.refused += 1
                    break
                self.sent_at.append(now)
                self.sent += 1
            return
        while self.next_source <= now:
            if local.send_packet(udp_packet(1, self.sent, self.packet_size), now=now):
                self.sent_at.append(now)
                self.sent += 1
            else:
                self.refused += 1
            self.next_source += self.packet_size / self.source_rate

    def run_until(self, end: float) -> None:
        """Advance fake time to `end`, processing every event and timer."""
        while True:
            candidates = [end]
            if self.events:
                candidates.append(self.events[0][0])
            for session in (self.local, self.remote):
                timer = session.get_timer()
                if timer is not None:
                    candidates.append(timer)
            if self.source_rate is not None:
                candidates.append(self.next_source)
            now = max(min(candidates), self.now)
            if now >= end and not (self.events and self.events[0][0] <= end):
                self.now = end
                return
            self.now = now
            while self.events and self.events[0][0] <= now:
                _, _, side, _, data = heapq.heappop(self.events)
                session = self.local if side == "local" else self.remote
                session.receive_datagram(data, now=now)
                self._send_out(side, now)
            for side, session in (("local", self.local), ("remote", self.remote)):
                timer = session.get_timer()
                if timer is not None and timer <= now:
                    session.handle_timer(now=now)
                self._send_out(side, now)
            self._source(now)
            self._send_out("local", now)

    def goodput(self, start: float, stop: float) -> float:
        """Inner bytes per second delivered at the remote portal in [start, stop)."""
        total = sum(size for at, size in self.delivered if start <= at < stop)
        return total / (stop - start)
