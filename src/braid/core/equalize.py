"""Which TCP flows the ingress marks for egress delay equalization (`equalize = "bulk"`).

A BBR sender sizes its window by the smallest round trip it has seen in the last 10 s.
Over paths of unequal delay that is the fastest path's, too small to fill the slower
ones, unless the egress holds every packet to the slowest path's delay (`equalize =
"tcp"`), which also makes every short exchange wait for the slowest path. "bulk" holds
only flows caught in BBR's PROBE_RTT, where the sender takes that minimum: every 10 s
its window drops to four packets for at least 200 ms, then it sends in bulk again.

The ingress sees each flow's packets as they enter the tunnel. A flow in bulk keeps
packets queued in the tunnel; when a packet of a flow that did so for a while finds (almost)
none queued after a gap, the ingress puts the flow on trial: it marks the flow's data
(FLAG_HOLD) and the egress holds marked packets to the slowest path's delay. PROBE_RTT
then shows as a trickle (a few packets per round trip) for at least `TRIAL_MIN` before
the flow sends in bulk again: the flow stays marked for good, and the sender's minimum
RTT, taken from held packets, covers every path. Anything else (the flow resumes at
once: a hiccup in bulk, or a response after a request; a long silence: an
application's pause; a trickle that goes on: a slow flow now) ends the trial: the flow
is unmarked and the egress lets the packets it held for the trial go at once (so a
mistaken trial costs next to nothing). A short exchange is never marked.

A flow that keeps no queue in the tunnel (BBR stuck on the shorter paths at a rate they
carry: 20 of 100 Mbit/s over four links once, 2026-11-29) starts no trial at its
PROBE_RTT, and BBR then stays where it is. So such a flow, in a bulk run `ANTICIPATE_AT`
seconds after its first packet at less than a share of the paths' summed rate, is marked
*ahead* for up to `ANTICIPATE_FOR` seconds: BBR takes its minimum in its first round
trips and enters PROBE_RTT when that minimum is 10 s old. A PROBE_RTT in that window (a
trial as above, with no need for a queue) holds the flow for good; without one (not
BBR, or a minimum taken later) it is let go, once. A flow that keeps a queue is left to
the trial: marked ahead it fared worse (docs/design.md, "Marked ahead").

Sans-I/O: `on_packet` is told each TCP data packet entering the tunnel; `marked` is the
set of flow buckets whose packets go out with FLAG_HOLD.
"""

from __future__ import annotations

from typing import Final

RUN_TIME: Final = 1.0
RUN_BYTES: Final = 300_000
RUN_QUEUED: Final = 0.5
"""A flow may go on trial after a run this long and this large without an `IDLE_GAP`,
in which at least this share of its packets found more than `TRIGGER_QUEUED` of the flow
queued (a bulk flow; a light one sends each packet at once)."""
IDLE_GAP: Final = 0.1
"""A silence this long is an application's pause (PROBE_RTT's gaps are round trips)."""
TRIGGER_GAP: Final = 0.003
TRIGGER_QUEUED: Final = 3
"""A trial starts with a packet that comes this long after the flow's previous one and
finds no more than this many of the flow queued (PROBE_RTT sends its first packet when
no more than three others are in flight, a round trip after the last)."""
TRIAL_MIN: Final = 0.15
TRIAL_MAX: Final = 1.0
"""PROBE_RTT lasts max(200 ms, one round trip): the flow must send in bulk again between
these many seconds after its trial started."""
BURST_GAP: Final = 0.001
BURST: Final = 5
"""In bulk again: this many packets in a row each within `BURST_GAP` of the one before
(PROBE_RTT's window of four lets no more than three follow one another so)."""
TRICKLE_MIN: Final = 3
"""A trial needs this many packets before the bulk resumes (the trickle itself)."""
RTX_QUIET: Final = 0.5
"""No trial starts this many seconds after a retransmission, and one ends: the sender is
recovering from a loss (its pause is not PROBE_RTT; holding its resends slows it)."""
ANTICIPATE_AT: Final = 9.0
ANTICIPATE_FOR: Final = 4.0
ANTICIPATE_SHARE: Final = 0.75
"""A flow in a bulk run (`RUN_TIME`, `RUN_BYTES`) this many seconds after its first
packet that keeps no queue (fewer than `RUN_QUEUED` of its packets found one) at less
than this share of the usable paths' summed rate is marked for this long ahead of its
first PROBE_RTT."""
END_REASONS: Final = ("resend", "hiccup", "pause", "long", "ahead_pause", "ahead_expired")
"""Why a trial ended without holding its flow: a retransmission (`RTX_QUIET`); bulk again
before `TRIAL_MIN` (a hiccup); a silence of `IDLE_GAP` (an application's pause); no bulk
by `TRIAL_MAX` (a slow flow now); marked ahead, a silence of `ANTICIPATE_GAP` or the
window's end with no PROBE_RTT."""
ANTICIPATE_GAP: Final = 0.5
"""Marked ahead, a flow's PROBE_RTT drains a held round trip (130-196 ms in the lab's
four-link runs when a held BBR flow kept a queue; 45 ms without one): a silence longer
than this is an application's pause (the flow is let go)."""
FORGET: Final = 30.0
"""A flow's record is dropped after this many seconds without data."""
_SWEEP: Final = 10.0

