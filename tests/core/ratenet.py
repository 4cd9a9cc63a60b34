"""A rate-limited two-portal network for the aggregation tests (fake time, no I/O).

Each path direction is a bottleneck: `rate` bytes/s (changeable at run time), one-way
`delay`, a drop-tail queue of `queue_time` seconds at the rate (like the lab's tbf). The local portal's source is saturating and
respects queue control like the runtime does: it sends while `session.writable`. It is not
a TCP (it never backs off), so the default config has no early drops. `stop_source` turns
it off; `start_window_flow` puts a window-limited, BBR-like sender in its place
(`WindowSender`).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
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


class WindowSender:
    """A BBR-like TCP sender's window (fake time): it keeps at most twice the largest
    delivery rate it measured over its last ten smallest round trips times that smallest
    round trip in flight (2.885 x in startup, which ends when that rate grew less than 25 %
    in three round trips), and paces at 2.885 x, then 1 x, that rate. Its acknowledgements
    come back `back` seconds after the remote portal delivered a packet. The tunnel
    delivers a flow in order, so a packet delivered means those sent before it that are
    still missing are lost (no retransmission: goodput counts what arrived)."""

    def __init__(self, now: float, size: int, back: float) -> None:
        self.size = size
        self.back = back
        self.sent: dict[int, tuple[float, int, float]] = {}  # seq: (time, delivered, then)
        self.delivered = 0
        self.delivered_at = now
        self.min_rtt = math.inf
        self.bw = 0.0
        self.samples: deque[tuple[float, float]] = deque()
        self.startup = True
        self.full_bw = 0.0
        self.full_count = 0
        self.next_round = 0
        self.inflight = 0
        self.next_send = now
        self.acks: list[tuple[float, int]] = []

    def pacing_rate(self) -> float:
        if not self.bw:
            return 10 * self.size / 0.01  # ten packets per 10 ms before any sample
        return (2.885 if self.startup else 1.0) * self.bw

    def window(self) -> float:
        if not self.bw:
            return 10 * self.size
        return max((2.885 if self.startup else 2.0) * self.bw * self.min_rtt, 4 * self.size)

    def may_send(self, now: float) -> bool:
        return self.inflight + self.size <= self.window() and self.next_send <= now

    def on_sent(self, seq: int, now: float) -> None:
        self.sent[seq] = (now, self.delivered, self.delivered_at)
        self.inflight += self.size
        self.next_send = max(self.next_send, now) + self.size / self.pacing_rate()

    def on_delivered(self, seq: int, now: float) -> None:
        if seq in self.sent:
            heapq.heappush(self.acks, (now + self.back, seq))

    def next_time(self, writable: bool) -> float | None:
        """When the sender next has something to do (an acknowledgement, or a send if the
        tunnel takes packets)."""
        times = [self.acks[0][0]] if self.acks else []
        if writable and self.inflight + self.size <= self.window():
            times.append(self.next_send)
        return min(times) if times else None

    def on_acks(self, now: float) -> None:
        while self.acks and self.acks[0][0] <= now:
            _, seq = heapq.heappop(self.acks)
            if seq not in self.sent:
                continue
            for lost in [s for s in self.sent if s < seq]:
                del self.sent[lost]
                self.inflight -= self.size
            sent_at, prior, prior_at = self.sent.pop(seq)
            self.inflight -= self.size
            self.delivered += self.size
            self.delivered_at = now
            self.min_rtt = min(self.min_rtt, now - sent_at)
            rate = (self.delivered - prior) / max(now - prior_at, 1e-4)
            self.samples.append((now, rate))
            while self.samples[0][0] < now - 10 * self.min_rtt:
                self.samples.popleft()
            self.bw = max(r for _, r in self.samples)
            if prior >= self.next_round:
                self.next_round = self.delivered
                if self.startup and self.bw >= 1.25 * self.full_bw:
                    self.full_bw = self.bw
                    self.full_count = 0
                elif self.startup:
                    self.full_count += 1
                    self.startup = self.full_count < 3


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
        self.source_on = True
        self.flow: WindowSender | None = None

    def stop_source(self) -> None:
        """From now on the source sends nothing."""
        self.source_on = False
        self.flow = None

    def start_window_flow(self, back: float = 0.010) -> WindowSender:
        """From now on a `WindowSender` is the source; its acknowledgements take `back`."""
        self.source_on = False
        self.flow = WindowSender(self.now, self.packet_size, back)
        return self.flow

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
                seq = int.from_bytes(packet[32:36], "big")
                self.deliver_seqs.append(seq)
                if self.flow is not None:
                    self.flow.on_delivered(seq, now)
        else:
            session.packets_to_deliver()
        while session.next_event() is not None:
            pass

    def _source(self, now: float) -> None:
        local = self.local
        flow = self.flow
        if flow is not None:
            flow.on_acks(now)
            while flow.may_send(now) and local.writable:
                if not local.send_packet(udp_packet(1, self.sent, self.packet_size), now=now):
                    self.refused += 1
                    break
                flow.on_sent(self.sent, now)
                self.sent_at.append(now)
                self.sent += 1
            return
        if not self.source_on:
            return
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
            if self.flow is not None:
                if (flow_next := self.flow.next_time(self.local.writable)) is not None:
                    candidates.append(flow_next)
            elif self.source_rate is not None and self.source_on:
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