_FREE: Final = 0
_TRIAL: Final = 1
_HELD: Final = 2
_AHEAD: Final = 3
_HALF32: Final = 1 << 31
_MASK32: Final = (1 << 32) - 1


class _Flow:
    """What the ingress keeps of one TCP flow (updated once per data packet)."""

    __slots__ = (
        "anticipated",
        "born",
        "burst",
        "count",
        "high",
        "last",
        "rtx",
        "run_bytes",
        "run_packets",
        "run_queued",
        "run_start",
        "state",
        "t0",
        "until",
    )

    def __init__(self, now: float, size: int, seq: int) -> None:
        self.last = now  # the flow's last packet
        self.state = _FREE
        self.run_start = now  # its run: since, bytes, packets, packets that found a queue
        self.run_bytes = size
        self.run_packets = 1
        self.run_queued = 0
        self.high = seq  # the highest sequence number seen
        self.rtx = -RTX_QUIET  # its last retransmission
        self.t0 = 0.0  # its trial: since, packets, packets in a row within BURST_GAP
        self.count = 0
        self.burst = 0
        self.born = now  # its first packet
        self.anticipated = False  # whether it was considered for marking ahead
        self.until = 0.0  # marked ahead until then (0: not)

    def restart(self, now: float, size: int) -> None:
        """A run starts afresh with this packet."""
        self.run_start = now
        self.run_bytes = size
        self.run_packets = 1
        self.run_queued = 0


class BulkFlows:
    """The ingress's view of its TCP flows for `equalize = "bulk"`."""

    def __init__(self) -> None:
        self._flows: dict[int, _Flow] = {}
        self.marked: set[int] = set()
        """Buckets whose data goes out with FLAG_HOLD (on trial or held)."""
        self.trials = 0
        """Trials started (most end at once: a hiccup in a bulk flow)."""
        self.held = 0
        """Trials that looked like PROBE_RTT: flows held from then on."""
        self.ahead = 0
        """Flows marked ahead of their first PROBE_RTT (`ANTICIPATE_AT`)."""
        self.ends: dict[str, int] = dict.fromkeys(END_REASONS, 0)
        """Trials and windows ahead that ended without holding the flow, by reason (see
        `END_REASONS`)."""
        self.capacity = 0.0
        """The usable paths' summed rate in bytes per second (0: unknown; nothing is
        marked ahead), kept current by the session."""
        self._sweep = 0.0

    def on_packet(self, bucket: int, size: int, now: float, queued: int, seq: int = 0) -> None:
        """One TCP data packet of flow `bucket` (`size` bytes, TCP sequence number `seq`)
        enters the tunnel, where `queued` packets of the flow wait to be sent (`seq` 0:
        unknown)."""
        flow = self._flows.get(bucket)
        if flow is None:
            if now >= self._sweep:
                self._forget(now)
            self._flows[bucket] = _Flow(now, size, seq)
            return
        gap = now - flow.last
        flow.last = now
        state = flow.state
        if state == _HELD:
            return
        if seq:
            if (seq - flow.high) & _MASK32 < _HALF32:
                flow.high = seq
            else:
                # A sequence number below one already seen: a retransmission.
                flow.rtx = now
                if state == _TRIAL:
                    self._end_trial(flow, bucket, now, "resend")
                flow.run_bytes += size
                flow.run_packets += 1
                return
        if state == _AHEAD:
            if now >= flow.until or gap >= ANTICIPATE_GAP:
                # No PROBE_RTT in time (not BBR, or its minimum is younger), or an
                # application's pause: let go.
                flow.until = 0.0
                self._end_trial(
                    flow, bucket, now, "ahead_pause" if gap >= ANTICIPATE_GAP else "ahead_expired"
                )
                flow.restart(now, size)
            elif gap >= TRIGGER_GAP and queued <= TRIGGER_QUEUED and now - flow.rtx >= RTX_QUIET:
                self._start_trial(flow, now)
            return
        if state == _TRIAL:
            elapsed = now - flow.t0
            if gap < IDLE_GAP and elapsed <= TRIAL_MAX:
                flow.count += 1
                flow.burst = flow.burst + 1 if gap < BURST_GAP else 0
                if flow.burst < BURST:
                    return  # the trickle, or the first packets of a burst
                if elapsed >= TRIAL_MIN and flow.count - flow.burst >= TRICKLE_MIN:
                    flow.state = _HELD
                    flow.until = 0.0
                    self.held += 1
                    return
                if elapsed < TRIAL_MIN:
                    # In bulk again at once: a hiccup. The flow's run goes on.
                    self._end_trial(flow, bucket, now, "hiccup")
                    flow.run_bytes += size
                    flow.run_packets += 1
                    return
            # An application's pause, or a trickle too long: a run must start afresh.
            self._end_trial(flow, bucket, now, "pause" if gap >= IDLE_GAP else "long")
            flow.restart(now, size)
            return
        if gap >= IDLE_GAP:
            flow.restart(now, size)
            return
        if not flow.anticipated and now - flow.born >= ANTICIPATE_AT:
            flow.anticipated = True
            run = now - flow.run_start
            if (
                run >= RUN_TIME
                and RUN_BYTES <= flow.run_bytes < ANTICIPATE_SHARE * self.capacity * run
                and flow.run_queued < RUN_QUEUED * flow.run_packets
                and now - flow.rtx >= RTX_QUIET
            ):
                flow.state = _AHEAD
                flow.until = now + ANTICIPATE_FOR
                self.marked.add(bucket)
                self.ahead += 1
                return
        if queued > TRIGGER_QUEUED:
            flow.run_queued += 1
        elif (
            gap >= TRIGGER_GAP
            and now - flow.rtx >= RTX_QUIET
            and now - flow.run_start >= RUN_TIME
            and flow.run_bytes >= RUN_BYTES
            and flow.run_queued >= RUN_QUEUED * flow.run_packets
        ):
            self._start_trial(flow, now)
            self.marked.add(bucket)
            return
        flow.run_bytes += size
        flow.run_packets += 1

    def _start_trial(self, flow: _Flow, now: float) -> None:
        flow.state = _TRIAL
        flow.t0 = now
        flow.count = 1
        flow.burst = 0
        self.trials += 1

    def _end_trial(self, flow: _Flow, bucket: int, now: float, reason: str) -> None:
        """A trial that was not PROBE_RTT (or a window ahead that saw none, `until` 0):
        the flow is unmarked, or goes on marked ahead while its window lasts."""
        self.ends[reason] += 1
        if now < flow.until:
            flow.state = _AHEAD
            return
        flow.state = _FREE
        flow.until = 0.0
        self.marked.discard(bucket)

    def _forget(self, now: float) -> None:
        self._sweep = now + _SWEEP
        horizon = now - FORGET
        flows = self._flows
        for bucket in [b for b, f in flows.items() if f.last < horizon]:
            del flows[bucket]
            self.marked.discard(bucket)


REMEMBER_AFTER: Final = 1.5
"""At the egress, a flow whose data has come marked *hold* this long without a break is
held for good (a trial ends within `TRIAL_MAX`)."""
PAIR_LIMIT: Final = 1024
"""Pairs of hosts remembered at most (beyond, the one remembered longest ago goes)."""
_SINCE_LIMIT: Final = 4096


def host_pair(packet: bytes) -> bytes:
    """The source and destination addresses of an IPv4 or IPv6 TCP packet, or b""."""
    if len(packet) >= 40:
        lead = packet[0] >> 4
        if lead == 4 and packet[9] == 6:
            return packet[12:20]
        if lead == 6 and packet[6] == 6 and len(packet) >= 60:
            return packet[8:40]
    return b""


class BulkPairs:
    """The egress's memory of the pairs of hosts between which a BBR bulk flow was held
    (`equalize = "bulk"`, `SessionConfig.equalize_remember`).

    "bulk" holds a flow only from its first PROBE_RTT on, 10 s in, so every new
    connection spends its first 10 s with the fastest path's round trip. Hosts that sent
    one bulk flow tend to send the next (a backup, a download site, a speed test run
    again), as the kernel's own TCP metrics assume: a flow marked for good
    (`REMEMBER_AFTER`) makes its pair (sender, receiver) remembered for `keep` seconds,
    and the session gives a new connection of a remembered pair "ack" equalization from
    its first packet (its SYN or SYN-ACK and its acknowledgements wait, not its data).
    A short exchange between the same hosts pays what "ack" costs; others pay nothing.

    Sans-I/O: `on_marked` / `on_unmarked` for each TCP packet of a flow the egress sees
    with or without the *hold* flag; `knows` for a packet's pair.
    """

    def __init__(self, keep: float, *, limit: int = PAIR_LIMIT) -> None:
        self._keep = keep
        self._limit = limit
        self._pairs: dict[bytes, float] = {}  # pair -> until (oldest first)
        self._since: dict[int, tuple[float, float]] = {}  # bucket -> (marked since, last)
        self.remembered = 0
        """Pairs newly remembered so far (a refresh of one still remembered does not count)."""

    def __len__(self) -> int:
        return len(self._pairs)

    def on_marked(self, bucket: int, packet: bytes, now: float) -> None:
        """A packet of flow `bucket` came marked *hold*."""
        since_map = self._since
        entry = since_map.get(bucket)
        since = entry[0] if entry is not None else now
        if now - since >= REMEMBER_AFTER:
            pair = host_pair(packet)
            if pair:
                self.remember(pair, now)
        if entry is None and len(since_map) >= _SINCE_LIMIT:
            old = now - REMEMBER_AFTER
            for key in [k for k, (_, last) in since_map.items() if last < old]:
                del since_map[key]
        since_map[bucket] = (since, now)

    def on_unmarked(self, bucket: int) -> None:
        """A packet of flow `bucket` came unmarked: its marking, if any, ended."""
        if self._since:
            self._since.pop(bucket, None)

    def remember(self, pair: bytes, now: float) -> None:
        """Remember `pair` (source then destination addresses) until `keep` from now."""
        pairs = self._pairs
        until = pairs.get(pair)
        if until is not None and until - now > self._keep - 1.0:
            return  # (refreshed within the last second: every held packet comes here)
        if pairs.pop(pair, None) is None:
            self.remembered += 1
            if len(pairs) >= self._limit:
                del pairs[next(iter(pairs))]
        pairs[pair] = now + self._keep

    def knows(self, packet: bytes, now: float) -> bool:
        """Whether the TCP `packet`'s pair of hosts is remembered (and not expired)."""
        pairs = self._pairs
        if not pairs:
            return False
        pair = host_pair(packet)
        until = pairs.get(pair) if pair else None
        if until is None:
            return False
        if until < now:
            del pairs[pair]
            return False
        return True
